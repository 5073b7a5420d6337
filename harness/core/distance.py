"""How far a method's result is from a reference: norm-wise per sample and per parameter,
``||g - g*|| <= atol + rtol * ||g*||`` (DESIGN.md); a failure reports the worst (parameter, sample,
abs, rel) against its bound."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from harness.core.errors import ToleranceError
from harness.core.tolerances import Tolerance


@dataclass(frozen=True)
class Worst:
    """The (parameter, sample) farthest from the reference, relative to its bound."""

    param: str
    sample: int
    abs_err: float
    rel_err: float
    ref_norm: float
    bound: float

    @property
    def ratio(self) -> float:
        """Error over bound: above 1 fails."""
        return self.abs_err / self.bound if self.bound > 0 else float("inf") * (self.abs_err > 0)

    def __str__(self) -> str:
        return (
            f"worst at {self.param}, sample {self.sample}: ||g - g*|| = {self.abs_err:.3e} "
            f"(relative {self.rel_err:.3e}, ||g*|| = {self.ref_norm:.3e}) > bound {self.bound:.3e}"
        )


@dataclass(frozen=True)
class Comparison:
    """Result of a norm-wise comparison: the worst entry and the largest relative error seen."""

    worst: Worst
    max_rel_err: float

    @property
    def ok(self) -> bool:
        """Whether every (parameter, sample) is within its bound."""
        return self.worst.ratio <= 1.0


def distance(result: Mapping[str, torch.Tensor], reference: Mapping[str, torch.Tensor], tol: Tolerance) -> Comparison:
    """Norm-wise distance of ``result`` to ``reference`` for each parameter and sample, in float64."""
    worst: Worst | None = None
    max_rel = 0.0
    for name, ref in reference.items():
        ref = ref.detach().to("cpu", torch.float64)
        got = result[name].detach().to("cpu", torch.float64)
        n = ref.shape[0]
        ref_norm = ref.reshape(n, -1).norm(dim=1)
        abs_err = (got - ref).reshape(n, -1).norm(dim=1)
        bound = tol.atol + tol.rtol * ref_norm
        rel = abs_err / ref_norm.clamp_min(torch.finfo(torch.float64).tiny)
        max_rel = max(max_rel, float(rel.max()))
        i = int((abs_err / bound).argmax())
        candidate = Worst(name, i, float(abs_err[i]), float(rel[i]), float(ref_norm[i]), float(bound[i]))
        if worst is None or candidate.ratio > worst.ratio:
            worst = candidate
    if worst is None:
        raise ValueError("reference holds no parameters")
    return Comparison(worst, max_rel)


def assert_close(
    result: Mapping[str, torch.Tensor], reference: Mapping[str, torch.Tensor], tol: Tolerance, where: str
) -> Comparison:
    """Raise :class:`ToleranceError` naming the worst (parameter, sample) if any is out of bounds."""
    __tracebackhide__ = True
    comparison = distance(result, reference, tol)
    if not comparison.ok:
        raise ToleranceError(f"{where} differs from the reference: {comparison.worst} ({tol})")
    return comparison
