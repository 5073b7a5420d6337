"""The speed guard: ``python -m pytest -m benchmark`` times every method on every benchmark case.

Not part of the default run. Store a run with ``--benchmark-json=FILE`` (or
``--benchmark-autosave``, into ``baselines/<class>-torch-<version>/``) and judge it with
``python -m harness compare``; heavy cases also carry ``slow`` (``-m "benchmark and slow"``).
"""

import os

import pytest
import torch

from harness.bench import BATCHED, ROUNDS, THREADS, WARMUP_ROUNDS, PairedBatched, peak_rss_bytes, workload
from harness.methods import timed_methods


def test_benchmark(benchmark_cell, benchmark):
    cell = benchmark_cell
    row = cell.cannot_run
    if row is not None:
        pytest.skip(f"{cell.method} cannot run on {cell.model} (support matrix): {row.describe()}")
    torch.set_num_threads(THREADS)
    case = cell.build()
    call = workload(cell.method, case)
    if case.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    paired = PairedBatched(case) if cell.method != BATCHED else None
    benchmark.group = case.id
    benchmark.extra_info.update(case=case.id, method=cell.method, threads=THREADS, quantity=timed_methods().get(cell.method, BATCHED))
    benchmark.pedantic(call, setup=paired, rounds=ROUNDS, warmup_rounds=WARMUP_ROUNDS, iterations=1)
    if paired is not None:
        benchmark.extra_info["batched_rounds"] = paired.rounds[-ROUNDS:]
    if case.device.type == "cuda":
        benchmark.extra_info["peak_bytes"] = torch.cuda.max_memory_allocated()
    else:
        benchmark.extra_info["peak_rss_bytes"] = peak_rss_bytes(call)
    benchmark.extra_info["load"] = os.getloadavg()[0]
