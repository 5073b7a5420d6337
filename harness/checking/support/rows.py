"""The two kinds of support-matrix row: one about zoo models, one about drawn layers.

Every field of a row is honoured: a row names the methods, models (or layer kinds), precisions and
devices it covers (fnmatch patterns), a torch version range, the error the failure must match and
the reason; a zoo row also the checks it covers, a drawn row the layer configurations (``when``).
A field a kind of row has no use for is refused (a ``TypeError`` at construction).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from harness.problems.drawn import LAYER_KINDS, Layer
from harness.quantities import QUANTITIES

#: What a zoo row can cover: a quantity compared with the oracle's, or vmap's batching rules (the
#: slow-fallback warning turned into an error). A row covers every quantity by default: a method
#: that fails to compute per-sample gradients fails their norms and clipped step too. No row may
#: rest on float32 rounding (which branch a kink takes depends on the CPU's kernels).
CHECKS = (*QUANTITIES, "batching-rule")


def _hit(value: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(value, p) for p in patterns)


@dataclass(frozen=True, kw_only=True)
class ExpectedFailure:
    """What every row says: which methods fail where, with which error, and why."""

    methods: tuple[str, ...]
    error: str
    reason: str
    link: str = ""
    precisions: tuple[str, ...] = ("*",)
    devices: tuple[str, ...] = ("*",)
    torch: str = ""

    def _covers(self, method: str, precision: str, device: str, torch_version: str) -> bool:
        return (
            _hit(method, self.methods)
            and _hit(precision, self.precisions)
            and _hit(device, self.devices)
            and Version(Version(torch_version).base_version) in SpecifierSet(self.torch)
        )

    def describe(self) -> str:
        """Reason and link, as shown in the xfail."""
        return f"{self.reason} ({self.link})" if self.link else self.reason


@dataclass(frozen=True, kw_only=True)
class ZooFailure(ExpectedFailure):
    """A row about zoo models (``models``: names of registered models), for the ``checks`` it names."""

    models: tuple[str, ...]
    checks: tuple[str, ...] = tuple(QUANTITIES)

    def __post_init__(self) -> None:
        unknown = [c for c in self.checks if c not in CHECKS]
        if unknown:
            raise ValueError(f"support-matrix row for {self.models}: unknown checks {unknown}; known: {', '.join(CHECKS)}")

    def applies(self, method: str, model: str, precision: str, device: str, check: str, torch_version: str) -> bool:
        """Whether this row covers the trial."""
        return check in self.checks and _hit(model, self.models) and self._covers(method, precision, device, torch_version)


@dataclass(frozen=True, kw_only=True)
class DrawnFailure(ExpectedFailure):
    """A row about drawn layers (``layers``: layer kinds the property suite draws), narrowed to the
    configurations ``when`` accepts. Drawn problems are checked on their per-sample gradients."""

    layers: tuple[str, ...]
    when: Callable[[Layer], bool] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        unknown = [p for p in self.layers if not any(fnmatch.fnmatchcase(kind, p) for kind in LAYER_KINDS)]
        if unknown:
            raise ValueError(f"support-matrix row: {unknown} name no drawn layer kind; known: {', '.join(LAYER_KINDS)}")

    def applies(self, method: str, layer: Layer, precision: str, device: str, torch_version: str) -> bool:
        """Whether this row covers a drawn layer."""
        return (
            _hit(layer.kind, self.layers)
            and self._covers(method, precision, device, torch_version)
            and (self.when is None or self.when(layer))
        )
