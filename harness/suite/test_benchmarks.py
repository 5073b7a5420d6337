"""The speed guard: ``python -m pytest -m benchmark`` times every method on every benchmark case.

Not part of the default run. Store a run with ``--benchmark-json=FILE`` (or
``--benchmark-autosave``, into ``baselines/<class>-torch-<version>/``) and judge it with
``python -m harness compare``; heavy cases also carry ``slow`` (``-m "benchmark and slow"``).
Every CPU case records what one call allocates (the allocator's events); with ``--instructions``
each counted CPU case also records the instructions of one call (callgrind); on CUDA every case
records the kernel launches of one call.
"""

import os

import pytest
import torch

from harness.benchmarks.records import BATCHED
from harness.benchmarks.timing import (
    ROUNDS,
    THREADS,
    WARMUP_ROUNDS,
    PairedBatched,
    cpu_allocations,
    kernel_launches,
    workload,
)
from harness.pytest_plugin import parametrize


@parametrize("benchmark")
def test_benchmark(trial, benchmark, psg_instruction_counter):
    row = trial.cannot_run
    if row is not None:
        pytest.skip(f"{trial.method} cannot run on {trial.model} (support matrix): {row.describe()}")
    torch.set_num_threads(THREADS)
    case = trial.build()
    call = workload(trial.method, case)
    if case.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    paired = PairedBatched(case) if trial.method != BATCHED else None
    benchmark.group = case.id
    benchmark.extra_info.update(
        case=case.id, method=trial.method, device=trial.device, model=trial.model, batch_size=trial.batch_size,
        threads=THREADS, quantity=BATCHED if trial.method == BATCHED else trial.quantity,
    )
    benchmark.pedantic(call, setup=paired, rounds=ROUNDS, warmup_rounds=WARMUP_ROUNDS, iterations=1)
    if paired is not None:
        benchmark.extra_info["batched_rounds"] = paired.rounds[-ROUNDS:]
    if case.device.type == "cuda":
        benchmark.extra_info["peak_bytes"] = torch.cuda.max_memory_allocated()
        benchmark.extra_info["kernel_launches"] = kernel_launches(call)
    else:
        benchmark.extra_info.update(cpu_allocations(call) or {})
        if psg_instruction_counter is not None and trial.counted:
            benchmark.extra_info["instructions"] = psg_instruction_counter.count(
                trial.model, trial.batch_size, trial.method, benchmark.extra_info["quantity"]
            )
    benchmark.extra_info["load"] = os.getloadavg()[0]
