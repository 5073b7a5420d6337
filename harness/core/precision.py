"""Precision modes: the dtype a case runs in and the TF32 switches it runs under.

Every correctness case states its mode; none inherits TF32 (on by default for CUDA
convolutions) by accident.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Precision:
    """A named precision mode: the case's dtype and whether TF32 is allowed."""

    name: str
    dtype: torch.dtype
    tf32: bool = False
    devices: tuple[str, ...] = ("cpu", "cuda")


PRECISIONS: dict[str, Precision] = {
    p.name: p
    for p in (
        Precision("float64", torch.float64),
        Precision("float32", torch.float32),
        Precision("tf32", torch.float32, tf32=True, devices=("cuda",)),
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


@contextlib.contextmanager
def precision_mode(precision: Precision) -> Iterator[Precision]:
    """Run the body with TF32 on or off as ``precision`` says, then restore the switches."""
    saved = tf32_flags()
    set_tf32(precision.tf32, precision.tf32)
    try:
        yield precision
    finally:
        set_tf32(*saved)
