"""Built-in method from PyTorch's ExpandedWeights (``call_for_per_sample_grads``), used directly."""

from __future__ import annotations

import torch

from harness.core.case import Case
from harness.methods._common import clear_grad_samples, collect
from harness.methods.registry import register_method


@register_method("expanded-weights")
def expanded_weights_grads(case: Case) -> dict[str, torch.Tensor]:
    """PyTorch's ``call_for_per_sample_grads`` (ExpandedWeights) used directly."""
    from torch.nn.utils._per_sample_grad import call_for_per_sample_grads

    try:
        wrapped = call_for_per_sample_grads(
            case.model, batch_size=case.batch_size, loss_reduction=case.loss_reduction
        )
        case.loss_fn(wrapped(case.inputs), case.targets).backward()
        return collect(case, "grad_sample")
    finally:
        clear_grad_samples(case.model)
