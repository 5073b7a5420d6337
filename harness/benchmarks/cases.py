"""The benchmark grid: every method (of any quantity), the batched step and the loop, on each
benchmark case, in float32."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from harness.benchmarks.records import BATCHED
from harness.checking.support import ExpectedFailure, expected_failure
from harness.checking.trials import DEVICES, Trial
from harness.methods import timed_methods

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
        return self.device == "cpu" and (self.model, self.batch_size) in COUNTED_CASES

    @property
    def cannot_run(self) -> ExpectedFailure | None:
        """The support-matrix row that says the method fails on this case (the batched step never does)."""
        if self.method in (None, BATCHED):
            return None
        return expected_failure(self.method, self.model, self.precision, self.device, self.quantity)


def benchmark_trials() -> Iterator[BenchmarkTrial]:
    """Every method (of any quantity), the batched step and the loop, on every benchmark case, in
    float32; a method timed on its clipped step only from B=2 (its bound lies between two samples'
    norms, :func:`~harness.core.clipping.mid_bound`)."""
    for model, batch_size, slow in BENCHMARK_CASES:
        for device in DEVICES:
            for method in (BATCHED, *timed_methods()):
                trial = BenchmarkTrial(model, batch_size, "float32", device, method, slow=slow)
                if batch_size > 1 or trial.quantity != "clipped":
                    yield trial
