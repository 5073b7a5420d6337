"""Run a method on a case the way every test does: in its precision mode, checked on the way out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from harness.case import Case
from harness.clipping import clipped_sum, per_sample_norms
from harness.compare import ModelState, check_norms_structure, check_structure
from harness.errors import HarnessError, MethodFailed, MethodUnavailable
from harness.methods import CLIPPED_METHODS, NORM_METHODS, get_method
from harness.precision import precision_mode


def describe(method: str, case: Case) -> str:
    """How messages name a method on a case."""
    return f"method {method!r} on {case.id}"


def _call(fn: Callable[[Case], Any], case: Case, where: str) -> Any:
    """Call ``fn`` on ``case`` in its precision mode; the model must come out unchanged."""
    __tracebackhide__ = True
    before = ModelState.of(case.model)
    with precision_mode(case.precision):
        try:
            result = fn(case)
        except (HarnessError, MethodUnavailable):
            raise
        except Exception as exc:
            raise MethodFailed(f"{where} raised {type(exc).__name__}: {exc}") from exc
    before.check_unchanged(case.model, where)
    return result


def run_method(method: str, case: Case) -> dict[str, torch.Tensor]:
    """Run ``method`` on ``case``; return its checked per-sample gradients.

    Raises :class:`MethodFailed` if it raised, :class:`MethodOutputError` for wrong names,
    shapes or non-finite values, :class:`MethodLeftState` if it changed the model.
    """
    __tracebackhide__ = True
    where = describe(method, case)
    result = _call(get_method(method), case, where)
    checked = check_structure(result, case.model, case.batch_size, where)
    return {name: g.detach() for name, g in checked.items()}


def run_norms(method: str, case: Case) -> torch.Tensor:
    """Per-sample gradient norms ``(B,)`` from ``method``: its own, or those of its gradients."""
    __tracebackhide__ = True
    if method not in NORM_METHODS:
        return per_sample_norms(run_method(method, case))
    where = f"{describe(method, case)} (norms)"
    return check_norms_structure(_call(NORM_METHODS[method], case, where), case.batch_size, where).detach()


def run_clipped(method: str, case: Case) -> dict[str, torch.Tensor]:
    """The clipped, summed step for ``case.max_grad_norm`` from ``method``: its own, or the
    harness' clipping of its per-sample gradients."""
    __tracebackhide__ = True
    if method not in CLIPPED_METHODS:
        return clipped_sum(run_method(method, case), case.max_grad_norm)
    where = f"{describe(method, case)} (clipped step)"
    checked = check_structure(_call(CLIPPED_METHODS[method], case, where), case.model, None, where)
    return {name: g.detach() for name, g in checked.items()}
