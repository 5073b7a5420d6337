"""Built-in methods from BackPACK: ``BatchGrad`` (per-sample gradients) and ``BatchL2Grad`` (norms)."""

from __future__ import annotations

import copy
import importlib

import torch

from harness.core.case import Case
from harness.core.releases import BACKPACK_FIRST_ORDER, library
from harness.methods._common import batch_scale
from harness.methods.registry import register_method


def _backpack(case: Case, extension: str) -> dict[str, torch.Tensor]:
    """Run BackPACK's first-order ``extension`` on a copy of the model; its per-parameter results.

    BackPACK hooks every module for good, so it works on a deep copy. Its results are those of
    the batch loss: under a mean loss, ``grad_batch`` holds ``g_i / B`` and ``batch_l2`` holds
    ``||g_i||^2 / B^2`` (both are scaled back here by the caller).
    """
    backpack = library("backpack")  # one that does not import with this torch skips, with its error
    BACKPACK_FIRST_ORDER.require()
    extensions = importlib.import_module("backpack.extensions")
    model = backpack.extend(copy.deepcopy(case.model))
    loss = case.loss_fn(model(case.inputs), case.targets)
    attribute = {"BatchGrad": "grad_batch", "BatchL2Grad": "batch_l2"}[extension]
    with backpack.backpack(getattr(extensions, extension)()):
        loss.backward()
    return {name: getattr(p, attribute).detach() for name, p in model.named_parameters() if hasattr(p, attribute)}


@register_method("backpack")
def backpack_grads(case: Case) -> dict[str, torch.Tensor]:
    """BackPACK's ``BatchGrad`` (individual gradients of the batch loss), in the per-sample form."""
    return {name: g * batch_scale(case) for name, g in _backpack(case, "BatchGrad").items()}


@register_method("backpack", returns="norms")
def backpack_norms(case: Case) -> torch.Tensor:
    """BackPACK's ``BatchL2Grad``: per-sample squared norms per parameter, summed over parameters."""
    squares = _backpack(case, "BatchL2Grad")
    missing = [name for name in case.trainable_parameters() if name not in squares]
    if missing:
        raise RuntimeError(f"BackPACK's BatchL2Grad computed nothing for {', '.join(missing)}")
    return torch.stack(list(squares.values())).sum(dim=0).sqrt() * batch_scale(case)
