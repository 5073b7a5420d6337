"""The harness catches what it is for: known-wrong methods are rejected with a message that says why."""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from harness import (
    MODELS,
    MethodFailed,
    MethodLeftState,
    MethodOutputError,
    MethodUnavailable,
    ModelBroken,
    ModelSpec,
    ToleranceError,
    check_method,
    get_method,
    register_method,
    register_model,
)
from harness.checking.checks import as_expected, check_against_oracle, check_batching_rules, check_sum
from harness.checking.support import ZooFailure, add_expected_failures, remove_expected_failures
from harness.checking.trials import GRIDS, Trial
from harness.core.errors import HarnessError, UnexpectedFailure
from harness.methods import registered
from harness.problems.zoo import vectors

TRIAL = Trial("mlp", 7, "float64", "cpu", method="selftest")


def vmap_then(transform):
    """A method that computes the correct vmap result, then damages it with ``transform``."""

    def fn(case):
        return transform(dict(get_method("vmap")(case)), case)

    return fn


@pytest.mark.parametrize(
    "name, transform, pattern",
    [
        ("scaled by 1/B", lambda g, c: {k: v / c.batch_size for k, v in g.items()}, r"relative 8\.571e-01"),
        ("scaled by 1+1e-7", lambda g, c: {k: v * (1 + 1e-7) for k, v in g.items()}, r"relative 1\.000e-07"),
        ("samples swapped", lambda g, c: {k: v.roll(1, dims=0) for k, v in g.items()}, r"worst at .*, sample \d"),
        (
            "batch sum instead of per-sample",
            lambda g, c: {k: v.sum(0, keepdim=True).expand_as(v) for k, v in g.items()},
            r"differs from the reference",
        ),
        (
            "one sample zeroed",
            lambda g, c: {k: torch.cat([v[:3], torch.zeros_like(v[3:4]), v[4:]]) for k, v in g.items()},
            r"sample 3: .*relative 1\.000e\+00",
        ),
    ],
    ids=["scaled-1-over-B", "scaled-1e-7", "samples-swapped", "batch-sum", "sample-zeroed"],
)
def test_wrong_values_are_caught(method, name, transform, pattern):
    method(vmap_then(transform))
    with pytest.raises(ToleranceError) as info:
        check_against_oracle(TRIAL)
    message = str(info.value)
    assert "method 'selftest' on cpu-float64-mlp-B7 differs from the reference" in message
    assert re.search(pattern, message), message
    assert "bound" in message and "atol" in message and "rtol" in message


@pytest.mark.parametrize(
    "transform, error, pattern",
    [
        (lambda g, c: {k: v for k, v in g.items() if k != "2.bias"}, MethodOutputError, r"returned no gradient for 2\.bias$"),
        (lambda g, c: {**g, "extra.weight": g["0.bias"]}, MethodOutputError, r"not parameters of the model: extra\.weight"),
        (
            lambda g, c: {**g, "0.weight": g["0.weight"][0]},
            MethodOutputError,
            r"returned shape \(32, 20\) for 0\.weight, expected \(7, 32, 20\)",
        ),
        (
            lambda g, c: {**g, "4.bias": g["4.bias"].index_fill(0, torch.tensor([2]), float("nan"))},
            MethodOutputError,
            r"non-finite values for 4\.bias at samples \[2\]",
        ),
        (lambda g, c: list(g.values()), MethodOutputError, r"returned a list, expected a dict"),
        (lambda g, c: {**g, "0.bias": g["0.bias"].tolist()}, MethodOutputError, r"returned a list for 0\.bias"),
        (
            lambda g, c: {**g, "2.weight": g["2.weight"].float()},
            MethodOutputError,
            r"returned 2\.weight in float32, less precise than the case's float64$",
        ),
    ],
    ids=["missing", "extra", "wrong-shape", "nan", "not-a-dict", "not-a-tensor", "less-precise"],
)
def test_wrong_structure_is_named(method, transform, error, pattern):
    method(vmap_then(transform))
    with pytest.raises(error, match=pattern):
        check_against_oracle(TRIAL)


def test_a_method_that_raises_is_named(method):
    def broken(case):
        raise RuntimeError("boom")

    method(broken)
    with pytest.raises(MethodFailed, match=r"method 'selftest' on cpu-float64-mlp-B7 raised RuntimeError: boom"):
        check_against_oracle(TRIAL)


def _leave_grad(case):
    result = get_method("vmap")(case)
    case.model[0].bias.grad = torch.ones_like(case.model[0].bias)
    return result


def _leave_hook(case):
    case.model[0].register_forward_hook(lambda *args: None)
    return get_method("vmap")(case)


