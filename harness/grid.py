"""The grids of cells the tests are parametrized over: method x model x batch x precision x device.

A cell is plain data; the pytest plugin turns each into a ``pytest.param`` with its id,
its ``cuda``/``slow`` markers and, from the support matrix, its strict xfail.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

from harness.benchcompare import BATCHED
from harness.case import Case, build_case, case_id
from harness.clipping import clipped_count
from harness.methods import CLIPPED_METHODS, METHODS, NORM_METHODS, methods_for, timed_methods
from harness.models import MODELS, ModelSpec
from harness.precision import PRECISIONS
from harness.support import ExpectedFailure, expected_failure

DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class Cell:
    """One parametrization: a case, and the method to run on it (None for model-only checks)."""

    model: str
    batch_size: int
    precision: str
    device: str
    method: str | None = None
    loss_reduction: str = "mean"
    check: str = "grads"
    slow: bool = False

    @property
    def id(self) -> str:
        """``cpu-float64-simple_cnn-B7-vmap``: the case id, then what is checked if not the
        gradients (``norms``, ``clip4of7``: C clips 4 of the 7 samples), then the method."""
        parts = [case_id(self.device, self.precision, self.model, self.batch_size, self.loss_reduction)]
        if self.check == "norms":
            parts.append("norms")
        elif self.check == "clipped":
            parts.append(f"clip{clipped_count(self.batch_size)}of{self.batch_size}")
        if self.method:
            parts.append(self.method)
        return "-".join(parts)

    @property
    def expected(self) -> ExpectedFailure | None:
        """The support-matrix row for this cell, if it is expected to fail (a benchmark never is)."""
        if self.check == "benchmark":
            return None
        method = self.method or "vmap"
        return expected_failure(method, self.model, self.precision, self.device, self.check)

    @property
    def cannot_run(self) -> ExpectedFailure | None:
        """For a benchmark: the support-matrix row that says its method fails on this case."""
        if self.method is None or self.check != "benchmark":
            return None
        quantity = timed_methods().get(self.method, "grads")  # the batched step: as the gradients
        return expected_failure(self.method, self.model, self.precision, self.device, quantity)

    def build(self) -> Case:
        """Build the cell's case."""
        return build_case(self.model, self.batch_size, self.precision, self.device, self.loss_reduction)


#: Methods too slow for every case of the default run, and the one case they run on there;
#: their other cells carry ``slow``, and the property suite (a new model each example) leaves
#: them out. torch.compile took 5 to 25 s per case on 2 CPU cores (a cold cache: 25 s for the
#: first); grads, norms and the clipped step of the one case share one compiled graph.
HEAVY_METHODS = {"vmap-compiled": "cpu-float64-mlp-B7"}


def _light_or_slow(cell: Cell) -> Cell:
    """Mark a heavy method's cell ``slow`` unless it is the method's one default case."""
    light = HEAVY_METHODS.get(cell.method or "")
    if light is None or cell.slow:
        return cell
    case = case_id(cell.device, cell.precision, cell.model, cell.batch_size, cell.loss_reduction)
    return cell if case == light else dataclasses.replace(cell, slow=True)


def _devices_for(precision: str) -> tuple[str, ...]:
    return tuple(d for d in DEVICES if d in PRECISIONS[precision].devices)


def _odd_batch_size(spec: ModelSpec) -> int | None:
    """The model's odd batch size above 1 (B=7 ends vmap-chunked in a partial chunk)."""
    return next((b for b in spec.batch_sizes if b % 2 == 1 and b > 1), None)


def oracle_cells() -> Iterator[Cell]:
    """Every method on every model, batch size, precision and device; sum reduction in float64.

    The method varies fastest, so the cached oracle of a case is reused before it is evicted.
    """
    for model, spec in MODELS.items():
        sizes = [(b, False) for b in spec.batch_sizes] + [(b, True) for b in spec.slow_batch_sizes]
        odd = _odd_batch_size(spec)
        for batch_size, slow in sizes:
            for precision in PRECISIONS:
                reductions = ("mean", "sum") if precision == "float64" and batch_size == odd else ("mean",)
                for device in _devices_for(precision):
                    for reduction in reductions:
                        for method in METHODS:
                            yield _light_or_slow(Cell(model, batch_size, precision, device, method, reduction, slow=slow))


