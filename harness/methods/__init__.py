"""The methods: a registry of functions keyed by the quantity they return, and the built-in ones,
grouped by library (:mod:`~harness.methods.torch_func`, :mod:`~harness.methods.opacus`,
:mod:`~harness.methods.expanded_weights`, :mod:`~harness.methods.backpack`)."""

from harness.methods import torch_func, opacus, expanded_weights, backpack  # noqa: I001  (the built-ins register on import, in this order)
from harness.methods.registry import (
    METHODS,
    clip_eps,
    get_method,
    gives_itself,
    methods_for,
    own_method,
    own_methods,
    register_method,
    registered,
    timed_methods,
    unregister_method,
)
from harness.methods.torch_func import loop_grads

#: The methods registered above, before any plugin adds its own (the README's support table lists these).
BUILT_IN: tuple[str, ...] = tuple(registered())

__all__ = [
    "BUILT_IN",
    "METHODS",
    "backpack",
    "clip_eps",
    "expanded_weights",
    "get_method",
    "gives_itself",
    "loop_grads",
    "methods_for",
    "opacus",
    "own_method",
    "own_methods",
    "register_method",
    "registered",
    "timed_methods",
    "torch_func",
    "unregister_method",
]
