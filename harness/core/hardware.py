"""What this machine's CPU lets torch run, and the failures that only say so.

torch (ATen), oneDNN and MKL pick kernels per instruction set, and each can be told to use a
lower one than the CPU offers (:data:`ISA_CAPS`): that is how the suite is run under the CPUs a
machine is not (``tox -e modes``). Some operations cannot run at all below an instruction set:
such a failure is a property of the hardware, not of a method, so it is reported as a
:class:`HardwareLimit` (the case is skipped with a reason that names the missing instruction set)
and never as a failure or an expected failure that would hold on one CPU only.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable
from dataclasses import dataclass

import torch

from harness.core.errors import MethodUnavailable
from harness.core.releases import cpu_capability

#: The variables that cap the instruction set each library uses, and what they cap.
ISA_CAPS: dict[str, str] = {
    "ATEN_CPU_CAPABILITY": "ATen's vectorized kernels (default, avx2, avx512)",
    "ONEDNN_MAX_CPU_ISA": "oneDNN's kernels: convolutions, matmuls, recurrent layers (SSE41 ... AVX512_CORE_AMX)",
    "MKL_ENABLE_INSTRUCTIONS": "MKL's BLAS and FFT (SSE4_2, AVX2, AVX512)",
}


#: How every :class:`HardwareLimit`'s message starts: ``same-verdicts`` tells such skips by it.
MISSING_ISA = "missing instruction set"


class HardwareLimit(MethodUnavailable):
    """A case this machine's CPU (or the instruction set it is capped at) cannot run: skipped."""


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux lists them (empty where /proc/cpuinfo is not there)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


@functools.cache
def onednn_bf16() -> bool:
    """Whether oneDNN computes in bfloat16 here: it needs AVX-512 (avx512_core) or AVX-NE-CONVERT,
    and honours ``ONEDNN_MAX_CPU_ISA``."""
    supported = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(supported()) if supported is not None else {"avx512bw", "avx512vl", "avx512dq"} <= cpu_flags()


#: What precedes the CPU's flags in an :func:`instruction_sets` line.
_FLAGS = "CPU flags: "


def instruction_sets() -> str:
    """One line on what this process runs with: ATen's capability, oneDNN's bfloat16 support, the
    caps set in the environment and the CPU's SIMD flags."""
    caps = [f"{name}={os.environ[name]}" for name in ISA_CAPS if os.environ.get(name)]
    simd = sorted(flag for flag in cpu_flags() if flag.startswith(("avx", "amx")))
    return (
        f"ATen {cpu_capability()}, oneDNN bfloat16 {'yes' if onednn_bf16() else 'no'}"
        f"{' (' + ', '.join(caps) + ')' if caps else ''}; {_FLAGS}{' '.join(simd) or 'none with AVX'}"
    )


def recorded_cpu_flags(line: str) -> frozenset[str] | None:
    """The CPU flags an :func:`instruction_sets` line recorded, or None where it records none."""
    return frozenset(line.split(_FLAGS, 1)[1].split()) if _FLAGS in line else None


@dataclass(frozen=True)
class Limit:
    """An operation that cannot run below an instruction set: the error it raises (``error``), for
    cases computing in ``dtype`` on the CPU, where ``available()`` says the instruction set is
    missing (``cap``: the variable that can lower it)."""

    error: str
    dtype: torch.dtype
    #: The layer whose kernel needs it: the support table marks the models that hold one.
    module: type[torch.nn.Module]
    #: What needs the instruction sets, and which.
    what: str
    needs: str
    available: Callable[[], bool]
    cap: str
    finding: str

    def applies(self, exc: BaseException, compute_dtype: torch.dtype, device: str) -> bool:
        """Whether ``exc``, raised on a case computing in ``compute_dtype`` on ``device``, is this limit."""
        return (
            device == "cpu"
            and compute_dtype == self.dtype
            and re.search(self.error, str(exc)) is not None
            and not self.available()
        )

    def reason(self, exc: BaseException) -> str:
        """The skip's reason: what is missing, why, and the error's first sentence."""
        capped = os.environ.get(self.cap)
        here = f"{self.cap}={capped} caps it here" if capped else "this CPU has none of them"
        said = re.split(r"(?<=\.)\s", str(exc).strip(), maxsplit=1)[0] or type(exc).__name__
        return f"{MISSING_ISA}: {self.what} need {self.needs} ({here}); {self.finding}: {said}"


LIMITS: tuple[Limit, ...] = (
    Limit(
        error="could not create a primitive descriptor",
        dtype=torch.bfloat16,
        module=torch.nn.LSTM,
        what="oneDNN's bfloat16 kernels",
        needs="AVX-512 (AVX512F/BW/VL/DQ) or AVX-NE-CONVERT",
        available=onednn_bf16,
        cap="ONEDNN_MAX_CPU_ISA",
        finding="under autocast, torch sends nn.LSTM to oneDNN in bfloat16 all the same (docs/findings.md)",
    ),
)


def hardware_limit(exc: BaseException, compute_dtype: torch.dtype, device: str) -> str | None:
    """Why an error raised on a case only says this CPU cannot run it (the reason of the
    :class:`HardwareLimit` to skip it with), or None where it is a real failure (the same error on
    a CPU that has the instruction set is one)."""
    return next((limit.reason(exc) for limit in LIMITS if limit.applies(exc, compute_dtype, device)), None)
