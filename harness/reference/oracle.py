"""The source of truth: the loop in float64 on the CPU, computed once per case and cached."""

from __future__ import annotations

import functools

import torch

from harness.methods import loop_grads
from harness.problems.build import build_case
from harness.problems.zoo import ModelSpec, generation, get_model

#: Enough for the grids (the method varies fastest) and for a property test's examples, which
#: the next method's test draws again in the same order under the derandomized ``ci`` profile.
CACHE_SIZE = 64
#: The oracle as a trial names its method, precision and device: ``loop_grads`` (registered as
#: ``loop``), in float64, on the CPU. The grids leave that trial out: it is the oracle itself.
ORACLE = ("loop", "float64", "cpu")


def oracle(model: str | ModelSpec, batch_size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Per-sample gradients of ``model`` on its seeded batch, by the float64 CPU loop.

    The per-sample gradient does not depend on the loss reduction (it is the loss of a batch
    of one), so one oracle serves every precision, device and reduction of the case.
    Callers must not modify the returned tensors.
    """
    spec = get_model(model)
    return _oracle(spec, generation(spec), batch_size, seed)


@functools.lru_cache(maxsize=CACHE_SIZE)
def _oracle(spec: ModelSpec, generation: int, batch_size: int, seed: int) -> dict[str, torch.Tensor]:
    """The oracle of one case, cached by the spec and its :func:`~harness.problems.zoo.generation`
    (a model registered anew under the same name is another model)."""
    _, precision, device = ORACLE
    case = build_case(spec, batch_size, precision=precision, device=device, seed=seed)
    return {name: g.detach() for name, g in loop_grads(case).items()}


def batch_gradient(model: str | ModelSpec, batch_size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """The ordinary gradient of the sum-reduced batch loss, in float64 on the CPU."""
    case = build_case(model, batch_size, precision="float64", device="cpu", loss_reduction="sum", seed=seed)
    params = case.trainable_parameters()
    loss = case.loss_fn(case.model(case.inputs), case.targets)
    return dict(zip(params, torch.autograd.grad(loss, list(params.values())), strict=True))
