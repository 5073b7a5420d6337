"""The trials the suite runs: which method, on which case, checked for what. Plain data; the grids
list them, and each trial builds its own test id here, the one place ids are made.

A trial's id reads ``cpu-float64-simple_cnn-B7[-sum][-norms|-clip4of7][-method]``: the case id,
the quantity's tag where it is not the gradients, then the method. A drawn-layer trial reads
``cpu-float64-conv2d-vmap``. Tests record each trial's fields as JUnit properties
(:meth:`Trial.fields`), which the scorecard reads instead of parsing ids.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

from harness.checking.support import ExpectedFailure, expected_failure
from harness.core.case import LOSS_REDUCTIONS, Case, case_id
from harness.core.precision import PRECISIONS
from harness.methods import METHODS, gives_itself, methods_for, own_methods
from harness.problems.build import build_case
from harness.problems.zoo import MODELS, ModelSpec
from harness.quantities import QUANTITIES
from harness.reference.oracle import ORACLE

DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class Trial:
    """One method (None for model-only checks) on one case, checked for ``check``: a quantity
    (``grads``, ``norms``, ``clipped``) or ``batching-rule``."""

    model: str
    batch_size: int
    precision: str
    device: str
    method: str | None = None
    loss_reduction: str = "mean"
    check: str = "grads"
    slow: bool = False

    @property
    def case(self) -> str:
        """The case's id, ``cpu-float64-simple_cnn-B7`` (``-sum`` if summed)."""
        return case_id(self.device, self.precision, self.model, self.batch_size, self.loss_reduction)

    @property
    def id(self) -> str:
        """The test id: the case id, the quantity's tag where it is not the gradients, the method."""
        parts = [self.case]
        quantity = QUANTITIES.get(self.check)
        tag = quantity.id_tag(self.batch_size) if quantity is not None else None
        if tag:
            parts.append(tag)
        if self.method:
            parts.append(self.method)
        return "-".join(parts)

    def fields(self) -> dict[str, str]:
        """What the scorecard needs to place the result: recorded as JUnit properties."""
        return {
            "device": self.device,
            "precision": self.precision,
            "model": self.model,
            "batch_size": str(self.batch_size),
            "method": self.method or "",
            "check": self.check,
        }

    @property
    def expected(self) -> ExpectedFailure | None:
        """The support-matrix row for this trial, if it is expected to fail (on an empty batch, a
        row for ``empty-<quantity>``)."""
        check = f"empty-{self.check}" if self.batch_size == 0 else self.check
        return expected_failure(self.method or "vmap", self.model, self.precision, self.device, check)

    def build(self) -> Case:
        """Build the trial's case."""
        return build_case(self.model, self.batch_size, self.precision, self.device, self.loss_reduction)


@dataclass(frozen=True)
class PropertyTrial:
    """One property test: a layer strategy, a precision, a device and a method. What is expected
    to fail is decided per drawn example (see ``check_drawn``), so it carries no static xfail."""

    layer: str
    precision: str
    device: str
    method: str
    slow: bool = False
    expected: None = None
    check: str = "grads"

    @property
    def case(self) -> str:
        """What the drawn examples share, ``cpu-float64-conv2d`` (each example is a case of its own)."""
        return f"{self.device}-{self.precision}-{self.layer}"

    @property
    def id(self) -> str:
        """``cpu-float64-conv2d-vmap``; a quantity other than the gradients is named, ``cpu-float64-conv2d-norms-backpack``."""
        return f"{self.case}-{self.method}" if self.check == "grads" else f"{self.case}-{self.check}-{self.method}"

    def fields(self) -> dict[str, str]:
        """What the scorecard needs to place the result (the layer takes the model's place)."""
        fields = {"device": self.device, "precision": self.precision, "model": self.layer, "method": self.method}
        return fields if self.check == "grads" else {**fields, "check": self.check}


#: Methods too slow for every case of the default run, and the one case they run on there;
#: their other trials carry ``slow``, and the property suite (a new model each example) leaves
#: them out. torch.compile took 5 to 25 s per case on 2 CPU cores (a cold cache: 25 s for the
#: first); grads, norms and the clipped step of the one case share one compiled graph.
HEAVY_METHODS = {"vmap-compiled": "cpu-float64-mlp-B7"}


def _light_or_slow(trial: Trial) -> Trial:
    """Mark a heavy method's trial ``slow`` unless it is the method's one default case."""
    light = HEAVY_METHODS.get(trial.method or "")
    if light is None or trial.slow:
        return trial
    return trial if trial.case == light else dataclasses.replace(trial, slow=True)


def _is_the_oracle(method: str, precision: str, device: str) -> bool:
    """Checked against itself the oracle could not fail, so the grids leave it out; the loop is
    checked in the other precisions and devices, and by the sum check."""
    return (method, precision, device) == ORACLE


def devices_for(precision: str) -> tuple[str, ...]:
    """The devices a precision mode runs on."""
    return tuple(d for d in DEVICES if d in PRECISIONS[precision].devices)


def _odd_batch_size(spec: ModelSpec) -> int | None:
    """The model's odd batch size above 1 (B=7 ends vmap-chunked in a partial chunk)."""
    return next((b for b in spec.batch_sizes if b % 2 == 1 and b > 1), None)


