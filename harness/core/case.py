"""A case: one model on one batch, in one precision, on one device (built by
:func:`harness.problems.build.build_case`), and the id that names it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from harness.core.precision import Precision

LOSS_REDUCTIONS = ("mean", "sum")


@dataclass
class Case:
    """What a method receives (DESIGN.md's third-party contract)."""

    model_name: str
    model: nn.Module
    inputs: torch.Tensor
    targets: torch.Tensor
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    loss_reduction: str
    device: torch.device
    dtype: torch.dtype
    precision: Precision = field(repr=False)
    batch_size: int
    seed: int = 0
    #: The clipping bound C, set for the clipped-step checks (methods that return it read it).
    max_grad_norm: float | None = None

    def clipping_bound(self) -> float:
        """The clipping bound C; a clear error where the case has none (the clipped-step checks set it)."""
        if self.max_grad_norm is None:
            raise ValueError(f"case {self.id} has no max_grad_norm (the clipping bound C)")
        return self.max_grad_norm

    def trainable_parameters(self) -> dict[str, nn.Parameter]:
        """The parameters a method returns results for: those that require gradients, by name."""
        return trainable_parameters(self.model)

    @property
    def id(self) -> str:
        """The case part of a test id, e.g. ``cpu-float64-simple_cnn-B7`` (``-sum`` if summed)."""
        return case_id(self.device.type, self.precision.name, self.model_name, self.batch_size, self.loss_reduction)


def trainable_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """``model``'s parameters that require gradients, by name: a frozen one (``requires_grad=False``)
    gets no per-sample gradient, no norm contribution and no step (DESIGN.md's contract)."""
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def case_id(device: str, precision: str, model: str, batch_size: int, loss_reduction: str = "mean") -> str:
    """The id of a case; the loss reduction shows only when it is not the default."""
    parts = [device, precision, model, f"B{batch_size}"]
    if loss_reduction != "mean":
        parts.append(loss_reduction)
    return "-".join(parts)
