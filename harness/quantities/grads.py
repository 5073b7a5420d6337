"""Per-sample gradients: ``{name: tensor (B, *param.shape)}`` for every parameter (DESIGN.md's contract)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from harness.core.case import Case
from harness.core.structure import check_structure
from harness.quantities.base import PerSample, Quantity


class Grads(Quantity):
    """The per-sample gradients themselves."""

    name = "grads"

    def validate(self, result: Any, case: Case, where: str) -> PerSample:
        """Names, shapes ``(B, *param.shape)``, finite values, no less precise than the case computes in."""
        __tracebackhide__ = True
        checked = check_structure(result, case.model, case.batch_size, where, case.precision.compute_dtype)
        return {name: g.detach() for name, g in checked.items()}

    def from_grads(self, grads: Mapping[str, torch.Tensor], case: Case) -> PerSample:
        """The gradients as they are."""
        return dict(grads)

    def reference(self, oracle_grads: Mapping[str, torch.Tensor], case: Case, clip_eps: float = 0.0) -> PerSample:
        """The oracle's per-sample gradients."""
        return dict(oracle_grads)

    def per_sample(self, value: PerSample) -> PerSample:
        """Already per sample."""
        return value