def _leave_attribute(case):
    case.model[0].weight.grad_sample = torch.zeros(1)
    return get_method("vmap")(case)


def _change_values(case):
    result = get_method("vmap")(case)
    with torch.no_grad():
        case.model[2].weight.mul_(2)
    return result


def _switch_mode(case):
    case.model.eval()
    return get_method("vmap")(case)


@pytest.mark.parametrize(
    "fn, pattern",
    [
        (_leave_grad, r"\.grad set on 0\.bias"),
        (_leave_hook, r"hooks added or removed"),
        (_leave_attribute, r"attributes grad_sample on parameters"),
        (_change_values, r"values changed: 2\.weight"),
        (_switch_mode, r"train/eval mode changed"),
    ],
    ids=["grad", "hook", "attribute", "values", "mode"],
)
def test_state_left_on_the_model_is_caught(method, fn, pattern):
    method(fn)
    with pytest.raises(MethodLeftState, match=r"method 'selftest' on cpu-float64-mlp-B7 left state behind.*" + pattern):
        check_against_oracle(TRIAL)


@pytest.fixture
def linear_model():
    """A one-layer softmax regression, whose per-sample gradients have a closed form."""
    spec = register_model(ModelSpec("selftest_linear", lambda: nn.Linear(6, 4), vectors(6, classes=4)))
    yield spec
    MODELS.pop(spec.name)


def closed_form(case):
    """Per-sample gradients of cross-entropy over a Linear layer, by hand: (softmax - onehot) x^T."""
    layer = case.model
    with torch.no_grad():
        delta = F.softmax(layer(case.inputs), dim=1) - F.one_hot(case.targets, 4).to(case.dtype)
    return {"weight": torch.einsum("bi,bj->bij", delta, case.inputs), "bias": delta}


@pytest.mark.parametrize("precision", ["float64", "float32"])
def test_an_independent_correct_method_passes(method, linear_model, precision):
    method(closed_form)
    comparison = check_against_oracle(Trial("selftest_linear", 5, precision, "cpu", method="selftest"))
    assert comparison.ok


def test_a_model_registered_anew_under_its_name_gets_its_own_oracle(linear_model):
    """The oracle is cached per model, and specs of one name are equal: replaced, or removed and
    registered again (as the fixtures of these tests do), a model must not get the old oracle."""
    trial = Trial("selftest_linear", 5, "float64", "cpu", method="vmap")
    assert check_against_oracle(trial).ok
    wider = dataclasses.replace(linear_model, build=lambda: nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 4)))
    register_model(wider, replace=True)
    assert check_against_oracle(trial).ok
    MODELS.pop(wider.name)
    register_model(linear_model)
    assert check_against_oracle(trial).ok


def test_unknown_method_and_model_are_named():
    with pytest.raises(KeyError, match=r"unknown method 'nope'; registered methods: loop, vmap"):
        get_method("nope")
    with pytest.raises(KeyError, match=r"unknown model 'nope'; known models: .*simple_cnn"):
        Trial("nope", 1, "float64", "cpu").build()


def test_registration_refuses_silent_replacement(method):
    method(closed_form)
    with pytest.raises(ValueError, match="already registered"):
        register_method("selftest", closed_form)
    with pytest.raises(ValueError, match="becomes part of test ids"):
        register_method("has space", closed_form)
    register_method("selftest", vmap_then(lambda g, c: g), replace=True)


def test_a_different_failure_than_the_matrix_expects_is_not_an_xfail():
    row = ZooFailure(methods=("x",), models=("y",), error="the documented error", reason="because")
    with pytest.raises(UnexpectedFailure, match="expected the support-matrix failure /the documented error/"):
        with as_expected(row):
            raise MethodFailed("something else broke")
    with pytest.raises(MethodFailed):
        with as_expected(row):
            raise MethodFailed("it raised the documented error")


