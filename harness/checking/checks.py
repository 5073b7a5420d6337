"""The checks the test modules run on a trial; each raises a :class:`HarnessError` naming what failed,
or :class:`MethodUnavailable` where the method cannot run here (the pytest plugin skips those)."""

from __future__ import annotations

import contextlib
import re
import warnings
import zlib
from collections.abc import Callable, Collection, Iterator

from hypothesis import Phase, given, seed, settings

from harness.checking.profiles import active_profile
from harness.checking.runner import describe, run
from harness.checking.support import ExpectedFailure, expected_failure_drawn, support_matrix_applied
from harness.checking.trials import GRIDS, PropertyTrial, Trial
from harness.core.case import Case
from harness.core.distance import Comparison, assert_close
from harness.core.errors import (
    BatchingRuleFallback,
    EveryExampleExpected,
    HarnessError,
    MethodFailed,
    MethodUnavailable,
    UnexpectedFailure,
    UnexpectedPass,
)
from harness.core.tolerances import Tolerance, tolerance_for
from harness.methods import clip_eps, gives_itself
from harness.problems.build import build_case
from harness.problems.drawn import LAYER_KINDS, Problem
from harness.problems.strategies import LAYER_STRATEGIES, problems
from harness.problems.zoo import get_model
from harness.quantities import get_quantity
from harness.reference.oracle import batch_gradient, oracle

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


def _tolerance(trial: Trial) -> Tolerance:
    return tolerance_for(trial.precision, get_model(trial.model).numerics)


def check_against_oracle(trial: Trial) -> Comparison:
    """The trial's quantity from its method (its own, or derived from its gradients) is within the
    tolerance table's bound of the same quantity of the float64 oracle.

    For the clipped step, C lies halfway between the oracle's two middle per-sample norms (the
    larger half of the samples is clipped) and the reference uses the stabilizer the method declares.
    Raises :class:`MethodUnavailable` where the method cannot run here.
    """
    __tracebackhide__ = True
    with as_expected(trial.expected):
        case = trial.build()
        grads = oracle(case.model_name, case.batch_size, case.seed)
        return _compare_with_oracle(trial.method, trial.check, case, grads, _tolerance(trial))


def _compare_with_oracle(method: str, check: str, case: Case, grads: dict, tolerance: Tolerance) -> Comparison:
    """The method's ``check`` (a quantity) on the case against the same quantity of the oracle's
    per-sample gradients ``grads`` (the reference uses the stabilizer the method declares)."""
    __tracebackhide__ = True
    quantity = get_quantity(check)
    quantity.prepare(case, grads)
    result = run(method, quantity.name, case)
    eps = clip_eps(method) if quantity.name in gives_itself(method) else 0.0
    reference = quantity.reference(grads, case, eps)
    where = describe(method, case) + quantity.describe(case)
    return assert_close(quantity.per_sample(result), quantity.per_sample(reference), tolerance, where)


#: The clipping bound of an empty batch's clipped step: any bound, there is no sample to clip.
EMPTY_BATCH_BOUND = 1.0


def check_empty_batch(trial: Trial) -> None:
    """On an empty batch (B=0) the method returns the quantity's well-formed empty result (checked
    by :func:`run`: per-sample gradients of shape ``(0, *param.shape)``, norms of shape ``(0,)``),
    and a clipped step of zeros, the sum over no samples; or raises :class:`MethodUnavailable`
    saying it cannot. An error from inside the library, or NaN, fails."""
    __tracebackhide__ = True
    quantity = get_quantity(trial.check)
    with as_expected(trial.expected):
        case = trial.build()
        case.max_grad_norm = EMPTY_BATCH_BOUND
        result = quantity.per_sample(run(trial.method, quantity.name, case))
        reference = quantity.per_sample(quantity.reference(oracle(case.model_name, 0, case.seed), case))
        if all(len(t) for t in reference.values()):  # a batch quantity (the clipped step) has a value to compare
            assert_close(result, reference, _tolerance(trial), describe(trial.method, case) + quantity.describe(case))


def check_drawn(
    problem: Problem, method: str, precision: str, device: str = "cpu", check: str = "grads"
) -> ExpectedFailure | None:
    """A drawn problem's ``check`` (a quantity: the per-sample gradients, their norms, the clipped
    step), checked like a zoo case against the float64 oracle's.

    The support matrix decides per example: where a row covers one of the drawn layers, the
    method must fail with the row's error, and the row is returned; otherwise it must pass.
    Raises :class:`MethodUnavailable` if the method cannot run here.
    """
    __tracebackhide__ = True
    row = expected_failure_drawn(method, problem, precision, device, check=check)
    spec = problem.spec()
    try:
        with as_expected(row):
            case = build_case(spec, problem.batch_size, precision, device, problem.loss_reduction)
            grads = oracle(spec, problem.batch_size)
            _compare_with_oracle(method, check, case, grads, tolerance_for(precision, spec.numerics))
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


#: What one drawn example came to: None (passed), the support-matrix row it failed by, or the
#: reason the method cannot run it (``MethodUnavailable``, for this example only).
ExampleOutcome = ExpectedFailure | MethodUnavailable | None


