"""Built-in methods from Opacus: grad samples by hooks, by functorch and by ExpandedWeights; the
DPOptimizer's clipped step; ghost clipping's norms and clipped step."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch

from harness.core.case import Case
from harness.core.releases import (
    FORCE_FUNCTORCH,
    GHOST_CLIPPING,
    GHOST_CLIPPING_TENSOR,
    OPACUS_EXPANDED_WEIGHTS,
    Feature,
    library,
)
from harness.methods._common import clear_grad_samples, collect
from harness.methods.registry import register_method


@contextlib.contextmanager
def _opacus_wrapped(case: Case, wrapper: Callable[..., torch.nn.Module], **kwargs) -> Iterator[torch.nn.Module]:
    """The model wrapped by an Opacus grad-sample module for one batch; unwrapped and cleaned after."""
    gsm = wrapper(case.model, batch_first=True, loss_reduction=case.loss_reduction, **kwargs)
    try:
        yield gsm
    finally:
        if hasattr(gsm, "_close"):
            gsm._close()
        clear_grad_samples(case.model)


def _opacus_grads(case: Case, wrapper: Callable[..., torch.nn.Module], **kwargs) -> dict[str, torch.Tensor]:
    """Wrap the model with an Opacus grad-sample module, run one batch, read ``grad_sample``."""
    with _opacus_wrapped(case, wrapper, **kwargs) as gsm:
        case.loss_fn(gsm(case.inputs), case.targets).backward()
        return collect(case, "grad_sample")


def _opacus_gsm(*needs: Feature, **kwargs) -> Callable[[Case], dict[str, torch.Tensor]]:
    def method(case: Case) -> dict[str, torch.Tensor]:
        opacus = library("opacus")
        for feature in needs:
            feature.require()
        return _opacus_grads(case, opacus.GradSampleModule, **kwargs)

    return method


register_method("opacus-hooks", _opacus_gsm())
register_method("opacus-functorch", _opacus_gsm(FORCE_FUNCTORCH, force_functorch=True))


@register_method("opacus-ew")
def opacus_ew_grads(case: Case) -> dict[str, torch.Tensor]:
    """Opacus' ``GradSampleModuleExpandedWeights`` (PyTorch's ExpandedWeights behind Opacus' API)."""
    library("opacus")
    OPACUS_EXPANDED_WEIGHTS.require()
    from opacus.grad_sample import GradSampleModuleExpandedWeights

    return _opacus_grads(case, GradSampleModuleExpandedWeights)


def _expected_batch_size(case: Case) -> int:
    """The batch size the DP optimizer divides the summed step by under a mean loss: the case's,
    or 1 for an empty batch (Poisson sampling's expected batch size is never 0)."""
    return max(case.batch_size, 1)


def _summed_step(case: Case) -> dict[str, torch.Tensor]:
    """The optimizer's ``p.grad`` after ``pre_step`` in the summed form (times the batch size it divided by)."""
    return collect(case, "grad", _expected_batch_size(case) if case.loss_reduction == "mean" else 1)


def _dp_optimizer(case: Case, optimizer_class: type, max_grad_norm: float) -> torch.optim.Optimizer:
    """An Opacus DP optimizer with no noise around plain SGD with learning rate 0."""
    return optimizer_class(
        torch.optim.SGD(list(case.trainable_parameters().values()), lr=0.0),
        noise_multiplier=0.0,
        max_grad_norm=max_grad_norm,
        expected_batch_size=_expected_batch_size(case),
        loss_reduction=case.loss_reduction,
    )


#: Opacus divides by ``||g_i|| + 1e-6`` (``DPOptimizer.clip_and_accumulate``, ``get_clipping_coef``).
OPACUS_CLIP_EPS = 1e-6


@register_method("opacus-dpoptimizer", returns="clipped", clip_eps=OPACUS_CLIP_EPS)
def opacus_dpoptimizer_step(case: Case) -> dict[str, torch.Tensor]:
    """Opacus' ``DPOptimizer`` with ``noise_multiplier=0`` over ``GradSampleModule``: ``p.grad``
    after one ``pre_step`` (clip, sum, no noise, scale), in the summed form."""
    library("opacus")
    from opacus import GradSampleModule
    from opacus.optimizers import DPOptimizer

    with _opacus_wrapped(case, GradSampleModule) as gsm:
        optimizer = _dp_optimizer(case, DPOptimizer, case.clipping_bound())
        case.loss_fn(gsm(case.inputs), case.targets).backward()
        optimizer.pre_step()
        return _summed_step(case)


def _per_sample_losses(case: Case, outputs: torch.Tensor) -> torch.Tensor:
    """Each sample's loss (the loss of a batch of one), shape ``(B,)``; for an empty batch, an empty
    tensor on the outputs' graph (what a criterion with ``reduction="none"`` gives)."""
    if case.batch_size == 0:
        return outputs.flatten(1).sum(dim=1)
    return torch.stack([case.loss_fn(outputs[i : i + 1], case.targets[i : i + 1]) for i in range(case.batch_size)])


def _opacus_ghost(case: Case, max_grad_norm: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Opacus' ghost clipping, as ``make_private(..., grad_sample_mode="ghost")`` trains: two
    backward passes (norms, then the clipped loss), then the optimizer's ``pre_step``."""
    GHOST_CLIPPING.require()
    GHOST_CLIPPING_TENSOR.require()
    from opacus.grad_sample import GradSampleModuleFastGradientClipping
    from opacus.optimizers import DPOptimizerFastGradientClipping
    from opacus.utils.fast_gradient_clipping_utils import DPTensorFastGradientClipping

    wrapper = GradSampleModuleFastGradientClipping
    with _opacus_wrapped(case, wrapper, max_grad_norm=max_grad_norm, use_ghost_clipping=True) as gsm:
        optimizer = _dp_optimizer(case, DPOptimizerFastGradientClipping, max_grad_norm)
        losses = _per_sample_losses(case, gsm(case.inputs))
        DPTensorFastGradientClipping(gsm, optimizer, losses, case.loss_reduction).backward()
        norms = gsm.per_sample_gradient_norms.detach().clone()
        optimizer.pre_step()
        return norms, _summed_step(case)


#: The bound ghost clipping runs with where only norms are asked for (they do not depend on it).
_NORMS_ONLY_BOUND = 1.0

register_method("opacus-ghost", lambda case: _opacus_ghost(case, _NORMS_ONLY_BOUND)[0], returns="norms")
register_method(
    "opacus-ghost", lambda case: _opacus_ghost(case, case.clipping_bound())[1], returns="clipped", clip_eps=OPACUS_CLIP_EPS
)

