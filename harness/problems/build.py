"""Building a case from a model's spec and a seed: the same parameters and batch in every precision,
so the float64 oracle and every method see the same numbers."""

from __future__ import annotations

import functools

import torch

from harness.core.case import LOSS_REDUCTIONS, Case
from harness.core.precision import get_precision
from harness.problems.zoo import ModelSpec, get_model


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
