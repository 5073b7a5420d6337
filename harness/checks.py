"""The checks the test modules run on a cell; each raises a :class:`HarnessError` naming what failed."""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from hypothesis import given, settings

from harness.case import Case, build_case
from harness.clipping import clipped_count, clipped_sum, mid_bound, per_sample_norms
from harness.compare import Comparison, assert_close
from harness.drawn import Problem
from harness.errors import (
    BatchingRuleFallback,
    HarnessError,
    MethodFailed,
    MethodUnavailable,
    UnexpectedFailure,
    UnexpectedPass,
)
from harness.grid import Cell, PropertyCell
from harness.methods import CLIP_EPS
from harness.models import get_model
from harness.oracle import batch_gradient, oracle
from harness.runner import describe, run_clipped, run_method, run_norms
from harness.strategies import LAYER_STRATEGIES, problems
from harness.support import ExpectedFailure, expected_failure_drawn
from harness.tolerances import tolerance_for

_FALLBACK = re.compile(r"There is a performance drop because we have not yet implemented the batching rule for (\S+?)\.?\s")


@contextlib.contextmanager
def as_expected(row: ExpectedFailure | None) -> Iterator[None]:
    """Let a failure through as the expected one only if it matches the support-matrix row's error."""
    try:
        yield
    except HarnessError as exc:
        if row is not None and not re.search(row.error, str(exc)):
            raise UnexpectedFailure(
                f"expected the support-matrix failure /{row.error}/ ({row.reason}), but got: {exc}"
            ) from exc
        raise


def _tolerance(cell: Cell):
    return tolerance_for(cell.precision, get_model(cell.model).numerics)


def _run(cell: Cell, runner: Callable[[str, Case], Any] = run_method, case: Case | None = None) -> tuple[Case, Any]:
    """Build the cell's case (unless given) and run its method with ``runner``; skip if unavailable."""
    case = case or cell.build()
    try:
        return case, runner(cell.method, case)
    except MethodUnavailable as exc:
        pytest.skip(f"method {cell.method!r} is unavailable here: {exc}")


def check_oracle(cell: Cell) -> Comparison:
    """The method's per-sample gradients are within the tolerance table's bound of the float64 oracle."""
    __tracebackhide__ = True
    with as_expected(cell.expected):
        case, result = _run(cell)
        reference = oracle(case.model_name, case.batch_size, case.seed)
        return assert_close(result, reference, _tolerance(cell), describe(cell.method, case))


def check_drawn(problem: Problem, method: str, precision: str, device: str = "cpu") -> ExpectedFailure | None:
    """A drawn problem, checked like a zoo case against the float64 oracle.

    The support matrix decides per example: where a row covers one of the drawn layers, the
    method must fail with the row's error, and the row is returned; otherwise it must pass.
    Raises :class:`MethodUnavailable` if the method cannot run here.
    """
    __tracebackhide__ = True
    row = expected_failure_drawn(method, problem, precision, device)
    spec = problem.spec()
    try:
        with as_expected(row):
            case = build_case(spec, problem.batch_size, precision, device, problem.loss_reduction)
            result = run_method(method, case)
            reference = oracle(spec, problem.batch_size)
            assert_close(result, reference, tolerance_for(precision, spec.numerics), describe(method, case))
    except HarnessError:
        if row is None:
            raise
        return row
    if row is not None:
        raise UnexpectedPass(
            f"method {method!r} passed on the drawn {problem.name}, but the support matrix expects "
            f"/{row.error}/ ({row.reason}): narrow or remove that row"
        )
    return None


def check_property(cell: PropertyCell, min_examples: int = 0) -> list[ExpectedFailure | None]:
    """Check problems drawn for the cell's layer strategy under the active Hypothesis profile.

    ``min_examples`` raises the profile's ``max_examples`` where a caller needs more draws.

    Returns, per example, the support-matrix row it failed by (None where it passed). A
    failure is raised with the shrunk ``Problem(...)`` in its notes, as Hypothesis prints it.
    """
    __tracebackhide__ = True
    outcomes: list[ExpectedFailure | None] = []

    @given(problem=problems(LAYER_STRATEGIES[cell.layer]))
    def check(problem: Problem) -> None:
        outcomes.append(check_drawn(problem, cell.method, cell.precision, cell.device))

    if min_examples > settings.default.max_examples:
        check = settings(max_examples=min_examples)(check)
    check()
    return outcomes


def _as_one_sample(batch_quantity: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A batch quantity (parameter-shaped) as a batch of one, the form the norm-wise comparison takes."""
    return {name: g.unsqueeze(0) for name, g in batch_quantity.items()}


def check_sum(cell: Cell) -> Comparison:
    """With a sum-reduced loss, the per-sample gradients add up to the ordinary batch gradient."""
    __tracebackhide__ = True
    with as_expected(cell.expected):
        case, result = _run(cell)
        summed = {name: g.sum(dim=0, keepdim=True) for name, g in result.items()}
        batch = _as_one_sample(batch_gradient(case.model_name, case.batch_size, case.seed))
        where = f"{describe(cell.method, case)}, summed over the batch,"
        return assert_close(summed, batch, _tolerance(cell), where)


def check_norms(cell: Cell) -> Comparison:
    """The method's per-sample gradient norms (its own, or those of its gradients) are within the
    tolerance table's bound of the oracle's."""
    __tracebackhide__ = True
    with as_expected(cell.expected):
        case, norms = _run(cell, run_norms)
        reference = per_sample_norms(oracle(case.model_name, case.batch_size, case.seed))
        where = f"{describe(cell.method, case)}, per-sample gradient norms,"
        return assert_close({"||g||": norms[:, None]}, {"||g||": reference[:, None]}, _tolerance(cell), where)


def check_clipped(cell: Cell) -> Comparison:
    """The method's clipped, summed step is within the tolerance table's bound of the oracle's.

    C lies halfway between the oracle's two middle per-sample norms, so the larger half of the
    samples is clipped and the rest is not. The reference clips with the stabilizer the method
    declares (``clip_eps``).
    """
    __tracebackhide__ = True
    with as_expected(cell.expected):
        case = cell.build()
        grads = oracle(case.model_name, case.batch_size, case.seed)
        case.max_grad_norm = mid_bound(per_sample_norms(grads))
        case, step = _run(cell, run_clipped, case)
        reference = clipped_sum(grads, case.max_grad_norm, CLIP_EPS.get(cell.method, 0.0))
        where = (
            f"{describe(cell.method, case)}, clipped step with C = {case.max_grad_norm:.4g} "
            f"({clipped_count(case.batch_size)} of {case.batch_size} samples clipped),"
        )
        return assert_close(_as_one_sample(step), _as_one_sample(reference), _tolerance(cell), where)


def check_batching_rules(cell: Cell) -> None:
    """vmap runs the model without falling back to the slow per-sample path for any operator."""
    __tracebackhide__ = True
    from torch._C._functorch import _set_vmap_fallback_warning_enabled

    with as_expected(cell.expected):
        case = cell.build()
        _set_vmap_fallback_warning_enabled(True)
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("error", message="There is a performance drop")
                run_method("vmap", case)
        except MethodFailed as exc:
            match = _FALLBACK.search(str(exc) + " ")
            if match is None:
                raise
            raise BatchingRuleFallback(
                f"vmap on {case.id} fell back to the slow per-sample path: no batching rule for {match.group(1)}"
            ) from None
        finally:
            _set_vmap_fallback_warning_enabled(False)
