"""The benchmarks' CPU memory figures count what a call allocates: known allocations exactly, the
same for every call of the same code, and an extra copy always."""

from __future__ import annotations

import pytest
import torch

from harness.benchmarks.cases import BenchmarkTrial
from harness.benchmarks.timing import cpu_allocations, workload
from harness.methods import get_method

MIB = 1024 * 1024


def allocating(mib: int):
    def call() -> None:
        torch.ones(mib * MIB // 4).sum()

    return call


@pytest.fixture(autouse=True)
def allocator_events():
    if cpu_allocations(lambda: None) is None:
        pytest.skip("this torch's profiler gives no allocator events")


@pytest.mark.parametrize("mib", [1, 16, 64])
def test_a_known_allocation_is_counted_to_the_byte(mib):
    figures = cpu_allocations(allocating(mib))
    assert figures["peak_alloc_bytes"] >= mib * MIB
    assert figures["allocated_bytes"] - mib * MIB < 1024, figures


def test_a_smaller_call_after_a_bigger_one_is_not_hidden_by_it():
    cpu_allocations(allocating(64))
    assert cpu_allocations(allocating(1))["peak_alloc_bytes"] < 2 * MIB


def test_a_call_that_allocates_nothing_counts_nothing():
    assert cpu_allocations(lambda: None) == {"peak_alloc_bytes": 0, "allocated_bytes": 0}


@pytest.mark.parametrize("model, batch_size", [("mlp", 8), ("smooth_cnn", 16)])
def test_the_same_call_counts_the_same_and_an_extra_copy_of_its_output_always_shows(model, batch_size):
    case = BenchmarkTrial(model, batch_size, "float32", "cpu", "vmap").build()
    call = workload("vmap", case)
    call()
    figures = [cpu_allocations(call) for _ in range(3)]
    assert figures[0] == figures[1] == figures[2]

    vmap = get_method("vmap")
    grads = vmap(case)
    copied = cpu_allocations(lambda: {name: g.clone() for name, g in vmap(case).items()})
    copy_bytes = sum(g.numel() * g.element_size() for g in grads.values())
    assert copied["allocated_bytes"] - figures[0]["allocated_bytes"] == copy_bytes
