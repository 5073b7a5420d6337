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

import os
import platform
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

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


def cpu_allocations(call: Callable[[], None]) -> dict[str, int] | None:
    """What one call allocates on the CPU, from the allocator's events (torch.profiler with
    ``profile_memory``), or None where this torch does not give them: ``peak_alloc_bytes``, the
    most bytes the call held at once beyond what was live before it, and ``allocated_bytes``,
    every byte it allocated.

    Counted, not sampled: the same code makes the same allocations, whatever the allocator kept
    from earlier calls (resident memory did not: 53.6 and 61.8 MiB for the same step). A copy
    made and dropped inside a call may leave the peak where it was (vmap's on smooth_cnn) and
    always adds to the bytes allocated. Warm the call up first: a first call allocates caches.
    """
    try:
        from torch._C._profiler import _EventType
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            call()
        roots = prof.profiler.kineto_results.experimental_event_tree()
    except (ImportError, AttributeError, RuntimeError):
        return None
    allocations = sorted(
        (event for event in _in_tree(roots) if event.tag == _EventType.Allocation and event.extra_fields.device.type == "cpu"),
        key=lambda event: event.start_time_ns,
    )
    live = peak = allocated = 0
    for size in (event.extra_fields.alloc_size for event in allocations):
        live += size
        peak = max(peak, live)
        allocated += max(0, size)
    return {"peak_alloc_bytes": peak, "allocated_bytes": allocated}


def _in_tree(events: Iterable[Any]) -> Iterator[Any]:
    """The profiler's events and all their children, each before its children."""
    for event in events:
        yield event
        yield from _in_tree(event.children)


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

