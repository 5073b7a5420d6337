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
        if self.bound > 0:
            return self.abs_err / self.bound
        return float("inf") if self.abs_err > 0 else 0.0  # a zero bound: only an exact match is within

    def __str__(self) -> str:
        return (
            f"worst at {self.param}, sample {self.sample}: ||g - g*|| = {self.abs_err:.3e} "
            f"(relative {self.rel_err:.3e}, ||g*|| = {self.ref_norm:.3e}) > bound {self.bound:.3e}"
        )


@dataclass(frozen=True)
class Projection:
    """The parameter whose error leans most along its reference, over the whole batch:
    ``c = <g - g*, g*> / <g*, g*>`` (``c = 0.01``: the result is 1% larger along the reference)."""

    param: str
    c: float
    bound: float | None

    @property
    def ok(self) -> bool:
        """Within the bound (always, where the tolerance sets none)."""
        return self.bound is None or abs(self.c) <= self.bound

    def __str__(self) -> str:
        return (
            f"at {self.param}, the error projects onto the reference as <g - g*, g*> / <g*, g*> = {self.c:+.3e} "
            f"over the batch (the result is {self.c:+.2%} along it) > bound {self.bound:.0e}"
        )


@dataclass(frozen=True)
class Comparison:
    """Result of a comparison: the worst entry norm-wise, the largest relative error seen, and the
    parameter whose error leans most along its reference."""

    worst: Worst
    max_rel_err: float
    projection: Projection

    @property
    def ok(self) -> bool:
        """Whether every (parameter, sample) is within its bound, and no error leans along the reference beyond its bound."""
        return self.worst.ratio <= 1.0 and self.projection.ok


def distance(result: Mapping[str, torch.Tensor], reference: Mapping[str, torch.Tensor], tol: Tolerance) -> Comparison:
    """Norm-wise distance of ``result`` to ``reference`` for each parameter and sample, and each
    parameter's projection of the error onto the reference over the batch, in float64.

    Rounding and a kink taking the other branch move elements this way and that: their error has
    no direction, and its projection stays near zero however large single elements are. An
    algorithmic error (a scale, a wrong factor on one layer) leans along the reference.
    """
    worst: Worst | None = None
    leaning: Projection | None = None
    max_rel = 0.0
    for name, ref in reference.items():
        ref = ref.detach().to("cpu", torch.float64)
        n = ref.shape[0]
        # one pass makes the difference, in float64 (subtraction promotes; no float64 copy of the
        # result first), and three read it: these tensors are (B, *param.shape), 600 MB for
        # simple_cnn at B=64, so every pass counts
        diff = (result[name].detach().to("cpu") - ref).reshape(n, -1)
        flat = ref.reshape(n, -1)
        ref_norm = torch.linalg.vector_norm(flat, dim=1)
        abs_err = torch.linalg.vector_norm(diff, dim=1)
        bound = tol.atol + tol.rtol * ref_norm
        rel = abs_err / ref_norm.clamp_min(torch.finfo(torch.float64).tiny)
        max_rel = max(max_rel, float(rel.max()))
        ratio = torch.where(bound > 0, abs_err / bound, torch.where(abs_err > 0, torch.inf, 0.0))
        i = int(ratio.argmax())
        candidate = Worst(name, i, float(abs_err[i]), float(rel[i]), float(ref_norm[i]), float(bound[i]))
        if worst is None or candidate.ratio > worst.ratio:
            worst = candidate
        square = float(ref_norm.square().sum())
        c = float(torch.dot(diff.flatten(), flat.flatten())) / square if square > 0 else 0.0
        if leaning is None or abs(c) > abs(leaning.c):
            leaning = Projection(name, c, tol.direction)
    if worst is None or leaning is None:
        raise ValueError("reference holds no parameters")
    return Comparison(worst, max_rel, leaning)


def assert_close(
    result: Mapping[str, torch.Tensor], reference: Mapping[str, torch.Tensor], tol: Tolerance, where: str
) -> Comparison:
    """Raise :class:`ToleranceError` naming the worst (parameter, sample) if any is out of bounds."""
    __tracebackhide__ = True
    comparison = distance(result, reference, tol)
    if comparison.worst.ratio > 1.0:
        raise ToleranceError(f"{where} differs from the reference: {comparison.worst} ({tol})")
    if not comparison.projection.ok:
        raise ToleranceError(f"{where} differs from the reference along it: {comparison.projection} ({tol})")
    return comparison
