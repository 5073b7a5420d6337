"""The model features' contract: frozen parameters get nothing and are left untouched, and an empty
batch gets well-formed empty results; a method that breaks either is named."""

from __future__ import annotations

import pytest
import torch

from harness import MethodLeftState, MethodOutputError, get_method
from harness.checking.checks import check_against_oracle, check_empty_batch
from harness.checking.trials import Trial
from harness.core.errors import ToleranceError
from harness.problems.build import build_case
from harness.reference.oracle import oracle

FROZEN = Trial("frozen_mlp", 7, "float64", "cpu", method="selftest")
#: The frozen_mlp parameters that require no gradient.
FROZEN_NAMES = ("0.weight", "0.bias", "4.bias")


def test_the_oracle_gives_the_trainable_parameters_only():
    grads = oracle("frozen_mlp", 7)
    assert set(grads) == {"2.weight", "2.bias", "4.weight"}
    assert all(g.abs().sum() > 0 for g in grads.values())


def _with_frozen_grads(case):
    """vmap's correct trainable gradients plus zeros for the frozen parameters."""
    grads = dict(get_method("vmap")(case))
    frozen = {n: torch.zeros(case.batch_size, *p.shape, dtype=p.dtype) for n, p in case.model.named_parameters() if n in FROZEN_NAMES}
    return {**grads, **frozen}


def _unfreeze(case):
    case.model[0].weight.requires_grad_(True)
    return {n: g for n, g in get_method("vmap")(case).items() if n != "0.weight"}


def _step_on_frozen(case):
    with torch.no_grad():
        case.model[0].bias.add_(1.0)
    return get_method("vmap")(case)


@pytest.mark.parametrize(
    "fn, error, pattern",
    [
        (_with_frozen_grads, MethodOutputError, r"gradients for frozen parameters \(requires_grad=False\): 0\.weight, 0\.bias, 4\.bias"),
        (_unfreeze, MethodLeftState, r"requires_grad changed on 0\.weight"),
        (_step_on_frozen, MethodLeftState, r"values changed: 0\.bias"),
    ],
    ids=["grads-for-frozen", "unfrozen", "frozen-changed"],
)
def test_a_method_that_touches_frozen_parameters_is_named(method, fn, error, pattern):
    method(fn)
    with pytest.raises(error, match=pattern):
        check_against_oracle(FROZEN)


def test_a_wrong_trainable_gradient_next_to_frozen_ones_is_caught(method):
    def zero_the_middle_layer(case):
        return {n: g * 0 if n == "2.weight" else g for n, g in get_method("vmap")(case).items()}

    method(zero_the_middle_layer)
    with pytest.raises(ToleranceError, match=r"worst at 2\.weight"):
        check_against_oracle(FROZEN)


EMPTY = Trial("mlp", 0, "float64", "cpu", method="selftest")


def test_an_empty_batch_builds_and_the_loop_returns_empty_gradients():
    case = build_case("mlp", 0)
    assert case.inputs.shape == (0, 20) and case.targets.shape == (0,)
    assert all(g.shape == (0, *p.shape) for (_, p), g in zip(case.model.named_parameters(), oracle("mlp", 0).values(), strict=True))


@pytest.mark.parametrize(
    "fn, pattern",
    [
        (lambda case: {n: torch.zeros(1, *p.shape, dtype=p.dtype) for n, p in case.model.named_parameters()}, r"expected \(0, 32, 20\)"),
        (lambda case: {}, r"returned no gradient for 0\.weight"),
    ],
    ids=["a-row-of-zeros", "nothing"],
)
def test_a_malformed_empty_result_is_named(method, fn, pattern):
    method(fn)
    with pytest.raises(MethodOutputError, match=pattern):
        check_empty_batch(EMPTY)


def test_an_empty_clipped_step_must_be_zero(method):
    method(lambda case: {n: torch.ones_like(p) for n, p in case.model.named_parameters()}, returns="clipped")
    with pytest.raises(ToleranceError, match=r"clipped step with C = 1 \(0 of 0 samples clipped\)"):
        check_empty_batch(Trial("mlp", 0, "float64", "cpu", method="selftest", check="clipped"))
