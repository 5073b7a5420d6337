"""A case: one model on one batch, in one precision, on one device.

``build_case`` makes it deterministically from a seed, so the float64 oracle and every
method see the same parameters and the same batch.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from harness.models import ModelSpec, get_model
from harness.precision import Precision, get_precision

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

    @property
    def id(self) -> str:
        """The case part of a test id, e.g. ``cpu-float64-simple_cnn-B7`` (``-sum`` if summed)."""
        return case_id(self.device.type, self.precision.name, self.model_name, self.batch_size, self.loss_reduction)


def case_id(device: str, precision: str, model: str, batch_size: int, loss_reduction: str = "mean") -> str:
    """The id of a case; the loss reduction shows only when it is not the default."""
    parts = [device, precision, model, f"B{batch_size}"]
    if loss_reduction != "mean":
        parts.append(loss_reduction)
    return "-".join(parts)


def build_case(
    model: str | ModelSpec,
    batch_size: int,
    precision: str = "float64",
    device: str = "cpu",
    loss_reduction: str = "mean",
    seed: int = 0,
) -> Case:
    """Build model, batch and loss for a case; same seed, same numbers in every precision.

    ``model`` is a registered model's name, or a spec (a drawn problem's, for instance).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if loss_reduction not in LOSS_REDUCTIONS:
        raise ValueError(f"loss_reduction must be one of {LOSS_REDUCTIONS}, got {loss_reduction!r}")
    spec = get_model(model)
    mode = get_precision(precision)
    dev = torch.device(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = spec.build()
    inputs, targets = spec.make_batch(batch_size, torch.Generator().manual_seed(seed + 1))
    module = module.to(device=dev, dtype=mode.dtype).train(spec.train_mode)
    inputs = inputs.to(dev, mode.dtype) if inputs.is_floating_point() else inputs.to(dev)
    return Case(
        model_name=spec.name,
        model=module,
        inputs=inputs,
        targets=targets.to(dev),
        loss_fn=functools.partial(spec.loss, reduction=loss_reduction),
        loss_reduction=loss_reduction,
        device=dev,
        dtype=mode.dtype,
        precision=mode,
        batch_size=batch_size,
        seed=seed,
    )