def oracle_trials() -> Iterator[Trial]:
    """Every method on every model, batch size, precision and device; sum reduction in float64.

    The method varies fastest, so the cached oracle of a case is reused before it is evicted.
    """
    for model, spec in MODELS.items():
        sizes = [(b, False) for b in spec.batch_sizes] + [(b, True) for b in spec.slow_batch_sizes]
        odd = _odd_batch_size(spec)
        for batch_size, slow in sizes:
            for precision in PRECISIONS:
                reductions = ("mean", "sum") if precision == "float64" and batch_size == odd else ("mean",)
                for device in devices_for(precision):
                    for reduction in reductions:
                        for method in METHODS:
                            if not _is_the_oracle(method, precision, device):
                                yield _light_or_slow(Trial(model, batch_size, precision, device, method, reduction, slow=slow))


def sum_trials() -> Iterator[Trial]:
    """The sum check: per-sample gradients of a sum-reduced loss add up to the batch gradient.

    It needs no loop, so it also covers each model's largest (slow) batch size.
    """
    for model, spec in MODELS.items():
        sizes = [(max(spec.batch_sizes), False)] + [(b, True) for b in spec.slow_batch_sizes]
        for batch_size, slow in sizes:
            for device in DEVICES:
                for method in METHODS:
                    yield _light_or_slow(Trial(model, batch_size, "float32", device, method, "sum", slow=slow))


def quantity_trials(quantity: str) -> Iterator[Trial]:
    """A quantity other than the gradients (``norms``, ``clipped``) on every model, at its odd batch size.

    Methods that return the quantity themselves (Opacus' ghost clipping and DPOptimizer,
    BackPACK's BatchL2Grad) run in every precision, and with both loss reductions in float64.
    For per-sample-gradient methods the harness derives the quantity from their gradients, so
    they run once, in float64 with a mean loss (the float32 precision of their gradients and the
    sum-reduced case are the gradient trials'). On a heavy model (resnet18) these trials are slow.
    """
    for model, spec in MODELS.items():
        batch_size = _odd_batch_size(spec)
        if batch_size is None:
            continue
        for precision in PRECISIONS:
            if PRECISIONS[precision].zoo_gradients_only:
                continue
            reductions = ("mean", "sum") if precision == "float64" else ("mean",)
            for device in devices_for(precision):
                for reduction in reductions:
                    for method in methods_for(quantity):
                        if _is_the_oracle(method, precision, device):
                            continue
                        if quantity in gives_itself(method) or (precision == "float64" and reduction == "mean"):
                            trial = Trial(model, batch_size, precision, device, method, reduction, quantity, spec.heavy)
                            yield _light_or_slow(trial)


def empty_batch_trials() -> Iterator[Trial]:
    """Every method on every model's empty batch (B=0, which Poisson sampling draws now and then),
    in float64 with both loss reductions: its per-sample gradients, and the norms and clipped step
    of the methods that return them themselves (derived ones add nothing on no samples). On a
    heavy model (resnet18) these trials are slow."""
    for model, spec in MODELS.items():
        for reduction in LOSS_REDUCTIONS:
            for quantity in QUANTITIES:
                for method in METHODS if quantity == "grads" else own_methods(quantity):
                    if not _is_the_oracle(method, "float64", "cpu"):
                        trial = Trial(model, 0, "float64", "cpu", method, reduction, quantity, spec.heavy)
                        yield _light_or_slow(trial)


def batching_rule_trials() -> Iterator[Trial]:
    """One vmap run per model and device, with the slow per-sample fallback turned into an error."""
    for model, spec in MODELS.items():
        for device in DEVICES:
            yield Trial(model, max(spec.batch_sizes), "float32", device, check="batching-rule")


def property_trials() -> Iterator[PropertyTrial]:
    """Every method on every drawn layer strategy, in every precision and device.

    The method varies fastest: under a derandomized profile each method's test draws the
    same problems, so their cached oracles are reused.
    """
    from harness.problems.strategies import LAYER_STRATEGIES

    for layer in LAYER_STRATEGIES:
        for precision in PRECISIONS:
            if PRECISIONS[precision].zoo_gradients_only:
                continue
            for device in devices_for(precision):
                for method in METHODS:
                    if method not in HEAVY_METHODS and not _is_the_oracle(method, precision, device):
                        yield PropertyTrial(layer, precision, device, method)
    yield from drawn_quantity_trials()


#: The drawn layer kind whose norms and clipped step the default run checks; the others are ``slow``.
DEFAULT_DRAWN_QUANTITY_LAYER = "conv2d"


def drawn_quantity_trials() -> Iterator[PropertyTrial]:
    """The norms and the clipped step on drawn layers, for the methods that return them themselves
    (their own computation, not one derived from per-sample gradients), in float64 on each device:
    on one layer kind in the default run, on every kind under ``slow``."""
    from harness.problems.strategies import LAYER_STRATEGIES

    for quantity in QUANTITIES:
        if quantity == "grads":
            continue
        for layer in LAYER_STRATEGIES:
            for device in devices_for("float64"):
                for method in own_methods(quantity):
                    slow = layer != DEFAULT_DRAWN_QUANTITY_LAYER
                    yield PropertyTrial(layer, "float64", device, method, slow=slow, check=quantity)


#: Every grid of the correctness suite, by the name a test file asks for it with.
GRIDS = {
    "oracle": oracle_trials,
    "sum": sum_trials,
    "batching-rule": batching_rule_trials,
    "norms": lambda: quantity_trials("norms"),
    "clipped": lambda: quantity_trials("clipped"),
    "empty-batch": empty_batch_trials,
    "property": property_trials,
}
