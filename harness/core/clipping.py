"""What DP-SGD consumes, computed from per-sample gradients: their norms and the clipped step.

For a norm bound C, DP-SGD (without its noise) steps along ``sum_i g_i * min(1, C / ||g_i||)``,
where ``||g_i||`` is the norm of sample i's gradient over all parameters. Opacus divides by
``||g_i|| + 1e-6`` instead (a stabilizer it documents in ``DPOptimizer.clip_and_accumulate``):
a method declares its stabilizer as ``clip_eps`` and the reference uses the same, so the strict
float64 check holds everything else to rounding.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch


def per_sample_norms(grads: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """``||g_i||`` over all parameters, shape ``(B,)``, computed in float64."""
    squares = [g.detach().to(torch.float64).flatten(1).pow(2).sum(dim=1) for g in grads.values()]
    return torch.stack(squares).sum(dim=0).sqrt()


def clip_factors(norms: torch.Tensor, max_grad_norm: float, clip_eps: float = 0.0) -> torch.Tensor:
    """``min(1, C / (||g_i|| + eps))`` per sample."""
    return (max_grad_norm / (norms + clip_eps)).clamp(max=1.0)


def clipped_sum(grads: Mapping[str, torch.Tensor], max_grad_norm: float, clip_eps: float = 0.0) -> dict[str, torch.Tensor]:
    """``sum_i g_i * min(1, C / (||g_i|| + eps))``, each parameter's shape, in float64."""
    factors = clip_factors(per_sample_norms(grads), max_grad_norm, clip_eps)
    return {name: torch.einsum("i,i...->...", factors, g.detach().to(torch.float64)) for name, g in grads.items()}


def clipped_count(batch_size: int) -> int:
    """How many samples :func:`mid_bound` clips: those above the middle (``B - B // 2``)."""
    return batch_size - batch_size // 2


def mid_bound(norms: torch.Tensor) -> float:
    """A bound C halfway between the two middle norms: the larger half is clipped, the rest is not.

    Raises ValueError where that split does not exist (one sample, or equal middle norms).
    """
    ordered = norms.detach().to(torch.float64).sort().values
    k = len(ordered) // 2
    if k == 0 or not ordered[k - 1] < ordered[k]:
        raise ValueError(f"no bound splits the per-sample norms {ordered.tolist()} into clipped and unclipped samples")
    return float((ordered[k - 1] + ordered[k]) / 2)


def clipping_bound(norms: torch.Tensor) -> float:
    """:func:`mid_bound` where it exists; else (one sample, equal middle norms, as a drawn batch may
    have) half the smallest non-zero norm, which clips every sample with a gradient, or 1.0 where
    no sample has one."""
    try:
        return mid_bound(norms)
    except ValueError:
        positive = norms.detach().to(torch.float64)
        positive = positive[positive > 0]
        return float(positive.min() / 2) if len(positive) else 1.0
