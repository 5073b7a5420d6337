"""Per-sample gradient norms: a tensor ``(B,)``, each sample's gradient norm over all parameters,
from methods that never materialize the gradients (ghost clipping, BackPACK's BatchL2Grad)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from harness.core.case import Case
from harness.core.clipping import per_sample_norms
from harness.core.structure import check_norms_structure
from harness.quantities.base import PerSample, Quantity


class Norms(Quantity):
    """``||g_i||`` over all parameters, per sample."""

    name = "norms"
    label = "per-sample gradient norms"
    call_label = "norms"
    timing_preference = 2

    def id_tag(self, batch_size: int) -> str:
        """``norms``."""
        return "norms"

    def validate(self, result: Any, case: Case, where: str) -> torch.Tensor:
        """A finite, non-negative tensor of shape ``(B,)``."""
        __tracebackhide__ = True
        return check_norms_structure(result, case.batch_size, where, case.precision.compute_dtype).detach()

    def from_grads(self, grads: Mapping[str, torch.Tensor], case: Case) -> torch.Tensor:
        """The norms of a method's per-sample gradients."""
        return per_sample_norms(grads)

    def reference(self, oracle_grads: Mapping[str, torch.Tensor], case: Case, clip_eps: float = 0.0) -> torch.Tensor:
        """The norms of the oracle's per-sample gradients."""
        return per_sample_norms(oracle_grads)

    def per_sample(self, value: torch.Tensor) -> PerSample:
        """One entry, ``||g||``, of shape ``(B, 1)``."""
        return {"||g||": value[:, None]}