class WithUnusedLayer(nn.Module):
    """A Linear classifier carrying a layer that the forward never calls."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 4)
        self.unused = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


@pytest.fixture
def zoo_extras():
    """Temporary zoo entries: a model with an unused layer, and the MLP in eval mode."""
    specs = [
        register_model(ModelSpec("selftest_unused", WithUnusedLayer, vectors(6, classes=4))),
        register_model(ModelSpec("selftest_mlp_eval", MODELS["mlp"].build, MODELS["mlp"].make_batch, train_mode=False)),
    ]
    yield
    for spec in specs:
        MODELS.pop(spec.name)


@pytest.mark.parametrize("opacus_method", ["opacus-hooks", "opacus-functorch"])
def test_opacus_recording_nothing_is_named_not_a_key_error(zoo_extras, opacus_method):
    """Opacus leaves ``grad_sample`` unset where it recorded nothing, and refuses eval mode."""
    unused = Trial("selftest_unused", 3, "float64", "cpu", method=opacus_method)
    with pytest.raises(MethodOutputError, match=rf"'{opacus_method}' on .* returned no gradient for unused\.weight, unused\.bias$"):
        check_against_oracle(unused)
    eval_mode = Trial("selftest_mlp_eval", 3, "float64", "cpu", method=opacus_method)
    with pytest.raises(MethodFailed, match=rf"'{opacus_method}' on .* raised ValueError: No activations detected"):
        check_against_oracle(eval_mode)
    assert check_against_oracle(Trial("selftest_unused", 3, "float64", "cpu", method="vmap")).ok


def _grouped_conv_weights_off(grads, case):
    """Right everywhere except the weights of grouped convolutions, which are 0.1% too large."""
    grouped = {f"{name}.weight" for name, m in case.model.named_modules() if getattr(m, "groups", 1) > 1}
    return {k: v * 1.001 if k in grouped else v for k, v in grads.items()}


def _conv_bias_dropped(grads, case):
    """Right everywhere except that convolution biases get no gradient."""
    conv_bias = {f"{name}.bias" for name, m in case.model.named_modules() if isinstance(m, nn.Conv2d)}
    return {k: torch.zeros_like(v) if k in conv_bias else v for k, v in grads.items()}


@pytest.mark.parametrize(
    "transform, clue",
    [(_grouped_conv_weights_off, r"\('groups', [23]\)"), (_conv_bias_dropped, r"\('bias', True\)")],
    ids=["wrong-only-for-groups", "drops-conv-bias"],
)
def test_property_suite_catches_a_subtly_wrong_method(method, transform, clue):
    """The property suite draws the configuration that exposes it, and prints it."""
    from harness.checking.checks import check_property
    from harness.checking.trials import PropertyTrial

    method(vmap_then(transform))
    # enough examples that a random draw misses groups > 1 (or a bias) with probability < 1e-8
    with pytest.raises(ToleranceError, match=r"method 'selftest' on cpu-float64-conv2d-B\d+ differs") as info:
        check_property(PropertyTrial("conv2d", "float64", "cpu", "selftest"), min_examples=30)
    drawn = "\n".join(getattr(info.value, "__notes__", []))
    assert "Problem(layers=(Layer(kind='conv2d'" in drawn, drawn
    assert re.search(clue, drawn), drawn


def test_a_method_unavailable_for_some_drawn_examples_is_judged_on_the_others(method):
    """MethodUnavailable raised for one drawn configuration (a dilated conv2d) skips that example
    only; the test is skipped only where the method could run none."""
    from harness.checking.checks import check_property, check_property_trial
    from harness.checking.trials import PropertyTrial

    def no_dilation(case):
        if any(getattr(m, "dilation", (1, 1)) != (1, 1) for m in case.model.modules()):
            raise MethodUnavailable("no dilated convolutions")
        return get_method("vmap")(case)

    method(no_dilation)
    trial = PropertyTrial("conv2d", "float64", "cpu", "selftest")
    outcomes = check_property(trial, min_examples=30)
    assert any(isinstance(o, MethodUnavailable) for o in outcomes) and None in outcomes, outcomes
    check_property_trial(trial)

    def never(case):
        raise MethodUnavailable("needs a library that is not installed")

    method(never)
    with pytest.raises(MethodUnavailable, match=r"could run none of the \d+ drawn conv2d examples: .* needs a library that is not installed"):
        check_property_trial(trial)


def test_check_method_reports_what_the_suite_would(method):
    """harness.check_method: the same trials, statuses and messages as the tests, without pytest."""
    from harness import check_method

    report = check_method("vmap", grids=["oracle", "norms"], models=["mlp", "lstm_text"])
    assert report.ok and report.counts().get("passed") and not report.failures, str(report)
    assert "xfailed" in report.counts(), "vmap's float64 LSTM row is not applied"  # support row 1

    def scaled(case):
        return {name: 1.5 * g for name, g in get_method("vmap")(case).items()}

    assert check_method(get_method("vmap"), name="right", grids=["oracle"], models=["mlp"]).ok
    report = check_method(scaled, grids=["oracle"], models=["mlp"])
    assert not report.ok and report.method == "scaled", str(report)
    assert "FAILED   oracle[cpu-float64-mlp-B7-scaled]: ToleranceError: method 'scaled' on cpu-float64-mlp-B7 " \
        "differs from the reference" in str(report), report
    assert "scaled" not in registered(), "check_method left its method registered"
    with pytest.raises(ValueError, match="a method named 'vmap' is registered already"):
        check_method(scaled, name="vmap")
    with pytest.raises(KeyError, match="unknown method 'nope'"):
        check_method("nope")


def test_check_method_names_an_unknown_model_or_grid():
    """A misspelled name is an error that lists the known ones, not a report of the trials it left."""
    from harness import check_method

    with pytest.raises(ValueError, match=r"check_method: unknown models \['mlpp'\]; known: simple_cnn, .*, mlp, "):
        check_method("vmap", models=["mlpp", "mlp"])
    with pytest.raises(ValueError, match=r"check_method: unknown grids \['oracel'\]; known: oracle, sum, "):
        check_method("vmap", grids=["oracel"])
    with pytest.raises(TypeError, match=r"models takes a list of names, got the string 'mlp'"):
        check_method("vmap", models="mlp")

    def mine(case):
        return get_method("vmap")(case)

    with pytest.raises(ValueError, match=r"unknown models \['mlpp'\]"):
        check_method(mine, models=["mlpp"])
    assert "mine" not in registered()


@pytest.mark.parametrize(
    "fields, message",
    [
        # torch 2.15 names the operator first ("addmm: mat1 and mat2 shapes ...")
        ({"build": lambda: nn.Linear(5, 4)}, r"its forward on a batch of 7 raised RuntimeError: (addmm: )?mat1 and mat2 shapes"),
        (
            {"make_batch": lambda b, g: (torch.randn(b, 6, generator=g),)},
            r"drawing its batch raised ValueError: make_batch returned tuple \(7, 6\), expected \(inputs, targets\)",
        ),
        (
            {"make_batch": lambda b, g: (torch.randn(b + 1, 6, generator=g), torch.randint(4, (b + 1,), generator=g))},
            r"drawing its batch raised ValueError: make_batch\(7\) returned shapes \(8, 6\), \(8,\): both need 7 rows",
        ),
        ({"loss": lambda out, y, reduction: out.sum(1)}, r"its loss on a batch of 7 is of shape \(7,\), expected a finite scalar"),
        (
            {"build": lambda: nn.Sequential(nn.Linear(6, 4), nn.BatchNorm1d(4))},
            r"its forward on one sample \(as the loop runs it\) raised ValueError: Expected more than 1 value per channel",
        ),
    ],
    ids=["forward", "not-a-pair", "wrong-rows", "loss-not-scalar", "one-sample"],
)
def test_a_model_that_cannot_run_on_its_inputs_is_named_once_not_blamed_on_methods(method, fields, message):
    """Checked once, when first used: every check on it fails with the model's error, before any
    method runs, and a support-matrix row covering the cell does not turn it into an xfail."""
    builds, ran = [], []
    broken = {"build": lambda: nn.Linear(6, 4), "make_batch": vectors(6, classes=4), **fields}
    build = broken.pop("build")
    spec = register_model(ModelSpec("selftest_broken", build=lambda: builds.append(1) or build(), **broken))
    method(lambda case: ran.append(case.id) or get_method("vmap")(case))
    row = ZooFailure(methods=("selftest",), models=("selftest_broken",), error="", reason="covers every failure")
    add_expected_failures(row)
    try:
        full = rf"^model 'selftest_broken' cannot run on its own inputs \(float64, CPU\): {message}"
        for check, grid in ((check_against_oracle, "oracle"), (check_sum, "sum"), (check_batching_rules, "batching-rule")):
            trial = next(t for t in GRIDS[grid]() if t.model == "selftest_broken" and t.method in ("selftest", None))
            with pytest.raises(ModelBroken, match=full) as info:
                check(trial)
            assert not isinstance(info.value, HarnessError), "a strict xfail (raises=HarnessError) would swallow it"
        report = check_method("selftest", grids=["oracle"], models=["selftest_broken"])
        assert report.counts()["failed"] >= 7 and report.counts().keys() <= {"failed", "skipped"}, str(report)  # skipped: CUDA
        assert all(o.message.startswith("ModelBroken: model 'selftest_broken'") for o in report.failures), str(report)
        assert not ran, "a method ran on the broken model"
        assert len(builds) == 1, "the model was checked more than once"
        fixed = ModelSpec("selftest_broken", lambda: nn.Linear(6, 4), vectors(6, classes=4))
        register_model(fixed, replace=True)
        assert check_against_oracle(Trial("selftest_broken", 7, "float64", "cpu", method="selftest")).ok, (
            "a model registered anew is checked anew"
        )
    finally:
        remove_expected_failures(row)
        MODELS.pop(spec.name)
