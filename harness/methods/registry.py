"""The method registry: functions of a :class:`~harness.core.case.Case`, by name, for the quantity
they return (:mod:`harness.quantities`: ``grads``, DESIGN.md's contract, ``norms``, ``clipped``).

A method registered for the gradients counts for every other quantity too: the harness derives
them from its gradients. Every method must leave the model as it found it.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from harness.quantities import QUANTITIES, timing_order

#: Per quantity, the methods that return it themselves, by name.
_REGISTRIES: dict[str, dict[str, Callable]] = {quantity: {} for quantity in QUANTITIES}
#: Per-sample-gradient methods (DESIGN.md's contract), by name.
METHODS: dict[str, Callable] = _REGISTRIES["grads"]
#: The stabilizer a clipped-step method adds to each norm before dividing (0 unless declared).
_CLIP_EPS: dict[str, float] = {}

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


def register_method(
    name: str, fn: Callable | None = None, *, replace: bool = False, returns: str = "grads", clip_eps: float = 0.0
) -> Callable:
    """Register ``fn`` under ``name`` for the quantity it ``returns`` (usable as a decorator).

    ``replace=True`` swaps an existing one; ``clip_eps`` declares a clipped-step method's
    stabilizer (Opacus: 1e-6). One name may be registered once per quantity.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"method name {name!r} must start with a letter or digit and contain only letters, "
            "digits and '_.+-' (it becomes part of test ids)"
        )
    if returns not in QUANTITIES:
        raise ValueError(f"method {name!r}: returns must be one of {', '.join(QUANTITIES)}, got {returns!r}")
    if clip_eps and returns != "clipped":
        raise ValueError(f"method {name!r}: clip_eps applies only to methods that return the clipped step")
    registry = _REGISTRIES[returns]

    def add(method: Callable) -> Callable:
        if not callable(method):
            raise TypeError(f"method {name!r} must be callable, got {type(method).__name__}")
        if name in registry and not replace:
            raise ValueError(f"method {name!r} is already registered for {returns} (pass replace=True to swap it)")
        registry[name] = method
        if returns == "clipped":
            _CLIP_EPS[name] = clip_eps
        return method

    return add if fn is None else add(fn)


def get_method(name: str, returns: str = "grads") -> Callable:
    """The method registered under ``name`` for ``returns``, or a clear error listing the known ones."""
    registry = _REGISTRIES[returns]
    try:
        return registry[name]
    except KeyError:
        kind = "" if returns == "grads" else f"{returns} "
        raise KeyError(f"unknown {kind}method {name!r}; registered {kind}methods: {', '.join(registry)}") from None


def own_method(name: str, quantity: str) -> Callable | None:
    """The function ``name`` registered for ``quantity`` itself, or None (then it is derived, if at all)."""
    return _REGISTRIES[quantity].get(name)


def clip_eps(name: str) -> float:
    """The stabilizer method ``name`` declared for its clipped step (0 if none)."""
    return _CLIP_EPS.get(name, 0.0)


def own_methods(quantity: str) -> list[str]:
    """The methods that return ``quantity`` themselves, in registration order."""
    return list(_REGISTRIES[quantity])


def methods_for(quantity: str) -> list[str]:
    """Every method that gives ``quantity``: its own registrations, then those derived from grads."""
    own = own_methods(quantity)
    return own + [name for name in METHODS if name not in own]


def gives_itself(name: str) -> list[str]:
    """The quantities method ``name`` returns itself (not derived by the harness)."""
    return [quantity for quantity, registry in _REGISTRIES.items() if name in registry]


def timed_methods() -> dict[str, str]:
    """Every registered method once, gradient methods first, with the quantity its benchmark times."""
    timed: dict[str, str] = {}
    for quantity in timing_order():
        for name in _REGISTRIES[quantity]:
            timed.setdefault(name, quantity)
    return timed


def registered() -> list[str]:
    """Every registered method name, once, in registration order per quantity."""
    return list(dict.fromkeys(name for registry in _REGISTRIES.values() for name in registry))


def unregister_method(name: str) -> None:
    """Remove ``name`` from every quantity's registry (for tests that register throw-away methods)."""
    for registry in _REGISTRIES.values():
        registry.pop(name, None)
    _CLIP_EPS.pop(name, None)
