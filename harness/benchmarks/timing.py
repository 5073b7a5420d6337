"""What the benchmark suite times, and what it adds to pytest-benchmark's records.

Every group (one case: model x batch x device) times each method, the plain batched
forward+backward (``batched``) and the loop in the same run, so each method gets an
overhead ratio (method / batched) and a speedup (loop / method) that carry across machines.

A shared machine drifts by tens of percent between one test and the next (measured here:
the batched step of simple_cnn B=64 took 54 ms in one run and 81 ms in another), so each
method's test also times the batched step before every one of its rounds, untimed by
pytest-benchmark (its ``setup``). The compare step divides each round by its paired batched
round: drift that hits both cancels.
"""

from __future__ import annotations

import ctypes
import os
import platform
import re
import time
from collections.abc import Callable
from pathlib import Path

import torch

from harness.benchmarks.records import BATCHED
from harness.benchmarks.records import storage_name as _storage_name_of
from harness.checking.runner import run, timed_call
from harness.core.case import Case
from harness.core.clipping import mid_bound, per_sample_norms
from harness.core.precision import precision_mode
from harness.methods import timed_methods

#: Fixed for every benchmark and recorded in the machine info: thread count changes timings.
#: One thread leaves the second core of a 2-core machine to everything else.
THREADS = 1
#: pytest-benchmark does no warm-up by default on CPython; the seeds' loop took 9 s on its
#: first call and 0.24 s on later ones (SimpleCNN, B=64, CPU).
WARMUP_ROUNDS = 2
ROUNDS = 20


def _batched_step(case: Case) -> None:
    case.model.zero_grad(set_to_none=True)
    with precision_mode(case.precision, case.device.type):
        case.loss_fn(case.model(case.inputs), case.targets).backward()
    case.model.zero_grad(set_to_none=True)


def workload(method: str, case: Case) -> Callable[[], None]:
    """One timed call: the method (or ``batched``) on the case as the checks run it
    (:func:`~harness.checking.runner.timed_call`), ending in a CUDA synchronize.

    A method that gives no per-sample gradients is timed on its clipped step (or norms); the
    clipping bound is then set, untimed, halfway between the middle per-sample norms (from vmap).
    """
    if method == BATCHED:
        step = lambda: _batched_step(case)  # noqa: E731
    else:
        quantity = timed_methods()[method]
        if quantity == "clipped" and case.max_grad_norm is None:
            case.max_grad_norm = mid_bound(per_sample_norms(run("vmap", "grads", case)))
        step = timed_call(method, quantity, case)
    sync = torch.cuda.synchronize if case.device.type == "cuda" else (lambda: None)

    def call() -> None:
        step()
        sync()

    return call


class PairedBatched:
    """pytest-benchmark ``setup``: times the batched step before each round, into ``rounds``."""

    def __init__(self, case: Case) -> None:
        self.call = workload(BATCHED, case)
        self.rounds: list[float] = []

    def __call__(self) -> None:
        start = time.perf_counter()
        self.call()
        self.rounds.append(time.perf_counter() - start)


def _status_kib(field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    if match is None:
        raise OSError(f"/proc/self/status has no {field}")
    return int(match.group(1))


def peak_rss_bytes(call: Callable[[], None]) -> int | None:
    """How far one call raises the process's resident memory at its peak (CPU), or None where
    Linux's high-water mark cannot be reset.

    Hands what malloc caches back first (``malloc_trim``), so the call's allocations show up as
    new pages, then resets the high-water mark (``/proc/self/clear_refs``) and reads it after
    the call. tests/selftest/test_bench_memory.py shows it finds a known allocation to within a few MiB.
    """
    try:
        ctypes.CDLL(None).malloc_trim(0)
        Path("/proc/self/clear_refs").write_text("5")
        start = _status_kib("VmRSS")
        call()
        return max(0, _status_kib("VmHWM") - start) * 1024
    except (OSError, AttributeError):
        return None


#: Device events that copy or fill memory rather than run a kernel (torch.profiler's names).
_NOT_KERNELS = ("Memcpy", "Memset")


def kernel_launches(call: Callable[[], None]) -> int:
    """The CUDA kernels one call runs, counted by torch.profiler's CUDA activity (copies and
    fills left out): a count of the work a call queues, steadier than its time on a shared GPU.

    Counts exactly one call: warm it up first (a first call also initialises cuBLAS and the
    caching allocator). Raises RuntimeError where CUDA is not available.
    """
    if not torch.cuda.is_available():
        raise RuntimeError("kernel_launches counts CUDA kernels, and CUDA is not available here")
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        call()
        torch.cuda.synchronize()
    return sum(
        1 for event in prof.events() if event.device_type == DeviceType.CUDA and not event.name.startswith(_NOT_KERNELS)
    )


def machine_class() -> str:
    """What a baseline carries across: the GPU's name, or the CPU core count (``cpu-2cores``)."""
    if torch.cuda.is_available():
        return "cuda-" + torch.cuda.get_device_name().replace(" ", "_")
    return f"cpu-{os.cpu_count()}cores"


def cpu_model() -> str:
    """The CPU's model name (``AMD EPYC``, ...), as Linux reports it; the platform's word elsewhere."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def storage_name() -> str:
    """The folder under ``baselines/`` for this machine class and torch version."""
    return _storage_name_of(machine_info())


def machine_info() -> dict[str, object]:
    """What pytest-benchmark's machine id does not tell apart: torch, threads, the GPU; and the
    core count the compare step holds each benchmark's recorded load against."""
    info: dict[str, object] = {
        "torch": torch.__version__,
        "torch_threads": THREADS,
        "machine_class": machine_class(),
        "cpus": os.cpu_count(),
    }
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name()
    return info