def check_property(trial: PropertyTrial, min_examples: int = 0) -> list[ExampleOutcome]:
    """Check problems drawn for the trial's layer strategy under the harness's Hypothesis profile
    (``psg-ci`` unless the run chose another, see :mod:`harness.checking.profiles`).

    ``min_examples`` raises the profile's ``max_examples`` where a caller needs more draws.

    Returns, per example, what it came to (:data:`ExampleOutcome`): a method that cannot run one
    drawn configuration (``MethodUnavailable``) is judged on the others. A failure is raised with
    the shrunk ``Problem(...)`` in its notes, as Hypothesis prints it. With the support matrix off
    (``--psg-raw``: the release history, a bisect of raw outcomes) it is not shrunk: those runs keep a test's outcome,
    not its smallest example, and shrinking was 7 of the 7.5 minutes of the raw property tests
    (measured on torch 2.14, 2 cores under load: 451 s shrinking, 54 s not, the same 100 failed).

    Under a derandomized profile (the default) the draws start from a seed of the layer
    strategy's name, the same for every method and precision, and not from Hypothesis' digest of
    this function's source: a change to this code must not change what the default run draws.
    """
    __tracebackhide__ = True
    if trial.layer in LAYER_KINDS and (missing := LAYER_KINDS[trial.layer].missing()):
        raise MethodUnavailable(missing)
    outcomes: list[ExampleOutcome] = []
    profile = active_profile()

    @given(problem=problems(LAYER_STRATEGIES[trial.layer]))
    def check(problem: Problem) -> None:
        try:
            outcomes.append(check_drawn(problem, trial.method, trial.precision, trial.device, trial.check))
        except MethodUnavailable as exc:
            outcomes.append(exc)

    phases = profile.phases if support_matrix_applied() else tuple(p for p in profile.phases if p is not Phase.shrink)
    check = settings(profile, max_examples=max(min_examples, profile.max_examples), phases=phases)(check)
    if profile.derandomize:
        check = seed(zlib.crc32(trial.layer.encode()))(check)
    check()
    return outcomes


def check_property_trial(trial: PropertyTrial) -> None:
    """The property test's verdict: passes if some drawn example passed.

    Raises :class:`EveryExampleExpected` (an expected failure) where every example the method
    could run failed as the support matrix expects, and :class:`MethodUnavailable` where it could
    run none.
    """
    __tracebackhide__ = True
    outcomes = check_property(trial)
    if None in outcomes or not outcomes:
        return
    rows = sorted({row.describe() for row in outcomes if isinstance(row, ExpectedFailure)})
    if rows:
        raise EveryExampleExpected(f"every drawn example failed as the support matrix expects: {'; '.join(rows)}")
    raise MethodUnavailable(f"{trial.method} could run none of the {len(outcomes)} drawn {trial.layer} examples: {outcomes[0]}")


def check_sum(trial: Trial) -> Comparison:
    """With a sum-reduced loss, the per-sample gradients add up to the ordinary batch gradient."""
    __tracebackhide__ = True
    with as_expected(trial.expected):
        case = trial.build()
        result = run(trial.method, "grads", case)
        summed = {name: g.sum(dim=0, keepdim=True) for name, g in result.items()}
        batch = {name: g.unsqueeze(0) for name, g in batch_gradient(case.model_name, case.batch_size, case.seed).items()}
        where = f"{describe(trial.method, case)}, summed over the batch,"
        return assert_close(summed, batch, _tolerance(trial), where)


def check_batching_rules(trial: Trial) -> None:
    """vmap runs the model without falling back to the slow per-sample path for any operator."""
    __tracebackhide__ = True
    from torch._C._functorch import _set_vmap_fallback_warning_enabled

    with as_expected(trial.expected):
        case = trial.build()
        _set_vmap_fallback_warning_enabled(True)
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("error", message="There is a performance drop")
                run("vmap", "grads", case)
        except MethodFailed as exc:
            match = _FALLBACK.search(str(exc) + " ")
            if match is None:
                raise
            raise BatchingRuleFallback(
                f"vmap on {case.id} fell back to the slow per-sample path: no batching rule for {match.group(1)}"
            ) from None
        finally:
            _set_vmap_fallback_warning_enabled(False)


#: The check each grid's trials run (the suite's test modules and :func:`harness.check_method`
#: both take them from here).
CHECK_OF_GRID: dict[str, Callable[[Trial | PropertyTrial], object]] = {
    "oracle": check_against_oracle,
    "sum": check_sum,
    "batching-rule": check_batching_rules,
    "norms": check_against_oracle,
    "clipped": check_against_oracle,
    "empty-batch": check_empty_batch,
    "property": check_property_trial,
}


def checks_of(
    methods: Collection[str] | None = None, grids: Collection[str] | None = None
) -> Iterator[tuple[str, Trial | PropertyTrial, Callable[[Trial | PropertyTrial], object]]]:
    """Every (grid, trial, check) of the correctness suite, for the named methods (default: all,
    and the model-only batching-rule trials) and grids (default: all)."""
    unknown = sorted(set(grids or ()) - set(GRIDS))
    if unknown:
        raise ValueError(f"unknown grids {unknown}; known: {', '.join(GRIDS)}")
    for grid, trials in GRIDS.items():
        if grids is not None and grid not in grids:
            continue
        for trial in trials():
            if methods is None or trial.method in methods:
                yield grid, trial, CHECK_OF_GRID[grid]
