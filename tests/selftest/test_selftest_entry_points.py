"""The entry-point and conversion checks catch what they are for: a step clipped at the wrong norm,
an accumulation that keeps only the last batch, state left on the model, a conversion that drops a
bias or swaps gates; and the step's verdict does not depend on the leftovers'."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import torch

from harness import MethodLeftState, ToleranceError
from harness.checking import conversions
from harness.checking.conversions import Conversion, check_forward, check_grads
from harness.checking.entry_points import EntryPointTrial, check_leftovers, check_step, entry_point_trials, train
from harness.checking.support import (
    CONVERSION_MATRIX,
    ENTRY_POINT_MATRIX,
    ConversionFailure,
    EntryPointFailure,
    add_expected_failures,
    apply_support_matrix,
    expected_entry_point_failure,
    remove_expected_failures,
)
from harness.core.releases import GHOST_CLIPPING, Versions
from harness.methods.opacus import PrivateTraining, dp_rnn


@pytest.fixture
def raw() -> Iterator[None]:
    """The support matrix off: every check reports what the library did."""
    apply_support_matrix(False)
    yield
    apply_support_matrix(True)


def at_twice_the_bound(private: PrivateTraining, path: str) -> list[torch.Tensor]:
    """Clipping at 2 C: the optimizer's bound, and ghost clipping's module's, which clips in its backward."""
    for holder in (private.optimizer, private.module):
        if hasattr(holder, "max_grad_norm"):
            holder.max_grad_norm *= 2
    return train(private, path)


def keeping_the_last_batch(private: PrivateTraining, path: str) -> list[torch.Tensor]:
    """Backward on each loader batch with the per-sample gradients of the ones before cleared."""
    seen = []
    for inputs, targets in private.data_loader:
        private.optimizer.zero_grad()
        private.backward(inputs, targets)
        seen.append(inputs)
    private.step()
    return seen


def leaving_a_hook(private: PrivateTraining, path: str) -> list[torch.Tensor]:
    seen = train(private, path)
    private.module._module.register_forward_hook(lambda module, inputs, output: None)
    return seen


def leaving_grad_sample(private: PrivateTraining, path: str) -> list[torch.Tensor]:
    seen = train(private, path)
    original = private.module.to_standard_module

    def to_standard_module() -> torch.nn.Module:
        model = original()
        for p in model.parameters():
            p.grad_sample = torch.zeros(1)
        return model

    private.module.to_standard_module = to_standard_module
    return seen


HOOKS = EntryPointTrial("mlp", "hooks")


def test_a_right_step_passes_where_the_leftovers_fail(raw):
    """The leftovers fail (summed_grad; grad_sample too before Opacus 1.2); the step's own test is not hidden by them."""
    assert check_step(HOOKS).ok
    with pytest.raises(MethodLeftState, match="attributes (grad_sample, )?summed_grad on parameters"):
        check_leftovers(EntryPointTrial("mlp", "hooks", check="leftovers"))


def test_unwrapped_the_model_is_cleaned_by_the_hooks_and_ew_is_a_skip(raw):
    from harness.core.errors import MethodUnavailable

    assert check_step(EntryPointTrial("mlp", "ghost", "unwrapped")).ok
    with pytest.raises(MethodLeftState, match=r"unwrapped, mean loss\), then cleanup\(\), left state behind on the model: attributes summed_grad"):
        check_leftovers(EntryPointTrial("mlp", "hooks", "unwrapped", "leftovers"))
    with pytest.raises(MethodUnavailable, match=r"has no wrap_model=False for 'ew': Unexpected grad_sample_mode: ew"):
        check_step(EntryPointTrial("mlp", "ew", "unwrapped"))


@pytest.mark.parametrize("mode", ["hooks", "ghost"])
def test_a_step_clipped_at_the_wrong_norm_is_caught(mode):
    with pytest.raises(ToleranceError, match=rf"make_private\(grad_sample_mode='{mode}'\) on mlp .* its step times 14 against the clipped step with C = "):
        check_step(EntryPointTrial("mlp", mode), training=at_twice_the_bound)


def test_a_poisson_step_divided_by_the_samples_drawn_is_caught(monkeypatch):
    trial = EntryPointTrial("mlp", "hooks", "poisson")
    torch.manual_seed(0)  # the suite's seed for every harness test: Poisson sampling draws samples 0, 1 and 2
    assert check_step(trial).ok
    torch.manual_seed(0)
    original = PrivateTraining.step

    def step_dividing_by_the_drawn(self: PrivateTraining) -> bool:
        self.optimizer.expected_batch_size = 3  # the three samples seed 0 draws, not the expected 2
        return original(self)

    monkeypatch.setattr(PrivateTraining, "step", step_dividing_by_the_drawn)
    with pytest.raises(ToleranceError, match=r"poisson, mean loss\), its step times 4 against the clipped step over the samples drawn, \[0, 1, 2\], with C = .* differs"):
        check_step(trial)


def test_an_accumulation_that_keeps_only_the_last_batch_is_caught():
    trial = EntryPointTrial("mlp", "hooks", "accumulate")
    assert check_step(trial).ok
    with pytest.raises(ToleranceError, match=r"accumulate, mean loss\), its step times 12 .* differs from the reference"):
        check_step(trial, training=keeping_the_last_batch)


