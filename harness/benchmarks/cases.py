"""The benchmark grid: every method (of any quantity), the batched step and the loop, on each
benchmark case, in float32."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from harness.benchmarks.records import BATCHED
from harness.checking.support import ExpectedFailure, expected_failure
from harness.checking.trials import DEVICES, Trial
from harness.methods import timed_methods
from harness.problems.zoo import get_model

#: The batch sizes the small models are timed at: how each method's cost per sample falls
#: with B is what the report plots (16 is smooth_cnn's stored baseline point).
BATCH_SWEEP = {"mlp": (1, 8, 32, 128), "smooth_cnn": (1, 8, 16, 32, 128)}
#: The benchmark cases: (model, batch size, slow). The swept small models, then the seeds'
#: scenarios: simple_cnn at B=64 (the torch.func tutorial's loop-vs-vmap timing) and resnet18
#: with GroupNorm at B=128 (the functorch-vs-Opacus script; the no-in-place twin is the one
#: Opacus' hooks can run).
BENCHMARK_CASES = (
    *((model, batch_size, False) for model, sizes in BATCH_SWEEP.items() for batch_size in sizes),
    ("simple_cnn", 64, False),
    ("resnet18_gn", 128, True),
    ("resnet18_gn_noinplace", 128, True),
)

#: The CPU cases whose calls ``--instructions`` counts under callgrind, which runs a call 50 to
#: 100 times slower than natively: the small models up to smooth_cnn's baseline point (B=16), so
#: that counting every method stays within minutes (simple_cnn at B=64 took 120 s per call).
COUNTED_CASES = frozenset({*(("mlp", b) for b in BATCH_SWEEP["mlp"]), *(("smooth_cnn", b) for b in (1, 8, 16))})


@dataclass(frozen=True)
class AddedCase:
    """A benchmark case a plugin added: its model at one batch size, whether ``--instructions``
    counts it, and whether it is ``slow``."""

    model: str
    batch_size: int
    counted: bool = False
    slow: bool = False


#: The cases plugins added with :func:`register_benchmark_case`, by (model, batch size).
ADDED_CASES: dict[tuple[str, int], AddedCase] = {}


def register_benchmark_case(model: str, batch_sizes: Iterable[int], *, counted: bool = False, slow: bool = False) -> None:
    """Benchmark every method, the batched step and the loop on ``model`` (a registered model, a
    plugin's own included) at each of ``batch_sizes``, on every device, as the built-in cases are:
    timed; with ``counted``, also counted by ``--instructions`` on the CPU (callgrind runs a call
    50-100 times slower: keep such a case small); with ``slow``, only under ``-m "benchmark and
    slow"``. Call it from a plugin module given with ``-p``; a case added again takes the new flags."""
    get_model(model)
    sizes = tuple(batch_sizes)
    if not sizes or not all(isinstance(b, int) and not isinstance(b, bool) and b >= 1 for b in sizes):
        raise ValueError(f"batch_sizes must be positive ints, got {sizes!r}")
    for batch_size in sizes:
        if (model, batch_size) in {(m, b) for m, b, _ in BENCHMARK_CASES}:
            raise ValueError(f"{model} at B={batch_size} is a built-in benchmark case already")
        ADDED_CASES[model, batch_size] = AddedCase(model, batch_size, counted, slow)


@dataclass(frozen=True)
class BenchmarkTrial(Trial):
    """One timed method (or the batched step) on one benchmark case; never an expected failure."""

    check: str = "benchmark"

    @property
    def expected(self) -> None:
        """A benchmark is skipped where its method cannot run, not expected to fail."""
        return None

    @property
    def quantity(self) -> str:
        """What is timed: the method's gradients where it gives them, else its clipped step, else its norms."""
        return timed_methods().get(self.method or BATCHED, "grads")

    @property
    def counted(self) -> bool:
        """Whether ``--instructions`` counts this trial's call (a CPU case of :data:`COUNTED_CASES`)."""
        added = ADDED_CASES.get((self.model, self.batch_size))
        counted = added.counted if added is not None else (self.model, self.batch_size) in COUNTED_CASES
        return self.device == "cpu" and counted

    @property
    def cannot_run(self) -> ExpectedFailure | None:
        """The support-matrix row that says the method fails on this case (the batched step never does)."""
        if self.method in (None, BATCHED):
            return None
        return expected_failure(self.method, self.model, self.precision, self.device, self.quantity)


def benchmark_trials() -> Iterator[BenchmarkTrial]:
    """Every method (of any quantity), the batched step and the loop, on every benchmark case, in
    float32, the cases plugins added included; a method timed on its clipped step only from B=2 (its
    bound lies between two samples' norms, :func:`~harness.core.clipping.mid_bound`)."""
    added = ((case.model, case.batch_size, case.slow) for case in ADDED_CASES.values())
    for model, batch_size, slow in (*BENCHMARK_CASES, *added):
        for device in DEVICES:
            for method in (BATCHED, *timed_methods()):
                trial = BenchmarkTrial(model, batch_size, "float32", device, method, slow=slow)
                if batch_size > 1 or trial.quantity != "clipped":
                    yield trial
