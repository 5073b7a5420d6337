"""Built-in methods from Opacus: grad samples by hooks, by functorch and by ExpandedWeights; the
DPOptimizer's clipped step; ghost clipping's norms and clipped step. Also the entry points users
call (``PrivacyEngine.make_private``, ``BatchMemoryManager``, ``to_standard_module``) and the layer
conversions (``ModuleValidator.fix``, the ``opacus.layers`` DP layers), for the checks of both."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from harness.core.case import Case
from harness.core.errors import MethodUnavailable
from harness.core.releases import (
    DP_MHA_BATCH_FIRST,
    FORCE_FUNCTORCH,
    GHOST_CLIPPING,
    GHOST_CLIPPING_TENSOR,
    MAKE_PRIVATE_MODES,
    MAKE_PRIVATE_UNWRAPPED,
    OPACUS_EXPANDED_WEIGHTS,
    OPACUS_LAYERS,
    Feature,
    library,
)
from harness.methods._common import clear_grad_samples, collect
from harness.methods.registry import register_method


@contextlib.contextmanager
def _opacus_wrapped(
    case: Case, wrapper: Callable[..., torch.nn.Module], batch_first: bool = True, **kwargs
) -> Iterator[torch.nn.Module]:
    """The model wrapped by an Opacus grad-sample module for one batch; unwrapped and cleaned after."""
    gsm = wrapper(case.model, batch_first=batch_first, loss_reduction=case.loss_reduction, **kwargs)
    try:
        yield gsm
    finally:
        if hasattr(gsm, "_close"):
            gsm._close()
        clear_grad_samples(case.model)


def _opacus_grads(case: Case, wrapper: Callable[..., torch.nn.Module], **kwargs) -> dict[str, torch.Tensor]:
    """Wrap the model with an Opacus grad-sample module, run one batch, read ``grad_sample``
    (``batch_first=False``: the model's layers see the batch in dimension 1)."""
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



def grad_samples(case: Case, batch_first: bool = True) -> dict[str, torch.Tensor]:
    """``opacus-hooks``, with the batch where the model's layers see it (``batch_first=False``: in
    dimension 1, as a sequence-first layer takes it)."""
    return _opacus_grads(case, library("opacus").GradSampleModule, batch_first=batch_first)


#: ``make_private``'s ``grad_sample_mode`` values the harness drives, each with the method that runs
#: the same Opacus path on its modules (its support-matrix rows hold for the mode too).
GRAD_SAMPLE_MODES: dict[str, str] = {
    "hooks": "opacus-hooks",
    "functorch": "opacus-functorch",
    "ew": "opacus-ew",
    "ghost": "opacus-ghost",
}
_MODE_NEEDS: dict[str, tuple[Feature, ...]] = {
    "hooks": (),
    "functorch": (MAKE_PRIVATE_MODES, FORCE_FUNCTORCH),
    "ew": (MAKE_PRIVATE_MODES, OPACUS_EXPANDED_WEIGHTS),
    "ghost": (MAKE_PRIVATE_MODES, GHOST_CLIPPING, GHOST_CLIPPING_TENSOR),
}


class LossWithReduction:
    """A model's loss with a ``reduction`` attribute, which ghost clipping's loss wrapper sets to
    ``"none"`` to get each sample's loss."""

    def __init__(self, loss: Callable[..., torch.Tensor], reduction: str) -> None:
        self.loss = loss
        self.reduction = reduction

    def __call__(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.loss(outputs, targets, reduction=self.reduction)


@dataclass
class PrivateTraining:
    """What ``make_private`` returned: the wrapped model (or, with ``wrap_model=False``, the hooks
    object), the DP optimizer, the loss to call (ghost clipping's wrapper in that mode) and the data
    loader; and the model it was given."""

    module: Any
    optimizer: Any
    loss: Callable[[torch.Tensor, torch.Tensor], Any]
    data_loader: torch.utils.data.DataLoader
    model: nn.Module
    wrapped: bool = True

    def backward(self, inputs: torch.Tensor, targets: torch.Tensor) -> None:
        """One forward and backward, as a training loop runs them (through the wrapper, or the model itself)."""
        forward = self.module if self.wrapped else self.model
        self.loss(forward(inputs), targets).backward()

    def step(self) -> bool:
        """``optimizer.step()`` then ``optimizer.zero_grad()``; whether the optimizer stepped (under
        ``BatchMemoryManager`` it only accumulates until a logical batch ends)."""
        self.optimizer.step()
        self.optimizer.zero_grad()
        return not self.optimizer._is_last_step_skipped

    @contextlib.contextmanager
    def physical_batches(self, max_physical_batch_size: int) -> Iterator[torch.utils.data.DataLoader]:
        """The data loader split by Opacus' ``BatchMemoryManager``: one step per logical batch."""
        from opacus.utils.batch_memory_manager import BatchMemoryManager

        with BatchMemoryManager(
            data_loader=self.data_loader, max_physical_batch_size=max_physical_batch_size, optimizer=self.optimizer
        ) as loader:
            yield loader

    def to_standard_module(self) -> nn.Module:
        """The end of training: the plain model back (``to_standard_module()``; unwrapped, the hooks'
        ``cleanup()`` and the model given)."""
        if self.wrapped:
            return self.module.to_standard_module()
        self.module.cleanup()
        return self.model


def _require_unwrapped(mode: str) -> None:
    """Raise :class:`MethodUnavailable` where the installed Opacus has no non-wrapping form of ``mode``
    (1.6.0 has none for ``ew``: ExpandedWeights uses no hooks), with Opacus' own reason."""
    from opacus.grad_sample.utils import get_hooks_class

    try:
        get_hooks_class(mode)
    except ValueError as exc:
        raise MethodUnavailable(f"Opacus {library('opacus').__version__} has no wrap_model=False for {mode!r}: {exc}") from None


def make_private(
    case: Case,
    loss: Callable[..., torch.Tensor],
    mode: str,
    max_grad_norm: float,
    batch_size: int,
    lr: float,
    wrap: bool = True,
    poisson: bool = False,
) -> PrivateTraining:
    """``PrivacyEngine().make_private`` over ``case.model`` as a user calls it: plain SGD at ``lr``,
    no noise, the case's batch in loader batches of ``batch_size`` (in order; with ``poisson``,
    Poisson sampling at the rate ``1 / len(loader)`` instead), in ``grad_sample_mode=mode`` with
    flat clipping at ``max_grad_norm``; ``wrap=False`` passes ``wrap_model=False``. Raises
    :class:`MethodUnavailable` where the installed Opacus lacks the mode or the argument."""
    opacus = library("opacus")
    for feature in (*_MODE_NEEDS[mode], *(() if wrap else (MAKE_PRIVATE_UNWRAPPED,))):
        feature.require()
    if not wrap:
        _require_unwrapped(mode)
    criterion = LossWithReduction(loss, case.loss_reduction)
    # only what differs from the defaults: a release before 1.5 takes no criterion, before 1.2 no mode
    optional = (
        ({} if mode == "hooks" else {"grad_sample_mode": mode})
        | ({"criterion": criterion} if mode == "ghost" else {})
        | ({} if wrap else {"wrap_model": False})
    )
    returned = opacus.PrivacyEngine().make_private(
        module=case.model,
        optimizer=torch.optim.SGD(case.model.parameters(), lr=lr),
        data_loader=torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(case.inputs, case.targets), batch_size=batch_size
        ),
        noise_multiplier=0.0,
        max_grad_norm=max_grad_norm,
        poisson_sampling=poisson,
        loss_reduction=case.loss_reduction,
        **optional,
    )
    if mode == "ghost":
        module, optimizer, ghost_loss, data_loader = returned
        return PrivateTraining(module, optimizer, ghost_loss, data_loader, case.model, wrap)
    module, optimizer, data_loader = returned
    return PrivateTraining(module, optimizer, criterion, data_loader, case.model, wrap)


def fix(module: nn.Module) -> nn.Module:
    """``ModuleValidator.fix`` of one layer: what Opacus replaces it with (the layer itself where
    it needs no replacement). A batch-first attention needs ``DPMultiheadAttention(batch_first=...)``."""
    library("opacus")
    if getattr(module, "batch_first", False) and isinstance(module, nn.MultiheadAttention):
        DP_MHA_BATCH_FIRST.require()
    from opacus.validators import ModuleValidator

    return ModuleValidator.fix(nn.Sequential(module))[0]


def dp_rnn(module: nn.RNN) -> nn.Module:
    """Opacus' ``DPRNN`` with ``module``'s arguments and weights (``ModuleValidator.fix`` leaves
    ``nn.RNN`` alone: its users convert it by hand)."""
    OPACUS_LAYERS.require()
    layer = library("opacus").layers.DPRNN(
        input_size=module.input_size,
        hidden_size=module.hidden_size,
        num_layers=module.num_layers,
        nonlinearity=module.nonlinearity,
        bias=module.bias,
        batch_first=module.batch_first,
        dropout=module.dropout,
        bidirectional=module.bidirectional,
    )
    layer.load_state_dict(module.state_dict())
    return layer
