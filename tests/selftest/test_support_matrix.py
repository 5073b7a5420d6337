"""The support matrix and the tolerance table are well formed and every row is used."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest
import torch
from hypothesis import find, settings
from hypothesis.errors import NoSuchExample

from harness.checking.support import (
    SUPPORT_MATRIX,
    DrawnFailure,
    ExpectedFailure,
    ZooFailure,
    add_expected_failures,
    apply_support_matrix,
    expected_failure,
    expected_failure_drawn,
    remove_expected_failures,
)
from harness.checking.support.rows import _hit
from harness.checking.trials import GRIDS, Trial
from harness.core.precision import PRECISIONS
from harness.core.releases import Versions
from harness.core.tolerances import NUMERICS, TOLERANCES, tolerance_for
from harness.problems.drawn import Layer, Problem
from harness.problems.strategies import LAYER_STRATEGIES

#: How hard a row's coverage is searched for among a strategy's draws (a row's ``when`` may
#: accept few of them); derandomized, so the verdict is the same on every run.
SEARCH = settings(max_examples=500, derandomize=True, database=None)


def _row_id(row: ExpectedFailure) -> str:
    subject = row.models if isinstance(row, ZooFailure) else row.layers
    return f"{type(row).__name__}-{row.methods[0]}-{subject[0]}-{row.precisions[0]}"


@pytest.mark.parametrize("row", SUPPORT_MATRIX, ids=_row_id)
def test_every_row_covers_something_and_says_why(row):
    assert row.reason
    re.compile(row.error)
    if not row.holds_for(Versions.installed()):
        pytest.skip(f"the row holds for {row.scope()}, not the installed releases {Versions.installed()} on this CPU: tox covers the others")
    if isinstance(row, ZooFailure):
        trials = [trial for grid in GRIDS.values() for trial in grid()]
        assert any(trial.expected == row for trial in trials), f"no trial of the grids is covered by {row}"
    else:
        assert _draws_a_covered_layer(row), f"no property trial on the CPU can draw a layer covered by {row}"


def _draws_a_covered_layer(row: DrawnFailure) -> bool:
    """Whether some property trial on the CPU can draw a layer the row covers, ``when`` included:
    Hypothesis searches the layer strategy of each trial whose method and precision the row
    names (a strategy of one kind only where the row names that kind)."""
    covered_trials = [
        trial
        for trial in GRIDS["property"]()
        if trial.device == "cpu"
        and trial.check in row.checks
        and row._covers(trial.method, trial.precision, "cpu", torch.__version__)
    ]
    for strategy in dict.fromkeys(trial.layer for trial in covered_trials):
        if strategy != "stack" and not _hit(strategy, row.layers):
            continue
        trial = next(trial for trial in covered_trials if trial.layer == strategy)
        try:
            find(
                LAYER_STRATEGIES[strategy],
                lambda layers, trial=trial: any(
                    row.applies(trial.method, layer, trial.precision, "cpu", torch.__version__, trial.check)
                    for layer in layers
                ),
                settings=SEARCH,
            )
        except NoSuchExample:
            continue
        return True
    return False


def test_a_drawn_row_that_no_draw_meets_is_caught():
    row = DrawnFailure(methods=("backpack",), layers=("conv_transpose2d",), error="e", reason="r")
    assert _draws_a_covered_layer(row)
    assert not _draws_a_covered_layer(dataclasses.replace(row, when=lambda layer: max(layer.each("output_padding")) > 99))
    assert not _draws_a_covered_layer(dataclasses.replace(row, methods=("no-such-method",)))


def test_each_kind_of_row_refuses_what_it_cannot_honour():
    with pytest.raises(TypeError, match="when"):
        ZooFailure(methods=("vmap",), models=("mlp",), error="e", reason="r", when=lambda layer: True)
    with pytest.raises(ValueError, match=r"unknown checks \['batching-rule'\]"):
        DrawnFailure(methods=("vmap",), layers=("conv2d",), error="e", reason="r", checks=("batching-rule",))
    with pytest.raises(ValueError, match=r"\['conv9d'\] name no drawn layer kind"):
        DrawnFailure(methods=("vmap",), layers=("conv9d",), error="e", reason="r")
    with pytest.raises(ValueError, match=r"unknown checks \['speed'\]"):
        ZooFailure(methods=("vmap",), models=("mlp",), error="e", reason="r", checks=("speed",))


def test_rows_are_matched_by_version_dtype_and_device():
    row = expected_failure("vmap", "lstm_text", "float64", "cpu")
    assert row is not None and "float64" in row.reason
    assert expected_failure("vmap", "lstm_text", "float32", "cpu") is None
    opacus_1_6 = Versions("2.14.0", "1.6.0", "1.7.1")
    assert expected_failure("opacus-hooks", "resnet18_gn", "float32", "cuda", torch_version=opacus_1_6) is not None
    assert expected_failure("opacus-hooks", "resnet18_gn_noinplace", "float32", "cuda", torch_version=opacus_1_6) is None
    opacus_1_5_3 = Versions("2.14.0", "1.5.3", "1.7.1")
    assert expected_failure("opacus-hooks", "resnet18_gn", "float32", "cpu", torch_version=opacus_1_5_3) is None
    with pytest.raises(ValueError, match="unknown check 'nope'"):
        expected_failure("vmap", "mlp", "float64", "cpu", check="nope")


def test_version_range_uses_the_release_not_the_local_label():
    row = ZooFailure(methods=("*",), models=("*",), error="", reason="r", torch=">=2.14,<2.15")
    assert row.applies("vmap", "mlp", "float32", "cpu", "grads", "2.14.0+cu130")
    assert not row.applies("vmap", "mlp", "float32", "cpu", "grads", "2.15.0")


@pytest.mark.parametrize("numerics", NUMERICS)
@pytest.mark.parametrize("precision", list(PRECISIONS))
def test_tolerance_table_has_a_documented_row_for_every_precision(precision, numerics):
    tol = tolerance_for(precision, numerics)
    assert tol.rtol > 0 and tol.atol >= 0 and tol.reason
    zeros_fail = tol.rtol < 1 or (tol.direction is not None and tol.direction < 1)
    assert zeros_fail, "a result of zeros (relative error 1, -1 along the reference) must fail every row"


def test_tolerance_rows_order_float64_strictest():
    float64 = tolerance_for("float64", "kinks")
    assert float64.rtol < tolerance_for("float32", "smooth").rtol < tolerance_for("float32", "kinks").rtol
    assert float64.rtol < tolerance_for("float32", "drawn").rtol
    assert all(tol.rtol >= float64.rtol for tol in TOLERANCES.values())
    assert tolerance_for("float32", "kinks").rtol < tolerance_for("bf16", "kinks").rtol
    with pytest.raises(KeyError, match="no row for precision 'fp8'"):
        tolerance_for("fp8", "smooth")
    with pytest.raises(ValueError, match="unknown model numerics 'rough'"):
        tolerance_for("float32", "rough")


def test_global_state_is_restored_between_tests():
    from harness.pytest_plugin import restored_global_state

    before = (torch.get_default_dtype(), torch.backends.cuda.matmul.allow_tf32, torch.are_deterministic_algorithms_enabled())
    with restored_global_state():
        first = torch.rand(3)
        torch.set_default_dtype(torch.float64)
        torch.backends.cuda.matmul.allow_tf32 = not before[1]
        torch.use_deterministic_algorithms(True)
    with restored_global_state():
        assert torch.equal(torch.rand(3), first), "every test starts from the same seed"
    after = (torch.get_default_dtype(), torch.backends.cuda.matmul.allow_tf32, torch.are_deterministic_algorithms_enabled())
    assert after == before


def conv3d(dilation: int, groups: int) -> Problem:
    """A drawn problem of one Conv3d layer."""
    args = dict(in_channels=2, out_channels=2, kernel_size=2, stride=1, padding=0, dilation=dilation, groups=groups, bias=True)
    return Problem((Layer("conv3d", tuple(args.items()), (2, 4, 4, 4), (2, 4 - dilation, 4 - dilation, 4 - dilation)),), 2)


def test_drawn_rows_are_decided_per_layer_configuration():
    assert expected_failure_drawn("expanded-weights", conv3d(2, 2), "float64", "cpu") is not None
    assert expected_failure_drawn("expanded-weights", conv3d(2, 1), "float64", "cpu") is None
    assert expected_failure_drawn("vmap", conv3d(2, 2), "float64", "cpu") is None
    with pytest.raises(ValueError, match="unknown layer kind 'conv4d'"):
        Layer("conv4d", (), (1,), (1,))
    linear = Layer("linear", (("in_features", 3), ("out_features", 2)), (3,), (2,))
    with pytest.raises(ValueError, match="layer linear cannot take the output"):
        Problem((linear, linear), 2)


@pytest.fixture
def added_rows() -> Iterator[Callable[..., None]]:
    """``added_rows(*rows)``: rows added as a plugin adds them, taken out again after the test."""
    added: list[ExpectedFailure] = []

    def add(*rows: ExpectedFailure) -> None:
        add_expected_failures(*rows)
        added.extend(rows)

    yield add
    remove_expected_failures(*added)


def test_a_plugins_zoo_row_overrides_the_built_in_row_for_the_same_cell(added_rows):
    built_in = expected_failure("vmap", "lstm_text", "float64", "cpu")
    assert built_in is not None and built_in in SUPPORT_MATRIX
    other_methods_row = expected_failure("opacus-hooks", "lstm_text", "float64", "cpu")
    mine = ZooFailure(methods=("vmap",), models=("lstm_text",), precisions=("float64",), error="my vmap's error",
                      reason="a plugin's patched vmap fails its own way")
    later = dataclasses.replace(mine, reason="added after it")
    added_rows(mine, later)
    assert expected_failure("vmap", "lstm_text", "float64", "cpu") is mine
    assert Trial("lstm_text", 7, "float64", "cpu", method="vmap").expected is mine
    assert expected_failure("vmap", "lstm_text", "float32", "cpu") is None, "a row covers only its own cells"
    assert expected_failure("opacus-hooks", "lstm_text", "float64", "cpu") == other_methods_row, "other methods keep theirs"


def test_a_plugins_drawn_row_overrides_the_built_in_row_for_the_same_cell(added_rows):
    built_in = expected_failure_drawn("expanded-weights", conv3d(2, 2), "float64", "cpu")
    assert built_in is not None and built_in in SUPPORT_MATRIX
    mine = DrawnFailure(methods=("expanded-weights",), layers=("conv3d",), error="my error", reason="mine")
    added_rows(mine)
    assert expected_failure_drawn("expanded-weights", conv3d(2, 2), "float64", "cpu") is mine
    assert expected_failure_drawn("expanded-weights", conv3d(1, 1), "float64", "cpu") is mine
    assert expected_failure_drawn("opacus-ew", conv3d(2, 2), "float64", "cpu") == built_in


@pytest.fixture
def raw() -> Iterator[None]:
    """The support matrix not applied, as under --psg-raw, for one test."""
    apply_support_matrix(False)
    yield
    apply_support_matrix(True)


def test_raw_runs_expect_no_failure(raw):
    assert expected_failure("vmap", "lstm_text", "float64", "cpu") is None
    assert expected_failure_drawn("expanded-weights", conv3d(2, 2), "float64", "cpu") is None


def _calls_until_it_fails(method) -> int:
    """How many times the property check of linear layers calls a method that is always wrong."""
    from harness import get_method
    from harness.checking.checks import check_property
    from harness.checking.trials import PropertyTrial
    from harness.core.errors import ToleranceError

    calls = []

    def doubled(case):
        calls.append(case.batch_size)
        return {name: 2 * g for name, g in get_method("vmap")(case).items()}

    method(doubled)
    with pytest.raises(ToleranceError):
        check_property(PropertyTrial("linear", "float64", "cpu", "selftest"))
    return len(calls)


def test_a_raw_run_does_not_shrink_a_failing_drawn_example(method):
    """Under --psg-raw a property test keeps its outcome, not its smallest example: Hypothesis
    stops at the first failure (and replays it once) instead of shrinking it, as it does otherwise."""
    shrunk = _calls_until_it_fails(method)
    apply_support_matrix(False)
    try:
        raw = _calls_until_it_fails(method)
    finally:
        apply_support_matrix(True)
    assert raw <= 2 < shrunk, (raw, shrunk)


def test_outside_raw_runs_the_rows_apply_again():
    apply_support_matrix(False)
    apply_support_matrix(True)
    assert expected_failure("vmap", "lstm_text", "float64", "cpu") is not None


@pytest.mark.integration  # starts pytest in another process
def test_psg_raw_records_what_the_library_did(subprocess_env):
    """A cell the matrix expects to fail is xfailed by default and failed, with its error, under --psg-raw."""
    selection = ["-p", "no:randomly", "-q", "harness/suite/test_oracle.py", "-k", "cpu-float64-lstm_text-B1-vmap]"]
    default = subprocess.run([sys.executable, "-m", "pytest", *selection], capture_output=True, text=True, env=subprocess_env)
    raw = subprocess.run([sys.executable, "-m", "pytest", "--psg-raw", *selection], capture_output=True, text=True, env=subprocess_env)
    assert default.returncode == 0 and "1 xfailed" in default.stdout, default.stdout
    assert raw.returncode == 1 and "1 failed" in raw.stdout, raw.stdout
    assert "doesn't match the broadcast shape" in raw.stdout, "the failure carries the library's own error"


def test_the_grouped_transposed_convolution_row_covers_exactly_what_fails():
    """The torch 2.0 oneDNN row's ``when``, held to torch itself: on a grid of 1-wide grouped
    ConvTranspose1d layers the forward fails exactly where the row covers the layer and holds
    (on this process's thread count: one under -n, more serially)."""
    [row] = [row for row in SUPPORT_MATRIX if row.error.startswith("could not construct a memory descriptor")]
    grid = [
        (groups * per_in, groups * per_out, groups, stride, output_padding, dilation)
        for groups in (1, 2, 3)
        for per_in, per_out in ((1, 1), (2, 1), (1, 2), (3, 1))
        for stride, output_padding, dilation in ((1, 0, 1), (1, 0, 2), (1, 1, 2), (2, 0, 1), (2, 1, 1), (3, 2, 1))
    ]
    seen = {}
    for in_channels, out_channels, groups, stride, output_padding, dilation in grid:
        kwargs = {"in_channels": in_channels, "out_channels": out_channels, "kernel_size": 1, "stride": stride,
                  "output_padding": output_padding, "groups": groups, "dilation": dilation}
        layer = Layer("conv_transpose1d", tuple(kwargs.items()), (in_channels, 5), (out_channels, 4 * stride + output_padding + 1))
        try:
            torch.nn.ConvTranspose1d(**kwargs)(torch.randn(2, in_channels, 5))
            fails = False
        except RuntimeError as exc:
            assert re.search(row.error, str(exc)), exc
            fails = True
        seen[tuple(kwargs.values())] = (fails, row.holds_for(Versions.installed()) and row.when(layer))
    assert all(fails == covered for fails, covered in seen.values()), {k: v for k, v in seen.items() if v[0] != v[1]}
