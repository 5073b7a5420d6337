"""Precision modes: a case runs in the mode it names, not in what the process set before."""

from __future__ import annotations

import pytest
import torch

from harness.core.precision import _onednn_float32_switches, get_precision, precision_mode, tf32_flags


@pytest.fixture
def medium_matmul_precision():
    """What a project's conftest may do: float32 matmuls in bf16 (oneDNN) and TF32 (CUDA)."""
    saved = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("medium")
    yield
    torch.set_float32_matmul_precision(saved)


@pytest.mark.parametrize("name", ["float32", "bf16"])
def test_a_cpu_case_runs_float32_work_at_full_precision(medium_matmul_precision, name):
    before = [switch.fp32_precision for switch in _onednn_float32_switches()]
    with precision_mode(get_precision(name), "cpu"):
        assert torch.get_float32_matmul_precision() == "highest"
        assert all(switch.fp32_precision in ("none", "ieee") for switch in _onednn_float32_switches())
    assert torch.get_float32_matmul_precision() == "medium"
    assert [switch.fp32_precision for switch in _onednn_float32_switches()] == before


@pytest.mark.parametrize("name, tf32", [("float32", False), ("tf32", True)])
def test_a_cuda_case_has_tf32_only_in_the_tf32_mode(medium_matmul_precision, name, tf32):
    """The switches are set without a GPU too (nothing runs on one here)."""
    with precision_mode(get_precision(name), "cuda"):
        assert tf32_flags() == (tf32, tf32)
        assert torch.get_float32_matmul_precision() == ("high" if tf32 else "highest")
    assert torch.get_float32_matmul_precision() == "medium"


def test_a_mode_leaves_full_precision_switches_as_they_are(monkeypatch):
    monkeypatch.setattr(torch, "set_float32_matmul_precision", lambda value: pytest.fail("switched needlessly"))
    with precision_mode(get_precision("float64")):
        assert torch.get_float32_matmul_precision() == "highest"