def sum_cells() -> Iterator[Cell]:
    """The sum check: per-sample gradients of a sum-reduced loss add up to the batch gradient.

    It needs no loop, so it also covers each model's largest (slow) batch size.
    """
    for model, spec in MODELS.items():
        sizes = [(max(spec.batch_sizes), False)] + [(b, True) for b in spec.slow_batch_sizes]
        for batch_size, slow in sizes:
            for device in DEVICES:
                for method in METHODS:
                    yield _light_or_slow(Cell(model, batch_size, "float32", device, method, "sum", slow=slow))


def quantity_cells(check: str) -> Iterator[Cell]:
    """Per-sample norms (``check="norms"``) or the clipped step (``"clipped"``) on every model,
    at its odd batch size.

    Methods that return the quantity themselves (Opacus' ghost clipping and DPOptimizer,
    BackPACK's BatchL2Grad) run in every precision, and with both loss reductions in float64.
    For per-sample-gradient methods the harness derives the quantity from their gradients, so
    they run once, in float64 with a mean loss (the float32 precision of their gradients and the
    sum-reduced case are test_matches_oracle's). On a heavy model (resnet18) these cells are slow.
    """
    own = {"norms": NORM_METHODS, "clipped": CLIPPED_METHODS}[check]
    for model, spec in MODELS.items():
        batch_size = _odd_batch_size(spec)
        if batch_size is None:
            continue
        for precision in PRECISIONS:
            reductions = ("mean", "sum") if precision == "float64" else ("mean",)
            for device in _devices_for(precision):
                for reduction in reductions:
                    for method in methods_for(check):
                        if method in own or (precision == "float64" and reduction == "mean"):
                            cell = Cell(model, batch_size, precision, device, method, reduction, check, spec.heavy)
                            yield _light_or_slow(cell)


def batching_rule_cells() -> Iterator[Cell]:
    """One vmap run per model and device, with the slow per-sample fallback turned into an error."""
    for model, spec in MODELS.items():
        for device in DEVICES:
            yield Cell(model, max(spec.batch_sizes), "float32", device, check="batching-rule")


@dataclass(frozen=True)
class PropertyCell:
    """One property test: a layer strategy, a precision, a device and a method.

    What is expected to fail is decided per drawn example (see ``check_drawn``), so a
    property cell carries no static xfail.
    """

    layer: str
    precision: str
    device: str
    method: str
    slow: bool = False
    expected: None = None

    @property
    def id(self) -> str:
        """``cpu-float64-conv2d-vmap``."""
        return f"{self.device}-{self.precision}-{self.layer}-{self.method}"


def property_cells() -> Iterator[PropertyCell]:
    """Every method on every drawn layer strategy, in every precision and device.

    The method varies fastest: under a derandomized profile each method's test draws the
    same problems, so their cached oracles are reused.
    """
    from harness.strategies import LAYER_STRATEGIES

    for layer in LAYER_STRATEGIES:
        for precision in PRECISIONS:
            for device in _devices_for(precision):
                for method in METHODS:
                    if method not in HEAVY_METHODS:
                        yield PropertyCell(layer, precision, device, method)


#: The benchmark cases: (model, batch size, slow). The seeds' scenarios are simple_cnn at B=64
#: (the torch.func tutorial's loop-vs-vmap timing) and resnet18 with GroupNorm at B=128 (the
#: functorch-vs-Opacus script; the no-in-place twin is the one Opacus' hooks can run).
BENCHMARK_CASES = (
    ("mlp", 32, False),
    ("smooth_cnn", 16, False),
    ("simple_cnn", 64, False),
    ("resnet18_gn", 128, True),
    ("resnet18_gn_noinplace", 128, True),
)


def benchmark_cells() -> Iterator[Cell]:
    """Every method (of any quantity), the batched step and the loop, on every benchmark case, in float32."""
    for model, batch_size, slow in BENCHMARK_CASES:
        for device in DEVICES:
            for method in (BATCHED, *timed_methods()):
                yield Cell(model, batch_size, "float32", device, method, check="benchmark", slow=slow)


#: The fixture names the plugin parametrizes, and the grid each one draws from.
GRIDS = {
    "oracle_cell": oracle_cells,
    "sum_cell": sum_cells,
    "batching_rule_cell": batching_rule_cells,
    "norms_cell": lambda: quantity_cells("norms"),
    "clipped_cell": lambda: quantity_cells("clipped"),
    "property_cell": property_cells,
    "benchmark_cell": benchmark_cells,
}
