"""The method registry and the built-in per-sample-gradient methods.

A method takes a :class:`~harness.case.Case` and returns ``{name: tensor (B, *param.shape)}``
for every parameter of ``case.model``, in the per-sample form of DESIGN.md: the gradient of
the loss of a batch of one. It must leave the model as it found it.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Mapping

import torch

from harness.case import Case
from harness.errors import MethodUnavailable

Grads = Mapping[str, torch.Tensor]
MethodFn = Callable[[Case], Grads]

METHODS: dict[str, MethodFn] = {}

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


def register_method(name: str, fn: MethodFn | None = None, *, replace: bool = False):
    """Register ``fn`` under ``name`` (usable as a decorator); ``replace=True`` swaps an existing one."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"method name {name!r} must start with a letter or digit and contain only letters, "
            "digits and '_.+-' (it becomes part of test ids)"
        )

    def add(method: MethodFn) -> MethodFn:
        if not callable(method):
            raise TypeError(f"method {name!r} must be callable, got {type(method).__name__}")
        if name in METHODS and not replace:
            raise ValueError(f"method {name!r} is already registered (pass replace=True to swap it)")
        METHODS[name] = method
        return method

    return add if fn is None else add(fn)


def get_method(name: str) -> MethodFn:
    """The method registered under ``name``, or a clear error listing the known ones."""
    try:
        return METHODS[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; registered methods: {', '.join(METHODS)}") from None


def loop_grads(case: Case) -> dict[str, torch.Tensor]:
    """One forward and one ``torch.autograd.grad`` per sample (the tutorials' naive loop)."""
    names, params = zip(*case.model.named_parameters(), strict=True)
    per_sample: list[tuple[torch.Tensor, ...]] = []
    for i in range(case.batch_size):
        loss = case.loss_fn(case.model(case.inputs[i : i + 1]), case.targets[i : i + 1])
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        per_sample.append(tuple(torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)))
    return {name: torch.stack(g) for name, g in zip(names, zip(*per_sample, strict=True), strict=True)}


register_method("loop", loop_grads)


def _vmap_grads(case: Case, chunk_size: int | None = None) -> dict[str, torch.Tensor]:
    """``functional_call`` + ``vmap(grad(...), in_dims=(None, None, 0, 0))``, as the torch.func tutorial."""
    from torch.func import functional_call, grad, vmap

    params = {k: v.detach() for k, v in case.model.named_parameters()}
    buffers = {k: v.detach() for k, v in case.model.named_buffers()}

    def compute_loss(params, buffers, sample, target):
        predictions = functional_call(case.model, (params, buffers), (sample.unsqueeze(0),))
        return case.loss_fn(predictions, target.unsqueeze(0))

    per_sample = vmap(grad(compute_loss), in_dims=(None, None, 0, 0), chunk_size=chunk_size)
    return per_sample(params, buffers, case.inputs, case.targets)


#: vmap-chunked's chunk size: small, so B=7 ends in a partial chunk and B=1 is one short chunk.
CHUNK_SIZE = 4

register_method("vmap", _vmap_grads)
register_method("vmap-chunked", lambda case: _vmap_grads(case, chunk_size=CHUNK_SIZE))


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
    return {name: g for (name, _), g in zip(case.model.named_parameters(), grads, strict=True)}


_LEFTOVER_ATTRIBUTES = ("grad_sample", "_forward_counter", "_current_grad_sample")


def clear_grad_samples(model: torch.nn.Module) -> None:
    """Remove ``.grad`` and the per-sample attributes that Opacus and ExpandedWeights set on parameters."""
    for p in model.parameters():
        p.grad = None
        for attr in _LEFTOVER_ATTRIBUTES:
            if hasattr(p, attr):
                delattr(p, attr)


def _collect_grad_samples(case: Case) -> dict[str, torch.Tensor]:
    """Read ``p.grad_sample`` after a backward; a parameter without one is left out (reported as missing)."""
    return {
        name: p.grad_sample.detach().clone()
        for name, p in case.model.named_parameters()
        if getattr(p, "grad_sample", None) is not None
    }


def _opacus_grads(case: Case, wrapper: Callable[..., torch.nn.Module], **kwargs) -> dict[str, torch.Tensor]:
    """Wrap the model with an Opacus grad-sample module, run one batch, then unwrap."""
    gsm = wrapper(case.model, batch_first=True, loss_reduction=case.loss_reduction, **kwargs)
    try:
        case.loss_fn(gsm(case.inputs), case.targets).backward()
        return _collect_grad_samples(case)
    finally:
        if hasattr(gsm, "_close"):
            gsm._close()
        clear_grad_samples(case.model)


def _opacus_gsm(**kwargs) -> MethodFn:
    def method(case: Case) -> dict[str, torch.Tensor]:
        from opacus import GradSampleModule

        return _opacus_grads(case, GradSampleModule, **kwargs)

    return method


register_method("opacus-hooks", _opacus_gsm())
register_method("opacus-functorch", _opacus_gsm(force_functorch=True))


@register_method("opacus-ew")
def opacus_ew_grads(case: Case) -> dict[str, torch.Tensor]:
    """Opacus' ``GradSampleModuleExpandedWeights`` (PyTorch's ExpandedWeights behind Opacus' API)."""
    from opacus.grad_sample import GradSampleModuleExpandedWeights

    return _opacus_grads(case, GradSampleModuleExpandedWeights)


@register_method("expanded-weights")
def expanded_weights_grads(case: Case) -> dict[str, torch.Tensor]:
    """PyTorch's ``call_for_per_sample_grads`` (ExpandedWeights) used directly."""
    from torch.nn.utils._per_sample_grad import call_for_per_sample_grads

    try:
        wrapped = call_for_per_sample_grads(
            case.model, batch_size=case.batch_size, loss_reduction=case.loss_reduction
        )
        case.loss_fn(wrapped(case.inputs), case.targets).backward()
        return _collect_grad_samples(case)
    finally:
        clear_grad_samples(case.model)
