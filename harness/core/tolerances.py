"""The tolerance table: how far a method may be from the float64 oracle.

Bounds are norm-wise per sample and parameter, ``||g - g*|| <= atol + rtol * ||g*||``, keyed
by precision mode and by the model's numerics: smooth, with kinks (ReLU, max-pool), or drawn
by the property suite (smooth, but of uncontrolled conditioning: one layer, or a stack). Rows
for the zoo in float32 also bound each parameter's error along its reference over the batch,
``|<g - g*, g*> / <g*, g*>| <= direction``: kink flips move single elements by a lot but in no
direction, an algorithmic error (a scale, a wrong factor on one layer) leans along the reference.
The numbers were measured with ``python -m harness measure-tolerances`` (docs/calibration.md).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tolerance:
    """A norm-wise bound ``atol + rtol * ||g*||`` with the reason for its numbers."""

    rtol: float
    atol: float
    reason: str = ""
    #: The bound on ``|<g - g*, g*> / <g*, g*>|`` per parameter over the batch (None: not checked).
    direction: float | None = None

    def __str__(self) -> str:
        along = f"; along the reference at most {self.direction:.0e}" if self.direction is not None else ""
        return f"bound = atol {self.atol:.0e} + rtol {self.rtol:.0e} * ||g*||{along}"


#: Keyed by (precision, model numerics); "any" serves every kind of model alike.
TOLERANCES: dict[tuple[str, str], Tolerance] = {
    ("float64", "any"): Tolerance(
        rtol=1e-10,
        atol=1e-12,
        reason=(
            "strict check: measured worst 5.7e-15 (resnet18_gn, B=3); a wrong scale, swapped samples "
            "or a missing term of any size above rounding fails it"
        ),
    ),
    ("float32", "smooth"): Tolerance(
        rtol=1e-5,
        atol=1e-7,
        direction=2e-3,
        reason=(
            "no kinks, so only rounding: measured worst 3.5e-7 (smooth_cnn, B=7), bound at 30x that. Along the "
            "reference: measured worst 1.1e-7; the kink row's bound serves (a 1% scale is 5x beyond it)"
        ),
    ),
    ("float32", "kinks"): Tolerance(
        rtol=5e-2,
        atol=1e-5,
        direction=2e-3,
        reason=(
            "ReLU and max-pool kinks: float32 takes the other branch at a few elements, so a result exactly "
            "right for float32 differs from float64 there. Measured worst 1.8e-2 on an Intel machine and on an "
            "AMD EPYC at one thread, 5.0e-3 on the AMD EPYC at two (simple_cnn, B=64, every method alike); bound at "
            "about 3x the larger. Kink flips have no direction: along the reference the worst "
            "measured is 4.3e-5 (simple_cnn, B=64, seed 1, conv1.bias, every method alike; 5.7e-6 for a clipped "
            "step), so 2e-3 leaves a margin of 47 here and catches a scale error of 0.2% or more"
        ),
    ),
    ("float32", "drawn"): Tolerance(
        rtol=1e-4,
        atol=1e-6,
        reason=(
            "one drawn layer (property suite): measured worst needs rtol 5.2e-6 at this atol (rms_norm; "
            "200 draws per layer kind, loop and vmap alike); bound at about 20x that. Tiny gradients "
            "(1e-9 and below: attention with few keys, a padded embedding) are held by atol"
        ),
    ),
    ("float32", "drawn-stack"): Tolerance(
        rtol=5e-2,
        atol=1e-3,
        reason=(
            "two or three drawn layers, with normalizations: a normalization undoes the scale and shift "
            "a narrow layer before it applies (a depthwise 1x1 conv before an instance norm), so float32 "
            "keeps little more than rounding noise of that layer's gradient: measured worst rtol 7.9e-3 "
            "over 1000 draws (loop and vmap alike). Where the invariance is exact (a group of three values "
            "of which two are equal normalizes to a fixed pattern) the float64 gradient is 1e-13 and float32 "
            "returns noise up to 8.5e-5 (nightly, 300 draws per method), hence atol. Only gross float32 "
            "errors show here; the float64 row holds every draw to 1e-10"
        ),
    ),
    ("bf16", "kinks"): Tolerance(
        rtol=1.0,
        atol=1e-3,
        direction=0.3,
        reason=(
            "autocast to bfloat16 (8 mantissa bits) on models with kinks: measured worst 0.42 norm-wise (resnet18_gn, "
            "B=3, four seeds, one or two threads) and 0.12 along the reference (resnet18_gn, B=1, a GroupNorm bias), "
            "every method alike; bounds at about 2.4x that. Catches gross errors only: a forgotten 1/B, a result of "
            "zeros, a scale of 32% (20% passes)"
        ),
    ),
    ("bf16", "smooth"): Tolerance(
        rtol=0.5,
        atol=1e-3,
        direction=0.02,
        reason=(
            "autocast to bfloat16 on smooth models: measured worst 0.18 norm-wise (transformer, B=7, four seeds) and "
            "5.2e-3 along the reference; bounds at about 2.8x and 3.9x that. Catches a scale of 2.5% (1% passes)"
        ),
    ),
    ("bf16", "any"): Tolerance(
        rtol=1.0,
        atol=1e-3,
        direction=0.3,
        reason="autocast to bfloat16, anything else (drawn layers are not checked in bfloat16): the kink row's bounds",
    ),
    ("tf32", "any"): Tolerance(
        rtol=5e-2,
        atol=1e-5,
        reason=(
            "not yet measured (no GPU run so far): TF32 keeps 10 mantissa bits (unit roundoff 4.9e-4); "
            "set to the float32 kink allowance until a GPU run calibrates it"
        ),
    ),
}


NUMERICS = ("smooth", "kinks", "drawn", "drawn-stack")


def tolerance_for(precision: str, kind: str) -> Tolerance:
    """The bound for a precision mode and a model's numerics, or a clear error if the table has no row."""
    if kind not in NUMERICS:
        raise ValueError(f"unknown model numerics {kind!r}; known: {', '.join(NUMERICS)}")
    for key in ((precision, kind), (precision, "any")):
        if key in TOLERANCES:
            return TOLERANCES[key]
    rows = ", ".join(f"{p}/{k}" for p, k in TOLERANCES)
    raise KeyError(f"the tolerance table has no row for precision {precision!r} ({kind}); rows: {rows}")
