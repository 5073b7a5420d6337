"""Float32 checks have teeth: an error of 1% that only float32 has is caught on every zoo model,
those with ReLU and max-pool kinks included (where the norm-wise bound is 5%), by the check of
the error along the reference. The bfloat16 tier (autocast) catches gross errors."""

from __future__ import annotations

import pytest
import torch

from harness.checking.checks import check_against_oracle
from harness.checking.trials import Trial
from harness.core.errors import ToleranceError
from harness.core.releases import autocast_state
from harness.methods import BUILT_IN, get_method
from harness.problems.zoo import MODELS

#: The zoo as shipped (self-tests register models of their own), each at its smallest batch above one.
ZOO = [(name, min(b for b in MODELS[name].batch_sizes if b > 1)) for name in MODELS if not name.startswith("selftest")]


def float32_only(transform):
    """A method that is the loop in float64 and the loop damaged by ``transform`` in float32."""
    loop = get_method("loop")

    def fn(case):
        grads = loop(case)
        return transform(grads) if case.dtype == torch.float32 else grads

    return fn


@pytest.mark.parametrize("model, batch_size", ZOO, ids=[name for name, _ in ZOO])
def test_a_one_percent_scale_in_float32_only_fails_every_zoo_model(method, model, batch_size):
    """Smooth models' norm-wise bound (1e-5) catches it; on those with kinks (5e-2) the check along
    the reference does."""
    method(float32_only(lambda g: {k: v * 1.01 for k, v in g.items()}))
    assert check_against_oracle(Trial(model, batch_size, "float64", "cpu", "selftest")).ok
    if MODELS[model].numerics == "kinks":
        caught = r"along it: at .* = \+1\.00\de-02 over the batch \(the result is \+1\.00% along it\)"
    else:
        caught = r"differs from the reference: worst at .*relative 1\.000e-02"
    with pytest.raises(ToleranceError, match=caught):
        check_against_oracle(Trial(model, batch_size, "float32", "cpu", "selftest"))


@pytest.mark.parametrize("model, batch_size", [("simple_cnn", 64), ("resnet18_gn", 3), ("conv1d", 7)])
def test_one_percent_off_on_one_layer_in_float32_is_caught(method, model, batch_size):
    first = next(iter(dict(MODELS[model].build().named_parameters())))
    method(float32_only(lambda g: {k: v * 1.01 if k == first else v for k, v in g.items()}))
    with pytest.raises(ToleranceError, match=rf"along it: at {first}, "):
        check_against_oracle(Trial(model, batch_size, "float32", "cpu", "selftest"))


def test_a_scale_below_the_bound_along_the_reference_passes_on_a_model_with_kinks(method):
    """The bound (2e-3) is the smallest error caught there: 0.1% passes, as rounding and kinks do."""
    method(float32_only(lambda g: {k: v * 1.001 for k, v in g.items()}))
    assert check_against_oracle(Trial("simple_cnn", 64, "float32", "cpu", "selftest")).ok


def test_backpacks_grouped_convolution_norms_are_caught_in_float32_too():
    assert "backpack" in BUILT_IN
    with pytest.raises(ToleranceError, match=r"per-sample gradient norms, differs from the reference along it: at \|\|g\|\|"):
        check_against_oracle(Trial("conv1d", 7, "float32", "cpu", "backpack", check="norms"))


@pytest.mark.parametrize("model, batch_size", ZOO, ids=[name for name, _ in ZOO])
def test_bf16_catches_per_sample_gradients_divided_by_the_batch_size_on_every_zoo_model(method, model, batch_size):
    """The mistake of a method that forgets to undo a mean reduction, under autocast to bfloat16."""
    loop = get_method("loop")
    method(lambda case: {k: v / case.batch_size for k, v in loop(case).items()})
    with pytest.raises(ToleranceError, match="differs from the reference"):
        check_against_oracle(Trial(model, batch_size, "bf16", "cpu", "selftest"))


def test_bf16_runs_the_method_under_autocast(method):
    seen = []

    def spy(case):
        seen.append(autocast_state("cpu"))
        return get_method("loop")(case)

    method(spy)
    check_against_oracle(Trial("mlp", 7, "bf16", "cpu", "selftest"))
    assert seen == [(True, torch.bfloat16)]
    assert not autocast_state("cpu")[0]
