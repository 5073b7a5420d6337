"""The quantities a method can return, each one object: what it looks like, how the harness derives
it from per-sample gradients, the reference it is compared with, and how test ids name it.

- ``grads`` (:mod:`.grads`): per-sample gradients, DESIGN.md's contract.
- ``norms`` (:mod:`.norms`): each sample's gradient norm over all parameters.
- ``clipped`` (:mod:`.clipped`): the noiseless DP-SGD step, ``sum_i g_i * min(1, C / (||g_i|| + eps))``.

A fourth quantity is a new module here with a :class:`Quantity` subclass, and its line in
:data:`QUANTITIES`; methods register for it with ``register_method(..., returns=NAME)``.
"""

from __future__ import annotations

from harness.quantities.base import Quantity
from harness.quantities.clipped import Clipped
from harness.quantities.grads import Grads
from harness.quantities.norms import Norms

#: Every quantity by name.
QUANTITIES: dict[str, Quantity] = {q.name: q for q in (Grads(), Norms(), Clipped())}


def timing_order() -> list[str]:
    """The quantities in the order a benchmark prefers to time a method that gives several."""
    return sorted(QUANTITIES, key=lambda name: QUANTITIES[name].timing_preference)


def get_quantity(name: str) -> Quantity:
    """The quantity called ``name``, or a clear error listing the known ones."""
    try:
        return QUANTITIES[name]
    except KeyError:
        raise ValueError(f"unknown quantity {name!r}; known: {', '.join(QUANTITIES)}") from None


__all__ = ["QUANTITIES", "Clipped", "Grads", "Norms", "Quantity", "get_quantity", "timing_order"]
