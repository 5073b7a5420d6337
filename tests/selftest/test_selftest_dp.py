"""The norms and clipped-step checks catch what they are for: right norms with a wrong clipped step,
clipping the batch gradient instead of each sample, wrong or malformed norms."""

from __future__ import annotations

import pytest
import torch

from harness import MethodOutputError, ToleranceError, get_method, register_method
from harness.checking.checks import check_against_oracle
from harness.checking.trials import Trial
from harness.core.clipping import clip_factors, clipped_count, clipped_sum, mid_bound, per_sample_norms

NORMS = Trial("mlp", 7, "float64", "cpu", method="selftest", check="norms")
CLIPPED = Trial("mlp", 7, "float64", "cpu", method="selftest", check="clipped")


def _grads(case):
    return get_method("vmap")(case)


def right_norms(case):
    return per_sample_norms(_grads(case)).to(case.dtype)


def right_step(case):
    return {k: v.to(case.dtype) for k, v in clipped_sum(_grads(case), case.max_grad_norm).items()}


def step_with_twice_the_bound(case):
    return {k: v.to(case.dtype) for k, v in clipped_sum(_grads(case), 2 * case.max_grad_norm).items()}


def step_clipping_the_batch_gradient(case):
    summed = {k: v.sum(dim=0, keepdim=True) for k, v in _grads(case).items()}
    return {k: v.to(case.dtype) for k, v in clipped_sum(summed, case.max_grad_norm).items()}


def step_without_the_declared_stabilizer(case):
    return right_step(case)


def test_a_right_norms_and_clipped_step_method_passes(method):
    method(right_norms, returns="norms")
    method(right_step, returns="clipped")
    assert check_against_oracle(NORMS).ok
    assert check_against_oracle(CLIPPED).ok


@pytest.mark.parametrize(
    "wrong_step",
    [step_with_twice_the_bound, step_clipping_the_batch_gradient],
    ids=["wrong-bound", "clips-batch-gradient"],
)
def test_right_norms_with_a_wrong_clipped_step_are_caught(method, wrong_step):
    method(right_norms, returns="norms")
    method(wrong_step, returns="clipped")
    assert check_against_oracle(NORMS).ok
    with pytest.raises(ToleranceError, match=r"'selftest' on cpu-float64-mlp-B7, clipped step with C = [\d.e+-]+ \(4 of 7 samples clipped\), differs"):
        check_against_oracle(CLIPPED)


def test_a_stabilizer_declared_but_not_used_is_caught(method):
    """Opacus' 1e-6 changes the step by about 1e-6 relative: far above the float64 bound."""
    method(step_without_the_declared_stabilizer, returns="clipped", clip_eps=1e-6)
    with pytest.raises(ToleranceError, match="clipped step"):
        check_against_oracle(CLIPPED)


@pytest.mark.parametrize(
    "wrong, error, pattern",
    [
        (lambda case: right_norms(case) ** 2, ToleranceError, r"per-sample gradient norms, differs from the reference: worst at \|\|g\|\|"),
        (lambda case: right_norms(case).roll(1), ToleranceError, r"worst at \|\|g\|\|, sample \d"),
        (lambda case: right_norms(case)[:, None], MethodOutputError, r"norms of shape \(7, 1\), expected \(7,\)"),
        (lambda case: -right_norms(case), MethodOutputError, r"negative norms at samples \[0, 1, 2"),
        (lambda case: right_norms(case).tolist(), MethodOutputError, r"returned a list, expected a tensor of per-sample norms"),
    ],
    ids=["squared", "swapped", "wrong-shape", "negative", "not-a-tensor"],
)
def test_wrong_norms_are_named(method, wrong, error, pattern):
    method(wrong, returns="norms")
    with pytest.raises(error, match=pattern):
        check_against_oracle(NORMS)


def test_a_clipped_step_with_wrong_shapes_is_named(method):
    method(lambda case: {k: v[None] for k, v in right_step(case).items()}, returns="clipped")
    with pytest.raises(MethodOutputError, match=r"returned shape \(1, 32, 20\) for 0\.weight, expected \(32, 20\) param\.shape"):
        check_against_oracle(CLIPPED)


def test_the_bound_clips_the_larger_half_only():
    norms = torch.tensor([3.0, 1.0, 7.0, 2.0, 5.0, 4.0, 6.0], dtype=torch.float64)
    bound = mid_bound(norms)
    assert bound == 3.5
    clipped = clip_factors(norms, bound) < 1
    assert int(clipped.sum()) == clipped_count(7) == 4 and bool((norms[clipped] > bound).all())
    with pytest.raises(ValueError, match="no bound splits"):
        mid_bound(torch.tensor([2.0, 2.0]))
    with pytest.raises(ValueError, match="no bound splits"):
        mid_bound(torch.tensor([2.0]))


def test_registration_names_bad_quantities(method):
    with pytest.raises(ValueError, match="returns must be one of grads, norms, clipped, got 'norm'"):
        register_method("selftest", right_norms, returns="norm")
    with pytest.raises(ValueError, match="clip_eps applies only to methods that return the clipped step"):
        register_method("selftest", right_norms, returns="norms", clip_eps=1e-6)
    with pytest.raises(KeyError, match="unknown norms method 'nope'; registered norms methods: .*opacus-ghost"):
        get_method("nope", returns="norms")
