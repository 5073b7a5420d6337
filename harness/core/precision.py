"""Precision modes: the dtype a case runs in, the TF32 switches and the autocast it runs under.

Every correctness case states its mode; none inherits TF32 (on by default for CUDA
convolutions), a lower float32 matmul precision or autocast by accident.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Precision:
    """A named precision mode: the case's dtype, whether TF32 is allowed, and the dtype autocast
    runs the method in (None: no autocast). Modes under autocast check the zoo's per-sample
    gradients only (``zoo_gradients_only``): their bounds were measured there."""

    name: str
    dtype: torch.dtype
    tf32: bool = False
    devices: tuple[str, ...] = ("cpu", "cuda")
    autocast: torch.dtype | None = None

    @property
    def compute_dtype(self) -> torch.dtype:
        """The least precise dtype a case of this mode computes in: autocast's, else the case's.
        A method's result may not be less precise than that."""
        return self.autocast or self.dtype

    @property
    def zoo_gradients_only(self) -> bool:
        """Whether this mode checks only the zoo's per-sample gradients (no drawn layers, norms or clipped step)."""
        return self.autocast is not None


PRECISIONS: dict[str, Precision] = {
    p.name: p
    for p in (
        Precision("float64", torch.float64),
        Precision("float32", torch.float32),
        Precision("tf32", torch.float32, tf32=True, devices=("cuda",)),
        Precision("bf16", torch.float32, autocast=torch.bfloat16),
    )
}


def get_precision(name: str) -> Precision:
    """The mode registered under ``name``, or a clear error listing the known ones."""
    try:
        return PRECISIONS[name]
    except KeyError:
        raise KeyError(f"unknown precision {name!r}; known: {', '.join(PRECISIONS)}") from None


def tf32_flags() -> tuple[bool, bool]:
    """The current (matmul, cuDNN) TF32 switches."""
    return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32


def set_tf32(matmul: bool, cudnn: bool) -> None:
    """Set the (matmul, cuDNN) TF32 switches."""
    torch.backends.cuda.matmul.allow_tf32 = matmul
    torch.backends.cudnn.allow_tf32 = cudnn


def _onednn_float32_switches() -> list[object]:
    """oneDNN's float32 precision switches (matmul, conv, rnn; torch 2.9 and later): ``bf16`` or
    ``tf32`` there let a CPU with those units run float32 work in less precision, and
    ``torch.set_float32_matmul_precision("medium")`` sets the matmul one to ``bf16``."""
    mkldnn = torch.backends.mkldnn
    return [switch for op in ("matmul", "conv", "rnn") if hasattr(switch := getattr(mkldnn, op, None), "fp32_precision")]


#: The switches' ops, read through torch's own getter: the attribute goes through a failed
#: lookup first and cost 0.65 us a read, 2% of the instructions of a small model's call.
_ONEDNN_OPS = tuple(switch.op for switch in _onednn_float32_switches())
_read_switch = getattr(torch._C, "_get_fp32_precision_getter", None) or (
    lambda backend, op: getattr(getattr(torch.backends, backend), op).fp32_precision
)


def _pin_full_float32() -> Callable[[], None] | None:
    """Make float32 work run in float32 on every backend, whatever the process set before (a
    project's ``set_float32_matmul_precision("medium")`` would make CPU matmuls bf16 on some CPUs
    only); the undo, or None where everything already was (the usual case: nothing is touched)."""
    matmul = torch.get_float32_matmul_precision()
    lowered = [(op, value) for op in _ONEDNN_OPS if (value := _read_switch("mkldnn", op)) not in ("none", "ieee")]
    if matmul == "highest" and not lowered:
        return None
    torch.set_float32_matmul_precision("highest")
    for op, _ in lowered:
        getattr(torch.backends.mkldnn, op).fp32_precision = "ieee"

    def undo() -> None:
        torch.set_float32_matmul_precision(matmul)
        for op, value in lowered:
            getattr(torch.backends.mkldnn, op).fp32_precision = value

    return undo


@contextlib.contextmanager
def precision_mode(precision: Precision, device: str = "cpu") -> Iterator[Precision]:
    """Run the body in full float32 on every backend but for TF32 where ``precision`` allows it,
    and under autocast on ``device`` or not, as ``precision`` says; then restore the switches."""
    undo = _pin_full_float32()
    saved = tf32_flags() if device == "cuda" else None  # the TF32 switches act on CUDA only
    if saved is not None:
        set_tf32(precision.tf32, precision.tf32)
    autocast = (
        torch.autocast(device_type=device, dtype=precision.autocast)
        if precision.autocast is not None
        else contextlib.nullcontext()
    )
    try:
        with autocast:
            yield precision
    finally:
        if saved is not None:
            set_tf32(*saved)
        if undo is not None:
            undo()
