"""Run a method on a case the way every test does: in its precision mode, checked on the way out."""

from __future__ import annotations

import torch

from harness.case import Case
from harness.compare import ModelState, check_structure
from harness.errors import HarnessError, MethodFailed, MethodUnavailable
from harness.methods import get_method
from harness.precision import precision_mode


def describe(method: str, case: Case) -> str:
    """How messages name a method on a case."""
    return f"method {method!r} on {case.id}"


def run_method(method: str, case: Case) -> dict[str, torch.Tensor]:
    """Run ``method`` on ``case``; return its checked per-sample gradients.

    Raises :class:`MethodFailed` if it raised, :class:`MethodOutputError` for wrong names,
    shapes or non-finite values, :class:`MethodLeftState` if it changed the model.
    """
    __tracebackhide__ = True
    fn = get_method(method)
    where = describe(method, case)
    before = ModelState.of(case.model)
    with precision_mode(case.precision):
        try:
            result = fn(case)
        except (HarnessError, MethodUnavailable):
            raise
        except Exception as exc:
            raise MethodFailed(f"{where} raised {type(exc).__name__}: {exc}") from exc
    checked = check_structure(result, case.model, case.batch_size, where)
    before.check_unchanged(case.model, where)
    return {name: g.detach() for name, g in checked.items()}
