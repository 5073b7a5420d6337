"""The tolerance table: how far a method may be from the float64 oracle.

Bounds are norm-wise per sample and parameter, ``||g - g*|| <= atol + rtol * ||g*||``, keyed
by precision mode and by the model's numerics: smooth, with kinks (ReLU, max-pool), or drawn
by the property suite (smooth, but of uncontrolled conditioning: one layer, or a stack). Every
number was measured with ``python -m harness.tools.calibrate --seeds 4`` on torch 2.14.0, CPU,
over every default case of the zoo; the README quotes the table it printed.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tolerance:
    """A norm-wise bound ``atol + rtol * ||g*||`` with the reason for its numbers."""

    rtol: float
    atol: float
    reason: str = ""

    def __str__(self) -> str:
        return f"bound = atol {self.atol:.0e} + rtol {self.rtol:.0e} * ||g*||"


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
        reason="no kinks, so only rounding: measured worst 3.4e-7 (smooth_cnn, B=7), bound at 30x that",
    ),
    ("float32", "kinks"): Tolerance(
        rtol=5e-2,
        atol=1e-5,
        reason=(
            "ReLU and max-pool kinks: float32 takes the other branch at a few elements, so a result exactly "
            "right for float32 differs from float64 there. Measured worst 1.8e-2 (simple_cnn, B=64, seed 1, "
            "every method alike); bound at about 3x that. Algorithmic errors are held by the float64 row"
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
