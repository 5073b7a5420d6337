"""The benchmarks' CPU memory figure finds known allocations, and resets between calls."""

from __future__ import annotations

import pytest
import torch

from harness.benchmarks.timing import peak_rss_bytes

MIB = 1024 * 1024


def allocating(mib: int):
    def call() -> None:
        torch.ones(mib * MIB // 4).sum()

    return call


@pytest.fixture(autouse=True)
def linux_only():
    if peak_rss_bytes(lambda: None) is None:
        pytest.skip("the resident high-water mark cannot be reset here (Linux /proc/self/clear_refs)")


@pytest.mark.parametrize("mib", [16, 64, 256])
def test_a_known_allocation_is_found(mib):
    peak = peak_rss_bytes(allocating(mib))
    assert mib * MIB * 0.98 <= peak <= (mib + 8) * MIB, f"{mib} MiB allocated, {peak / MIB:.1f} MiB reported"


def test_a_smaller_call_after_a_bigger_one_is_not_hidden_by_it():
    peak_rss_bytes(allocating(256))
    peak = peak_rss_bytes(allocating(16))
    assert 15 * MIB <= peak <= 24 * MIB, f"16 MiB after 256 MiB reported as {peak / MIB:.1f} MiB"


def test_a_call_that_allocates_nothing_reports_little():
    assert peak_rss_bytes(lambda: None) < 4 * MIB