@pytest.mark.parametrize(
    "training, left",
    [(leaving_a_hook, "hooks added or removed"), (leaving_grad_sample, "attributes grad_sample, summed_grad on parameters")],
    ids=["hook", "grad_sample"],
)
def test_state_left_behind_is_named(raw, training, left):
    with pytest.raises(MethodLeftState, match=re.escape(left)):
        check_leftovers(EntryPointTrial("mlp", "ew", check="leftovers"), training=training)


def test_a_mode_the_release_lacks_is_a_skip(monkeypatch):
    from harness.core import releases
    from harness.core.errors import MethodUnavailable
    from harness.methods import opacus

    absent = releases.Feature("PrivacyEngine.make_private(grad_sample_mode=...)", "opacus", "9.9", lambda: False)
    monkeypatch.setitem(opacus._MODE_NEEDS, "ghost", (absent,))
    with pytest.raises(MethodUnavailable, match=r"grad_sample_mode=\.\.\.\) needs Opacus 9.9; this is "):
        check_step(EntryPointTrial("mlp", "ghost"))


def test_a_model_the_method_cannot_run_is_its_zoo_row_first():
    """tied_lm under ghost clipping: make_private refuses it, whatever the path (the zoo's row), before
    the entry-point rows about accumulation or leftovers."""
    if missing := GHOST_CLIPPING.missing():
        pytest.skip(missing)
    for path, check in (("accumulate", "step"), ("one-batch", "leftovers")):
        row = expected_entry_point_failure("opacus-ghost", "tied_lm", path, check)
        assert row is not None and "Parameter tying" in row.error


def test_an_added_entry_point_row_comes_first():
    row = EntryPointFailure(methods=("opacus-hooks",), models=("mlp",), checks=("step",), error="e", reason="mine")
    add_expected_failures(row)
    try:
        assert expected_entry_point_failure("opacus-hooks", "mlp", "one-batch", "step") == row
    finally:
        remove_expected_failures(row)
    assert expected_entry_point_failure("opacus-hooks", "mlp", "one-batch", "step") is None


def _skip_outside_its_releases(row) -> None:
    if not row.holds_for(Versions.installed()):
        pytest.skip(f"the row holds for {row.scope()}, not the installed releases {Versions.installed()} on this CPU")


@pytest.mark.parametrize("row", ENTRY_POINT_MATRIX, ids=lambda row: f"{row.methods[0]}-{row.paths[0]}-{row.checks[0]}")
def test_every_entry_point_row_covers_a_trial(row):
    _skip_outside_its_releases(row)
    assert any(trial.expected == row for trial in entry_point_trials()), row


def _dropping_the_bias(module: torch.nn.RNN) -> torch.nn.Module:
    layer = dp_rnn(module)
    with torch.no_grad():
        for name, p in layer.named_parameters():
            if name.startswith("bias_ih"):
                p.zero_()
    return layer


def _swapping_the_directions(module: torch.nn.RNN) -> torch.nn.Module:
    """The forward direction's weights in the reverse direction's place, and the other way round."""
    layer = dp_rnn(module)
    suffix = "_reverse"
    state = module.state_dict()
    layer.load_state_dict({name.removesuffix(suffix) if name.endswith(suffix) else name + suffix: t for name, t in state.items()})
    return layer


RNN = Conversion("rnn", (("input_size", 3), ("hidden_size", 4), ("bidirectional", True)))


@pytest.mark.parametrize("wrong", [_dropping_the_bias, _swapping_the_directions], ids=["bias-dropped", "directions-swapped"])
@pytest.mark.parametrize("check", [check_forward, check_grads], ids=["forward", "grads"])
def test_a_conversion_that_changes_the_function_is_caught(monkeypatch, wrong, check):
    assert check(RNN).ok
    monkeypatch.setitem(conversions.CONVERTERS, "rnn", wrong)
    with pytest.raises(ToleranceError, match=r"Opacus' conversion of rnn-bidirectional( in float64)?, (its outputs|per-sample gradients), differs"):
        check(RNN)


@pytest.mark.parametrize("row", CONVERSION_MATRIX, ids=lambda row: f"{row.conversions[0]}-{row.error[:20]}")
def test_every_conversion_row_covers_a_conversion(row):
    """Each row is the first to cover some conversion, unless on the installed releases an earlier
    row takes every conversion it covers (Opacus before 1.5.3 on torch 2.6 fails every fix first)."""
    _skip_outside_its_releases(row)
    installed = Versions.installed()
    covered = [
        (c, check)
        for c in conversions.conversions()
        for check in row.checks
        if row.applies(c.kind, c.arguments, check, "float64", installed)
    ]
    assert covered, f"the row covers no conversion: {row}"
    firsts = {c.expected(check) for c, check in covered}
    if row not in firsts:
        earlier = "; ".join(sorted(first.error for first in firsts))
        pytest.skip(f"on {installed} an earlier row takes every conversion this one covers (error {earlier!r})")


def test_an_added_conversion_row_comes_first():
    row = ConversionFailure(methods=("opacus",), conversions=("lstm",), error="e", reason="mine")
    add_expected_failures(row)
    try:
        assert conversions.conversions()[0].expected("forward") == row
    finally:
        remove_expected_failures(row)
