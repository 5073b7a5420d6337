"""Helpers the built-in methods share: reading results left on parameters, and cleaning up after."""

from __future__ import annotations

import torch

from harness.core.case import Case

#: Attributes Opacus and ExpandedWeights set on parameters (BackPACK works on a copy of the model).
_LEFTOVER_ATTRIBUTES = ("grad_sample", "_forward_counter", "_current_grad_sample", "summed_grad", "_norm_sample")


def clear_grad_samples(model: torch.nn.Module) -> None:
    """Remove ``.grad`` and the per-sample attributes that Opacus and ExpandedWeights set on parameters."""
    for p in model.parameters():
        p.grad = None
        for attr in _LEFTOVER_ATTRIBUTES:
            if hasattr(p, attr):
                delattr(p, attr)


def collect(case: Case, attribute: str, scale: float = 1.0) -> dict[str, torch.Tensor]:
    """Read ``p.<attribute>`` (times ``scale``) after a backward; a parameter without it is left out
    (reported as missing), and a frozen one that has it is returned (reported as frozen). No copy
    where none is needed: the caller clears the attribute, and at simple_cnn B=64 a second copy of the per-sample gradients cost 20-40% (the benchmark guard saw it)."""
    found = {name: getattr(p, attribute, None) for name, p in case.model.named_parameters()}
    return {name: t.detach() * scale if scale != 1 else t.detach() for name, t in found.items() if t is not None}


def batch_scale(case: Case) -> int:
    """What a mean-reduced batch quantity is multiplied by to give the summed (per-sample) form."""
    return case.batch_size if case.loss_reduction == "mean" else 1
