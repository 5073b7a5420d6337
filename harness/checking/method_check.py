"""``check_method``: the suite's checks on one method, without pytest, as a report.

The same trials, checks, messages and support-matrix rows as the pytest suite (both take them
from :func:`harness.checking.checks.checks_of`); a trial the matrix expects to fail must fail
with the row's error, as a strict xfail does.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass

import torch

from harness.checking.checks import checks_of
from harness.checking.trials import GRIDS
from harness.core.errors import EveryExampleExpected, HarnessError, MethodUnavailable
from harness.methods import own_method, register_method, registered, unregister_method
from harness.problems.zoo import MODELS

#: What a trial came to, as pytest would show it.
STATUSES = ("passed", "failed", "xfailed", "xpassed", "skipped")


@dataclass(frozen=True)
class TrialOutcome:
    """One trial's verdict: its grid (``oracle``, ``sum``, ``norms``, ``clipped``, ``property``),
    its id (as in the suite's test ids), the status and the message or reason."""

    grid: str
    id: str
    status: str
    message: str = ""

    def __str__(self) -> str:
        line = f"{self.status.upper():8} {self.grid}[{self.id}]"
        return f"{line}: {self.message}" if self.message else line


@dataclass(frozen=True)
class MethodReport:
    """Every trial's outcome for one method; ``ok`` when nothing failed or passed unexpectedly."""

    method: str
    outcomes: tuple[TrialOutcome, ...]

    @property
    def ok(self) -> bool:
        """No failure and no unexpected pass (a support-matrix row to narrow)."""
        return bool(self.outcomes) and not self.failures

    @property
    def failures(self) -> list[TrialOutcome]:
        """The trials that failed, or passed where the support matrix expects a failure."""
        return [o for o in self.outcomes if o.status in ("failed", "xpassed")]

    def counts(self) -> dict[str, int]:
        """How many trials came to each status."""
        counted = Counter(o.status for o in self.outcomes)
        return {status: counted[status] for status in STATUSES if counted[status]}

    def __str__(self) -> str:
        summary = ", ".join(f"{n} {status}" for status, n in self.counts().items()) or "no trials"
        return "\n".join([f"method {self.method!r}: {summary}", *(str(o) for o in self.failures)])


def _judge(trial, check: Callable, grid: str) -> TrialOutcome:
    """Run one check and name its outcome as pytest's strict xfail would."""
    row = trial.expected
    try:
        if trial.device == "cuda" and not torch.cuda.is_available():
            raise MethodUnavailable("CUDA is not available on this machine")
        check(trial)
    except MethodUnavailable as exc:
        return TrialOutcome(grid, trial.id, "skipped", str(exc))
    except EveryExampleExpected as exc:
        return TrialOutcome(grid, trial.id, "xfailed", str(exc))
    except HarnessError as exc:
        if row is not None:
            return TrialOutcome(grid, trial.id, "xfailed", row.describe())
        return TrialOutcome(grid, trial.id, "failed", f"{type(exc).__name__}: {exc}")
    except Exception as exc:  # the check itself broke (an UnexpectedFailure, a bug): a failure, as in pytest
        return TrialOutcome(grid, trial.id, "failed", f"{type(exc).__name__}: {exc}")
    if row is not None:
        return TrialOutcome(grid, trial.id, "xpassed", f"passed, but the support matrix expects: {row.describe()}")
    return TrialOutcome(grid, trial.id, "passed")


def _name_for(fn: Callable) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]", "-", getattr(fn, "__name__", "method")).strip("-_") or "method"


def check_method(
    method: str | Callable,
    *,
    name: str | None = None,
    returns: str = "grads",
    clip_eps: float = 0.0,
    grids: Collection[str] | None = None,
    models: Collection[str] | None = None,
    slow: bool = False,
) -> MethodReport:
    """Run the suite's checks on one method and return a :class:`MethodReport`.

    ``method`` is a registered method's name, or a function of a :class:`~harness.Case` (the
    third-party contract), registered for the run under ``name`` (default: the function's name)
    for what it ``returns``, and removed afterwards (a function registered under that name
    already is checked as it is). ``grids`` narrows the checks (``oracle``,
    ``sum``, ``norms``, ``clipped``, ``property``), ``models`` the zoo models (registered ones; the
    trials not tied to a model, the property suite's, still run); a name neither knows is a
    ValueError that lists the known ones. ``slow`` adds the heavy cases. CUDA trials are skipped
    without a GPU, with the reason::

        report = harness.check_method(my_method)
        assert report.ok, report
    """
    _check_names("grids", grids, GRIDS)
    _check_names("models", models, MODELS)
    if isinstance(method, str):
        if method not in registered():
            raise KeyError(f"unknown method {method!r}; registered methods: {', '.join(registered())}")
        return _check(method, grids, models, slow)
    if not callable(method):
        raise TypeError(f"check_method takes a method's name or a function of a Case, got {type(method).__name__}")
    label = name or _name_for(method)
    if own_method(label, returns) is method:
        return _check(label, grids, models, slow)
    if label in registered():
        raise ValueError(f"a method named {label!r} is registered already: pass another name= (or its name)")
    register_method(label, method, returns=returns, clip_eps=clip_eps)
    try:
        return _check(label, grids, models, slow)
    finally:
        unregister_method(label)


def _check_names(what: str, names: Collection[str] | None, known: Collection[str]) -> None:
    """Refuse a selection naming something unknown (a misspelled model would select nothing, silently)."""
    if isinstance(names, str):
        raise TypeError(f"check_method: {what} takes a list of names, got the string {names!r}")
    unknown = sorted(set(names or ()) - set(known))
    if unknown:
        raise ValueError(f"check_method: unknown {what} {unknown}; known: {', '.join(known)}")


def _check(method: str, grids: Collection[str] | None, models: Collection[str] | None, slow: bool) -> MethodReport:
    outcomes = []
    for grid, trial, check in checks_of(methods=[method], grids=grids):
        model = getattr(trial, "model", None)
        if (trial.slow and not slow) or (models is not None and model is not None and model not in models):
            continue
        outcomes.append(_judge(trial, check, grid))
    return MethodReport(method, tuple(outcomes))
