"""Building a case from a model's spec and a seed: the same parameters and batch in every precision,
so the float64 oracle and every method see the same numbers. A registered model is first checked,
once, to run on its own inputs (:func:`check_model`)."""

from __future__ import annotations

import copy
import functools

import torch
import torch.nn as nn

from harness.core.case import LOSS_REDUCTIONS, Case
from harness.core.errors import ModelBroken
from harness.core.precision import get_precision
from harness.problems.zoo import Batch, ModelSpec, generation, get_model


def build_case(
    model: str | ModelSpec,
    batch_size: int,
    precision: str = "float64",
    device: str = "cpu",
    loss_reduction: str = "mean",
    seed: int = 0,
) -> Case:
    """Build model, batch and loss for a case; same seed, same numbers in every precision.

    ``model`` is a registered model's name, or a spec (a drawn problem's, for instance). Raises
    :class:`~harness.core.errors.ModelBroken` for a registered model that cannot run on its inputs.
    """
    if batch_size < 0:
        raise ValueError(f"batch_size must be at least 0 (an empty batch), got {batch_size}")
    if loss_reduction not in LOSS_REDUCTIONS:
        raise ValueError(f"loss_reduction must be one of {LOSS_REDUCTIONS}, got {loss_reduction!r}")
    spec = get_model(model)
    check_model(spec)
    mode = get_precision(precision)
    dev = torch.device(device)
    module = _module(spec, seed).to(device=dev, dtype=mode.dtype).train(spec.train_mode)
    inputs, targets = _batch(spec, batch_size, seed)
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


def _module(spec: ModelSpec, seed: int) -> nn.Module:
    """The model, initialised from ``seed`` without touching the global RNG's state: a copy of
    the one built for this spec, registration and seed (drawing resnet18's 11M initial values
    took 70 ms a case; a copy takes a fraction), or a fresh build where it cannot be copied."""
    template = _template(spec, generation(spec), seed)
    try:
        return copy.deepcopy(template)
    except Exception:  # a user's module that deepcopy cannot copy: build it again
        return _build(spec, seed)


@functools.lru_cache(maxsize=32)
def _template(spec: ModelSpec, registration: int, seed: int) -> nn.Module:
    """The model as built for ``seed``, kept for :func:`_module` to copy (never handed out)."""
    return _build(spec, seed)


def _build(spec: ModelSpec, seed: int) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return spec.build()


def _batch(spec: ModelSpec, batch_size: int, seed: int) -> Batch:
    """The model's batch for ``seed``; a ValueError where it is not a pair of tensors of ``batch_size`` rows."""
    batch = spec.make_batch(batch_size, torch.Generator().manual_seed(seed + 1))
    if not (isinstance(batch, tuple | list) and len(batch) == 2 and all(isinstance(t, torch.Tensor) for t in batch)):
        raise ValueError(f"make_batch returned {type(batch).__name__} {_shapes(batch)}, expected (inputs, targets) tensors")
    if any(t.dim() == 0 or t.shape[0] != batch_size for t in batch):
        raise ValueError(f"make_batch({batch_size}) returned shapes {_shapes(batch)}: both need {batch_size} rows")
    return batch[0], batch[1]


def _shapes(batch: object) -> str:
    """The shapes in a batch, for a message: ``(7, 20), (7,)``."""
    items = batch if isinstance(batch, tuple | list) else (batch,)
    return ", ".join(str(tuple(t.shape)) if isinstance(t, torch.Tensor) else type(t).__name__ for t in items)


#: Each registered model's check (by spec and registration): None where it runs, else the message
#: and the error it raised.
_CHECKED: dict[tuple[ModelSpec, int], tuple[str, Exception | None] | None] = {}


def check_model(spec: ModelSpec) -> None:
    """Raise :class:`~harness.core.errors.ModelBroken` if a registered model cannot run on its own
    inputs as the oracle runs it: built, its batch drawn, a forward, the loss and a backward in
    float64 on the CPU, on the batch and on one sample. Checked once per registration of the
    model; a spec that is not the registered one (a drawn problem's) is not checked.

    A model that fails only in another precision or on other hardware is not broken: that is the
    support matrix's, or the hardware limits', to say.
    """
    registration = generation(spec)
    if registration < 0:
        return
    key = (spec, registration)
    if key not in _CHECKED:
        _CHECKED[key] = _first_failure(spec)
    failure = _CHECKED[key]
    if failure is not None:
        message, cause = failure
        raise ModelBroken(f"model {spec.name!r} cannot run on its own inputs (float64, CPU): {message}") from cause


def _first_failure(spec: ModelSpec) -> tuple[str, Exception | None] | None:
    """What fails first when the model runs as the oracle runs it, or None where it runs."""
    batch_size = next((b for b in sorted(spec.batch_sizes) if b > 1), 2)
    step = "building it"
    try:
        with torch.random.fork_rng(devices=[]), torch.enable_grad():
            model = _module(spec, 0).to(torch.float64).train(spec.train_mode)
            step = "drawing its batch"
            inputs, targets = _batch(spec, batch_size, 0)
            inputs = inputs.to(torch.float64) if inputs.is_floating_point() else inputs
            params = [p for p in model.parameters() if p.requires_grad]
            if not params:
                return "it has no parameters that require gradients", None
            for rows, what in ((slice(None), f"a batch of {batch_size}"), (slice(0, 1), "one sample (as the loop runs it)")):
                step = f"its forward on {what}"
                outputs = model(inputs[rows])
                step = f"its loss on {what}"
                loss = spec.loss(outputs, targets[rows], reduction="mean")
                if not isinstance(loss, torch.Tensor) or loss.dim() != 0 or not torch.isfinite(loss):
                    return f"its loss on {what} is {_describe(loss)}, expected a finite scalar tensor", None
                step = f"the backward of its loss on {what}"
                torch.autograd.grad(loss, params, allow_unused=True)
    except Exception as exc:
        first_line = next(iter(str(exc).splitlines()), "")
        return f"{step} raised {type(exc).__name__}: {first_line}", exc
    return None


def _describe(value: object) -> str:
    """A loss that is not a finite scalar, for a message."""
    if isinstance(value, torch.Tensor):
        return f"of shape {tuple(value.shape)}" if value.dim() else str(value.item())
    return f"a {type(value).__name__}"
