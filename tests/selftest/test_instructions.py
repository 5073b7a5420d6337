"""The CUDA kernel count of one benchmark call (harness/benchmarks/timing.py)."""

from __future__ import annotations

import pytest
import torch

from harness.benchmarks.timing import kernel_launches


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available")
def test_kernel_launches_needs_cuda():
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        kernel_launches(lambda: None)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_kernel_launches_counts_the_kernels_of_one_call():
    x = torch.ones(1024, device="cuda")
    x.add_(1)
    assert kernel_launches(lambda: None) == 0
    assert kernel_launches(lambda: x.add_(1)) == 1
    assert kernel_launches(lambda: (x.add_(1), x.mul_(2))) == 2
