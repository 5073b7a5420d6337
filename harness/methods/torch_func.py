"""Built-in methods from PyTorch's function transforms: the loop, torch.func's vmap (plain, chunked,
compiled) and the legacy functorch API."""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable

import torch

from harness.core.case import Case
from harness.core.errors import MethodUnavailable
from harness.core.releases import TORCH_COMPILE, reset_compiler
from harness.methods.registry import register_method


def loop_grads(case: Case) -> dict[str, torch.Tensor]:
    """One forward and one ``torch.autograd.grad`` per sample (the tutorials' naive loop)."""
    params = case.trainable_parameters()
    per_sample: dict[str, list[torch.Tensor]] = {name: [] for name in params}
    for i in range(case.batch_size):
        loss = case.loss_fn(case.model(case.inputs[i : i + 1]), case.targets[i : i + 1])
        grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
        for (name, p), g in zip(params.items(), grads, strict=True):
            per_sample[name].append(torch.zeros_like(p) if g is None else g)
    return {name: torch.stack(gs) if gs else params[name].new_zeros((0, *params[name].shape)) for name, gs in per_sample.items()}


register_method("loop", loop_grads)


def _vmap_grads(case: Case, chunk_size: int | None = None, compiled: bool = False) -> dict[str, torch.Tensor]:
    """``functional_call`` + ``vmap(grad(...), in_dims=(None, None, 0, 0))``, as the torch.func tutorial,
    optionally under ``torch.compile``. Frozen parameters go in with the buffers, not differentiated."""
    from torch.func import functional_call, grad, vmap

    params = {k: v.detach() for k, v in case.trainable_parameters().items()}
    frozen = {k: v.detach() for k, v in case.model.named_parameters() if k not in params}
    buffers = {**frozen, **{k: v.detach() for k, v in case.model.named_buffers()}}

    def compute_loss(params, buffers, sample, target):
        predictions = functional_call(case.model, (params, buffers), (sample.unsqueeze(0),))
        return case.loss_fn(predictions, target.unsqueeze(0))

    per_sample = vmap(grad(compute_loss), in_dims=(None, None, 0, 0), chunk_size=chunk_size)
    if not compiled:
        return per_sample(params, buffers, case.inputs, case.targets)
    TORCH_COMPILE.require()
    try:
        return _compiled_for(case, per_sample)(params, buffers, case.inputs, case.targets)
    finally:
        for p in case.model.parameters():  # dynamo tags the parameters it traced through
            if hasattr(p, "_dynamo_static_input_type"):
                del p._dynamo_static_input_type


#: The compiled function of the last case ``vmap-compiled`` ran on (a benchmark calls it again).
_COMPILED: dict[str, object] = {}


def _compiled_for(case: Case, fn: Callable) -> Callable:
    """``torch.compile(fn)``, compiled afresh for each new case and reused for the same case.

    Each new case starts from a reset of the compiler (:func:`reset_compiler`): recompiling one function for case
    after case would reach dynamo's recompile limit, after which it runs the function eagerly,
    without an error, and the method would no longer test the compiler.
    """
    ref = _COMPILED.get("case")
    if ref is None or ref() is not case:
        reset_compiler()
        _COMPILED.update(case=weakref.ref(case), fn=torch.compile(fn))
    return _COMPILED["fn"]


#: vmap-chunked's chunk size: small, so B=7 ends in a partial chunk and B=1 is one short chunk.
CHUNK_SIZE = 4

register_method("vmap", _vmap_grads)
register_method("vmap-chunked", lambda case: _vmap_grads(case, chunk_size=CHUNK_SIZE))
register_method("vmap-compiled", lambda case: _vmap_grads(case, compiled=True))


@register_method("functorch")
def functorch_grads(case: Case) -> dict[str, torch.Tensor]:
    """The legacy ``functorch.make_functional_with_buffers`` API, as seeds 000 and 002 use it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the legacy API's deprecation notices
        try:
            from functorch import grad, make_functional_with_buffers, vmap
        except ImportError as exc:
            raise MethodUnavailable(f"the installed torch {torch.__version__} has no functorch API: {exc}") from exc
        fmodel, params, buffers = make_functional_with_buffers(case.model)

        def compute_loss(params, buffers, sample, target):
            return case.loss_fn(fmodel(params, buffers, sample.unsqueeze(0)), target.unsqueeze(0))

        grads = vmap(grad(compute_loss), in_dims=(None, None, 0, 0))(params, buffers, case.inputs, case.targets)
    trainable = case.trainable_parameters()  # the legacy API differentiates frozen parameters too
    return {name: g for (name, _), g in zip(case.model.named_parameters(), grads, strict=True) if name in trainable}
