"""The clipped step: ``{name: tensor (*param.shape)}``, the noiseless DP-SGD step in summed form,
``sum_i g_i * min(1, C / (||g_i|| + clip_eps))`` for ``C = case.max_grad_norm``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from harness.core.case import Case
from harness.core.clipping import clipped_count, clipped_sum, clipping_bound, per_sample_norms
from harness.core.structure import check_structure
from harness.quantities.base import PerSample, Quantity


class Clipped(Quantity):
    """The summed clipped step for a bound C that clips the larger half of the samples."""

    name = "clipped"
    call_label = "clipped step"
    timing_preference = 1

    def id_tag(self, batch_size: int) -> str:
        """``clip4of7``: C clips 4 of the 7 samples."""
        return f"clip{clipped_count(batch_size)}of{batch_size}"

    def prepare(self, case: Case, oracle_grads: Mapping[str, torch.Tensor]) -> None:
        """C halfway between the oracle's two middle per-sample norms (where a drawn batch has no
        such split, a bound that clips every sample: :func:`clipping_bound`)."""
        case.max_grad_norm = clipping_bound(per_sample_norms(oracle_grads))

    def validate(self, result: Any, case: Case, where: str) -> PerSample:
        """Names, shapes ``param.shape``, finite values, no less precise than the case computes in."""
        __tracebackhide__ = True
        checked = check_structure(result, case.model, None, where, case.precision.compute_dtype)
        return {name: g.detach() for name, g in checked.items()}

    def from_grads(self, grads: Mapping[str, torch.Tensor], case: Case) -> PerSample:
        """The harness's clipping of a method's per-sample gradients (no stabilizer)."""
        return clipped_sum(grads, case.clipping_bound())

    def reference(self, oracle_grads: Mapping[str, torch.Tensor], case: Case, clip_eps: float = 0.0) -> PerSample:
        """The oracle's clipped step, with the stabilizer the method declares."""
        return clipped_sum(oracle_grads, case.clipping_bound(), clip_eps)

    def per_sample(self, value: PerSample) -> PerSample:
        """The step as a batch of one."""
        return {name: g.unsqueeze(0) for name, g in value.items()}

    def describe(self, case: Case) -> str:
        """``, clipped step with C = 0.5 (4 of 7 samples clipped),``."""
        return (
            f", clipped step with C = {case.clipping_bound():.4g} "
            f"({clipped_count(case.batch_size)} of {case.batch_size} samples clipped),"
        )
