"""The kinds of support-matrix row: about zoo models, drawn layers, the entry points users call
(`make_private`) and the layer conversions.

Every field of a row is honoured: a row names the methods, models (or layer kinds), precisions and
devices it covers (fnmatch patterns), the release ranges of torch, Opacus and BackPACK it holds in
(``SpecifierSet`` strings, empty for any; a row naming a range of a library that is not installed
does not apply), a CPU flag the failure needs where it was seen on some CPUs only, the error the failure must match and the reason; a zoo row also the checks it covers, a drawn row the layer configurations (``when``).
A field a kind of row has no use for is refused (a ``TypeError`` at construction).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

from harness.core.hardware import cpu_flags
from harness.core.releases import Versions
from harness.problems.drawn import LAYER_KINDS, Layer
from harness.quantities import QUANTITIES

#: The checks of a quantity on an empty batch (B=0, the ``empty-batch`` grid): ``empty-grads``,
#: ``empty-norms``, ``empty-clipped``. Only rows that name them cover an empty batch, whose
#: failures are its own (a method may fail there and nowhere else, or pass there where it fails
#: on every sample).
EMPTY_BATCH = tuple(f"empty-{quantity}" for quantity in QUANTITIES)
#: What a zoo row can cover: a quantity compared with the oracle's, vmap's batching rules (the
#: slow-fallback warning turned into an error), or a quantity on an empty batch. A row covers
#: every quantity by default: a method that fails to compute per-sample gradients fails their norms
#: and clipped step too. No row may rest on float32 rounding (which branch a kink takes depends
#: on the CPU's kernels).
CHECKS = (*QUANTITIES, "batching-rule", *EMPTY_BATCH)


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
    opacus: str = ""
    backpack: str = ""
    #: A CPU flag the failure needs (``amx_bf16``), where it was seen on some CPUs only: the row
    #: holds on machines whose CPU lists it (/proc/cpuinfo), and its reason says which CPUs.
    cpu: str = ""
    #: The signal the failure kills the process with (``SIGFPE``), where it does: the cell is then
    #: skipped with the reason, since no test can outlive its process (under -n a crash is reported).
    crash: str = ""

    def __post_init__(self) -> None:
        for name, range_ in self.ranges().items():
            try:
                SpecifierSet(range_)
            except InvalidSpecifier:
                raise ValueError(f"support-matrix row for {self.methods}: {name}={range_!r} is not a version range") from None

    def ranges(self) -> dict[str, str]:
        """The release range per library (``torch``, ``opacus``, ``backpack``), empty for any."""
        return {"torch": self.torch, "opacus": self.opacus, "backpack": self.backpack}

    def scope(self) -> str:
        """Where the row holds, in words: its release ranges and the CPU flag it needs."""
        where = [f"{name}{range_}" for name, range_ in self.ranges().items() if range_]
        return ", ".join(where + ([f"on CPUs with {self.cpu}"] if self.cpu else [])) or "everywhere"

    def holds_for(self, versions: Versions | str) -> bool:
        """Whether the installed releases (or those given; a string is torch's) are inside the row's
        ranges, on a CPU with the flag it needs (this machine's, or the one ``versions`` names)."""
        versions = Versions.of(versions)
        if self.cpu and self.cpu not in (cpu_flags() if versions.cpu_flags is None else versions.cpu_flags):
            return False
        for name, range_ in self.ranges().items():
            if not range_:
                continue
            version = getattr(versions, name)
            if version is None or Version(Version(version).base_version) not in SpecifierSet(range_):
                return False
        return True

    def _covers(self, method: str, precision: str, device: str, versions: Versions | str) -> bool:
        return (
            _hit(method, self.methods)
            and _hit(precision, self.precisions)
            and _hit(device, self.devices)
            and self.holds_for(versions)
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
        super().__post_init__()
        unknown = [c for c in self.checks if c not in CHECKS]
        if unknown:
            raise ValueError(f"support-matrix row for {self.models}: unknown checks {unknown}; known: {', '.join(CHECKS)}")

    def applies(self, method: str, model: str, precision: str, device: str, check: str, versions: Versions | str) -> bool:
        """Whether this row covers the trial (``versions``: the releases, or torch's version alone)."""
        return check in self.checks and _hit(model, self.models) and self._covers(method, precision, device, versions)


@dataclass(frozen=True, kw_only=True)
class DrawnFailure(ExpectedFailure):
    """A row about drawn layers (``layers``: layer kinds the property suite draws), narrowed to the
    configurations ``when`` accepts (and, where the failure depends on it, to the batch sizes
    ``when_batch`` accepts for the layer), for the quantities ``checks`` names (every one by
    default: a method that fails to compute per-sample gradients fails their norms and clipped step too)."""

    layers: tuple[str, ...]
    when: Callable[[Layer], bool] | None = field(default=None, compare=False)
    when_batch: Callable[[Layer, int], bool] | None = field(default=None, compare=False)
    checks: tuple[str, ...] = tuple(QUANTITIES)

    def __post_init__(self) -> None:
        super().__post_init__()
        unknown = [p for p in self.layers if not any(fnmatch.fnmatchcase(kind, p) for kind in LAYER_KINDS)]
        if unknown:
            raise ValueError(f"support-matrix row: {unknown} name no drawn layer kind; known: {', '.join(LAYER_KINDS)}")
        unknown_checks = [c for c in self.checks if c not in QUANTITIES]
        if unknown_checks:
            raise ValueError(f"drawn-layer row for {self.layers}: unknown checks {unknown_checks}; known: {', '.join(QUANTITIES)}")

    def applies(
        self,
        method: str,
        layer: Layer,
        precision: str,
        device: str,
        versions: Versions | str,
        check: str = "grads",
        batch_size: int | None = None,
    ) -> bool:
        """Whether this row covers a drawn layer checked for ``check`` (a quantity; ``versions``: the
        releases, or torch's version alone) at ``batch_size`` (None: at some batch size)."""
        return (
            check in self.checks
            and _hit(layer.kind, self.layers)
            and self._covers(method, precision, device, versions)
            and (self.when is None or self.when(layer))
            and (self.when_batch is None or batch_size is None or self.when_batch(layer, batch_size))
        )


#: What an entry-point row covers: the step ``make_private`` takes, or what it leaves on the model.
ENTRY_POINT_CHECKS = ("step", "leftovers")
#: How an entry-point trial trains: one batch and one step, Opacus' ``BatchMemoryManager`` over
#: physical batches, several backward passes before one step, or one batch and one step with the
#: model left unwrapped (``wrap_model=False``, cleaned with the hooks' ``cleanup()``), or a batch
#: drawn by Poisson sampling through ``BatchMemoryManager``.
ENTRY_POINT_PATHS = ("one-batch", "memory-manager", "accumulate", "unwrapped", "poisson")


@dataclass(frozen=True, kw_only=True)
class EntryPointFailure(ExpectedFailure):
    """A row about ``make_private`` (:mod:`harness.checking.entry_points`): ``methods`` name the
    grad-sample mode by its method (``opacus-ghost`` for ``grad_sample_mode="ghost"``), ``paths``
    how the trial trains, ``checks`` the step or the leftovers."""

    models: tuple[str, ...] = ("*",)
    paths: tuple[str, ...] = ENTRY_POINT_PATHS
    checks: tuple[str, ...] = ENTRY_POINT_CHECKS

    def __post_init__(self) -> None:
        super().__post_init__()
        for name, values, known in (("paths", self.paths, ENTRY_POINT_PATHS), ("checks", self.checks, ENTRY_POINT_CHECKS)):
            unknown = [v for v in values if not any(fnmatch.fnmatchcase(k, v) for k in known)]
            if unknown:
                raise ValueError(f"entry-point row for {self.methods}: unknown {name} {unknown}; known: {', '.join(known)}")

    def applies(self, method: str, model: str, path: str, check: str, versions: Versions | str) -> bool:
        """Whether this row covers the trial (float64 on the CPU, as every entry-point trial runs)."""
        return (
            check in self.checks
            and _hit(path, self.paths)
            and _hit(model, self.models)
            and self._covers(method, "float64", "cpu", versions)
        )


#: What a conversion row covers: the converted layer's outputs, or its per-sample gradients.
CONVERSION_CHECKS = ("forward", "grads")


@dataclass(frozen=True, kw_only=True)
class ConversionFailure(ExpectedFailure):
    """A row about a layer conversion (:mod:`harness.checking.conversions`): ``conversions`` name the
    original layer kind (``mha``, ``lstm``), ``when`` narrows it to the configurations it accepts
    (a function of the conversion's arguments), ``checks`` the outputs or the per-sample gradients.
    ``methods`` name who converts: ``opacus``."""

    conversions: tuple[str, ...]
    checks: tuple[str, ...] = CONVERSION_CHECKS
    when: Callable[[dict], bool] | None = field(default=None, compare=False)

    def applies(self, kind: str, arguments: dict, check: str, precision: str, versions: Versions | str) -> bool:
        """Whether this row covers a conversion of ``kind`` with these arguments (and masks), run in ``precision``."""
        return (
            check in self.checks
            and _hit(kind, self.conversions)
            and self._covers("opacus", precision, "cpu", versions)
            and (self.when is None or self.when(arguments))
        )
