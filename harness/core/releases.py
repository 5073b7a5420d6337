"""What each installed release of torch, Opacus and BackPACK has: the one place that knows.

The harness runs on torch 2.0 and later and on every Opacus and BackPACK release that imports
with it (docs/releases.md has the table). Everything a release may lack is a :class:`Feature`
here, checked by capability (an attribute, a constructor argument, an import), not by comparing
version numbers: a feature's ``since`` is only what its skip reason says. A missing feature is a
skip with that reason (:meth:`Feature.require` raises :class:`MethodUnavailable`), never an
import error or a failure. A library that cannot import at all is the same: :func:`library`
imports it once and says why not.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from types import ModuleType

import torch

from harness.core.errors import MethodUnavailable

#: The libraries a release range can name, by the distribution that installs each, and the name a reason uses.
LIBRARIES: dict[str, tuple[str, str]] = {
    "torch": ("torch", "torch"),
    "opacus": ("opacus", "Opacus"),
    "backpack": ("backpack-for-pytorch", "BackPACK"),
}


@functools.cache
def installed_version(library: str) -> str | None:
    """The installed release of ``library`` (a key of :data:`LIBRARIES`), without a local part
    (``2.0.1``, not ``2.0.1+cu117``), or None where it is not installed."""
    from packaging.version import Version

    try:
        return Version(metadata.version(LIBRARIES[library][0])).base_version
    except metadata.PackageNotFoundError:
        return None


def _this(library: str) -> str:
    version = installed_version(library)
    return f"this is {version}" if version else f"{LIBRARIES[library][1]} is not installed"


@dataclass(frozen=True)
class Versions:
    """A release of each library a support-matrix row can name (None: not installed), and the CPU
    flags of the machine a row is judged for (None: this machine's)."""

    torch: str | None
    opacus: str | None = None
    backpack: str | None = None
    cpu_flags: frozenset[str] | None = None

    def __str__(self) -> str:
        return ", ".join(f"{LIBRARIES[name][1]} {getattr(self, name) or 'not installed'}" for name in LIBRARIES)

    @classmethod
    def installed(cls) -> Versions:
        """The installed releases."""
        return cls(*(installed_version(name) for name in LIBRARIES))  # this machine's CPU flags

    @classmethod
    def of(cls, versions: Versions | str | None) -> Versions:
        """``versions`` as they are; a string is torch's version, with the installed Opacus and BackPACK."""
        if isinstance(versions, Versions):
            return versions
        installed = cls.installed()
        return installed if versions is None else cls(versions, installed.opacus, installed.backpack)


#: The project's default releases (constraints/torch-2.14.txt, what the README's install command
#: installs): the README's support table is stated for them.
DEFAULT_RELEASES = Versions("2.14.0", "1.6.0", "1.7.1")


@functools.cache
def _import(library: str) -> ModuleType | str:
    """The imported module, or the line that says why it does not import with the installed torch."""
    name = LIBRARIES[library][1]
    if installed_version(library) is None:
        return f"{name} is not installed"
    try:
        return importlib.import_module(library)
    except Exception as exc:  # an old release fails on what the installed torch dropped, not only with ImportError
        return f"{name} {installed_version(library)} does not import with torch {torch.__version__} ({type(exc).__name__}: {exc})"


def library(name: str) -> ModuleType:
    """``import name`` (``"opacus"`` or ``"backpack"``), or :class:`MethodUnavailable` with the
    line that says why it does not import (tried once per process)."""
    module = _import(name)
    if isinstance(module, str):
        raise MethodUnavailable(module)
    return module


def import_problem(name: str) -> str | None:
    """Why ``name`` does not import here, or None where it does (``check-env`` prints this line)."""
    module = _import(name)
    return module if isinstance(module, str) else None


@dataclass(frozen=True)
class Feature:
    """Something a release of ``library`` may lack: ``what`` it is, the release it came in
    (``since``, for the reason only) and the check that finds it in the installed one."""

    what: str
    library: str
    since: str
    probe: Callable[[], bool]

    def missing(self) -> str | None:
        """None where the installed release has it; else the reason: "nn.RMSNorm needs torch 2.4; this is 2.0.1"."""
        if _probe(self):
            return None
        if self.library != "torch" and (broken := import_problem(self.library)):
            return broken
        return f"{self.what} needs {LIBRARIES[self.library][1]} {self.since}; {_this(self.library)}"

    @property
    def available(self) -> bool:
        """Whether the installed release has it."""
        return _probe(self)

    def require(self) -> None:
        """Raise :class:`MethodUnavailable` with the reason where the installed release lacks it."""
        reason = self.missing()
        if reason is not None:
            raise MethodUnavailable(reason)


@functools.cache
def _probe(feature: Feature) -> bool:
    if feature.library != "torch" and isinstance(_import(feature.library), str):
        return False
    try:
        return bool(feature.probe())
    except ImportError:
        return False


def _takes(callable_: Callable, argument: str) -> bool:
    return argument in inspect.signature(callable_).parameters


def _has(module: str, *names: str) -> bool:
    found = importlib.import_module(module)
    return all(hasattr(found, name) for name in names)


# torch
RMS_NORM = Feature("nn.RMSNorm", "torch", "2.4", lambda: hasattr(torch.nn, "RMSNorm"))
LAYER_NORM_BIAS = Feature("nn.LayerNorm(bias=...)", "torch", "2.1", lambda: _takes(torch.nn.LayerNorm, "bias"))
#: GroupNorm, InstanceNorm and BatchNorm's ``bias`` (pytorch/pytorch#176573): torch 2.12.1 has it, 2.11.0 does not
#: (2.11 to 2.13 not looked at).
NORM_BIAS = Feature("nn.GroupNorm(bias=...), nn.InstanceNorm*d(bias=...)", "torch", "2.12", lambda: _takes(torch.nn.GroupNorm, "bias"))
TORCH_COMPILER = Feature("torch.compiler", "torch", "2.1", lambda: hasattr(torch, "compiler"))


def _dynamo_runs_here() -> bool:
    try:
        importlib.import_module("torch._dynamo.eval_frame").check_if_dynamo_supported()
    except RuntimeError:
        return False
    return True


#: torch 2.0's dynamo refuses Python 3.11 ("Python 3.11+ not yet supported for torch.compile").
TORCH_COMPILE = Feature("torch.compile on Python 3.11", "torch", "2.1", _dynamo_runs_here)
CPU_CAPABILITY = Feature(
    "torch.backends.cpu.get_cpu_capability()", "torch", "2.1", lambda: hasattr(torch.backends, "cpu")
)
AUTOCAST_BY_DEVICE = Feature(
    "torch.get_autocast_dtype(device)", "torch", "2.4", lambda: hasattr(torch, "get_autocast_dtype")
)

# Opacus
OPACUS_LAYERS = Feature("opacus.layers (DPRNN, DPLSTM, DPGRU, DPMultiheadAttention)", "opacus", "1.0", lambda: True)
DP_MHA_BATCH_FIRST = Feature(
    "DPMultiheadAttention(batch_first=...)",
    "opacus",
    "1.4.1",
    lambda: _takes(importlib.import_module("opacus.layers").DPMultiheadAttention, "batch_first"),
)
FORCE_FUNCTORCH = Feature(
    "GradSampleModule(force_functorch=...)",
    "opacus",
    "1.2",
    lambda: _takes(importlib.import_module("opacus").GradSampleModule, "force_functorch"),
)
OPACUS_EXPANDED_WEIGHTS = Feature(
    "opacus.grad_sample.GradSampleModuleExpandedWeights",
    "opacus",
    "1.2",
    lambda: _has("opacus.grad_sample", "GradSampleModuleExpandedWeights"),
)
GHOST_CLIPPING = Feature(
    "ghost clipping (GradSampleModuleFastGradientClipping)",
    "opacus",
    "1.5",
    lambda: _has("opacus.grad_sample", "GradSampleModuleFastGradientClipping"),
)
#: ``make_private`` in a mode other than hooks (functorch, ExpandedWeights, ghost clipping).
MAKE_PRIVATE_MODES = Feature(
    "PrivacyEngine.make_private(grad_sample_mode=...)",
    "opacus",
    "1.2",
    lambda: _takes(importlib.import_module("opacus").PrivacyEngine.make_private, "grad_sample_mode"),
)
#: ``make_private`` that leaves the model unwrapped and returns hooks to clean up (opacus#794).
MAKE_PRIVATE_UNWRAPPED = Feature(
    "PrivacyEngine.make_private(wrap_model=False)",
    "opacus",
    "1.6",
    lambda: _takes(importlib.import_module("opacus").PrivacyEngine.make_private, "wrap_model"),
)
#: The one-call ghost-clipping backward the adapter uses; 1.5.0 to 1.5.2 took two backward passes by hand.
GHOST_CLIPPING_TENSOR = Feature(
    "opacus.utils.fast_gradient_clipping_utils.DPTensorFastGradientClipping",
    "opacus",
    "1.5.3",
    lambda: _has("opacus.utils.fast_gradient_clipping_utils", "DPTensorFastGradientClipping"),
)

# BackPACK
BACKPACK_FIRST_ORDER = Feature(
    "backpack.extensions.BatchGrad, BatchL2Grad",
    "backpack",
    "1.6",
    lambda: _has("backpack.extensions", "BatchGrad", "BatchL2Grad"),
)


def reset_compiler() -> None:
    """Forget what ``torch.compile`` compiled: ``torch.compiler.reset()`` (torch 2.1 and later),
    ``torch._dynamo.reset()`` before."""
    if TORCH_COMPILER.available:
        torch.compiler.reset()
    else:
        importlib.import_module("torch._dynamo").reset()


def autocast_state(device: str) -> tuple[bool, torch.dtype]:
    """Whether autocast is on for ``device`` and to which dtype: ``torch.is_autocast_enabled(device)``
    and ``torch.get_autocast_dtype(device)`` (torch 2.4 and later), the per-device functions before."""
    if AUTOCAST_BY_DEVICE.available:
        return torch.is_autocast_enabled(device), torch.get_autocast_dtype(device)
    if device == "cpu":
        return torch.is_autocast_cpu_enabled(), torch.get_autocast_cpu_dtype()
    return torch.is_autocast_enabled(), torch.get_autocast_gpu_dtype()


def cpu_capability() -> str:
    """The instruction set ATen's CPU kernels run with (``AVX2``, ``AVX512``, ...):
    ``torch.backends.cpu.get_cpu_capability()`` (torch 2.1 and later), before that the line
    "CPU capability usage" of ``torch.__config__.show()``."""
    if CPU_CAPABILITY.available:
        return torch.backends.cpu.get_cpu_capability()
    shown = re.search(r"CPU capability usage: (\S+)", torch.__config__.show())
    return shown.group(1) if shown else "unknown"
