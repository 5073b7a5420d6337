"""The one way a method is run, by the checks and the benchmarks alike: in the case's precision
mode, its result checked for the quantity's form, the model checked unchanged on the way out.

A method that returns the quantity itself is called for it; any other per-sample-gradient
method gives it through its gradients (the quantity derives it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from harness.core.case import Case
from harness.core.errors import HarnessError, MethodFailed, MethodUnavailable
from harness.core.hardware import HardwareLimit, hardware_limit
from harness.core.precision import precision_mode
from harness.core.structure import ModelState
from harness.methods import get_method, own_method
from harness.quantities import get_quantity


def describe(method: str, case: Case) -> str:
    """How messages name a method on a case."""
    return f"method {method!r} on {case.id}"


def _call(fn: Callable[[Case], Any], case: Case, where: str) -> Any:
    """Call ``fn`` on ``case`` in its precision mode; the model must come out unchanged. An error
    that only says this CPU cannot run the case (:func:`hardware_limit`) skips it."""
    __tracebackhide__ = True
    before = ModelState.of(case.model)
    with precision_mode(case.precision, case.device.type):
        try:
            result = fn(case)
        except HardwareLimit:
            raise
        except MethodUnavailable as exc:
            raise MethodUnavailable(f"{where} is unavailable here: {exc}") from exc
        except HarnessError:
            raise
        except Exception as exc:
            limit = hardware_limit(exc, case.precision.compute_dtype, case.device.type)
            if limit is not None:
                raise HardwareLimit(f"{limit} ({where})") from None
            raise MethodFailed(f"{where} raised {type(exc).__name__}: {exc}") from exc
    before.check_unchanged(case.model, where)
    return result


def failing(where: str, call: Callable[[], Any]) -> Any:
    """``call()``, where an error from inside a library fails as :class:`MethodFailed` naming ``where``
    (a check's own :class:`HarnessError` and :class:`MethodUnavailable` pass through)."""
    __tracebackhide__ = True
    try:
        return call()
    except (HarnessError, MethodUnavailable):
        raise
    except Exception as exc:
        raise MethodFailed(f"{where} raised {type(exc).__name__}: {exc}") from exc


def run(method: str, quantity: str, case: Case) -> Any:
    """``method``'s ``quantity`` on ``case``, checked: its own, or derived from its gradients.

    Raises :class:`MethodFailed` if it raised, :class:`MethodOutputError` for a result of the
    wrong form, :class:`MethodLeftState` if it changed the model, :class:`MethodUnavailable`
    if it cannot run here.
    """
    __tracebackhide__ = True
    q = get_quantity(quantity)
    own = own_method(method, quantity)
    if own is None:
        return q.from_grads(run(method, "grads", case), case)
    where = describe(method, case) + (f" ({q.call_label})" if q.call_label else "")
    return q.validate(_call(own, case, where), case, where)


def timed_call(method: str, quantity: str, case: Case) -> Callable[[], Any]:
    """What a benchmark times: ``method``'s own ``quantity`` (its gradients where it derives it),
    called as :func:`run` calls it, in the case's precision mode.

    The first call is made here through :func:`run`, so a method that fails, returns the wrong
    form or leaves state behind fails the benchmark instead of being timed; the calls that
    follow skip those checks (a snapshot of the model would be timed with them).
    """
    own = own_method(method, quantity)
    fn = own if own is not None else get_method(method)
    run(method, quantity if own is not None else "grads", case)

    def call() -> Any:
        with precision_mode(case.precision, case.device.type):
            return fn(case)

    return call
