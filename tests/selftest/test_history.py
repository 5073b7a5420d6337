"""python -m harness history: stored results per release combination, their tables and transitions,
and their agreement with the support matrix."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from harness.tools.history import (
    STORE,
    Cell,
    Combination,
    classify,
    compact,
    disagreements,
    grid,
    load,
    load_all,
    main,
    speed_transitions,
    transitions,
)
from harness.tools.report import Outcome

REPOSITORY = Path(__file__).parents[2]
LSTM_ERROR = "RuntimeError: output with shape [1, 16] doesn't match the broadcast shape [7, 16]"
TODAY = {"torch": "2.14.0", "torchvision": "0.29.0", "opacus": "1.6.0", "backpack": "1.7.1"}


def _trial(model: str, method: str = "vmap", precision: str = "float64", batch: str = "7") -> dict[str, str]:
    return {"trial_device": "cpu", "trial_precision": precision, "trial_model": model, "trial_batch_size": batch,
            "trial_method": method, "trial_check": "grads"}


def _combination(env: str, release: str, cells: dict[str, Cell]) -> Combination:
    return Combination(env, "torch", {**TODAY, "torch": release}, {"seconds": 1, "commit": "abc"}, cells)


def _cell(outcome: str, model: str = "mlp", message: str = "", method: str = "vmap", precision: str = "float64") -> Cell:
    fields = {k.removeprefix("trial_"): v for k, v in _trial(model, method, precision).items()}
    return Cell(outcome, message, None, tuple(sorted(fields.items())))


@pytest.mark.parametrize(
    "outcome, expected",
    [
        (Outcome("passed"), "pass"),
        (Outcome("xpassed"), "pass"),
        (Outcome("skipped", "Opacus 1.0.0 has no ghost clipping"), "unavailable"),
        (Outcome("failed", "harness.core.errors.ToleranceError: method 'x' differs from the reference"), "wrong"),
        (Outcome("failed", "harness.core.errors.MethodFailed: method 'x' raised TypeError: ToleranceError"), "error"),
        (Outcome("failed", "worker 'gw0' crashed while running 'test[x]': killed by SIGSEGV"), "crash"),
    ],
)
def test_each_outcome_has_its_class(outcome, expected):
    assert classify(outcome) == expected


def test_a_combination_is_stored_compactly_and_read_back(tmp_path):
    outcomes = {
        "t.py::test_matches_oracle[cpu-float64-lstm_text-B7-vmap]": Outcome("failed", LSTM_ERROR + "\nmore", 0.5, _trial("lstm_text")),
        "t.py::test_matches_oracle[cpu-float64-mlp-B7-vmap]": Outcome("passed", max_rel_err=1e-16, recorded=_trial("mlp")),
        "t.py::test_matches_oracle[cuda-float64-mlp-B7-vmap]": Outcome("skipped", "CUDA is not available on this machine"),
    }
    record = compact("torch2_14", "torch", TODAY, outcomes, {"seconds": 3})
    path = tmp_path / "torch2_14.json.gz"
    path.write_bytes(gzip.compress(json.dumps(record).encode()))
    stored = load(path)
    assert set(stored.cells) == set(list(outcomes)[:2]), "CUDA skips are not stored"
    lstm = stored.cells["t.py::test_matches_oracle[cpu-float64-lstm_text-B7-vmap]"]
    assert (lstm.outcome, lstm.message, lstm.field("model")) == ("error", LSTM_ERROR, "lstm_text")
    assert stored.release == "2.14.0" and stored.meta == {"seconds": 3}


def test_a_transition_is_the_first_release_where_a_test_changed_class():
    test = "t.py::test_matches_oracle[cpu-float64-mlp-B7-vmap]"
    columns = [
        _combination("torch2_0", "2.0.1", {test: _cell("pass")}),
        _combination("torch2_1", "2.1.2", {test: _cell("pass")}),
        _combination("torch2_2", "2.2.2", {test: _cell("wrong", message="ToleranceError: off")}),
        _combination("torch2_3", "2.3.1", {test: _cell("wrong", message="ToleranceError: off")}),
    ]
    [found] = transitions(columns)
    assert (found.before, found.after, found.change, found.tests) == ("2.1.2", "2.2.2", "pass -> wrong", (test,))
    rows, clean = grid(columns)
    assert rows == [["test_matches_oracle", "vmap", "mlp", ".", ".", "W", "W"]] and clean == 0


def test_a_speed_transition_uses_the_compare_steps_threshold_per_method():
    """+0.8% is a transition for vmap (0.5%) and not for vmap-compiled (1%); 4,000 instructions is the floor."""
    columns = [_combination("torch2_13", "2.13.0", {}), _combination("torch2_14", "2.14.0", {})]
    before = {"vmap": 4_000_000, "vmap-compiled": 4_000_000, "loop": 600_000}
    after = {"vmap": 4_032_000, "vmap-compiled": 4_032_000, "loop": 603_960}
    counts = {"torch2_13": {"cpu-float32-mlp-B8": before}, "torch2_14": {"cpu-float32-mlp-B8": after}}
    assert speed_transitions(columns, counts) == [["2.13.0 → 2.14.0", "cpu-float32-mlp-B8", "vmap +0.8%", ""]]


def test_the_history_disagrees_where_a_row_and_a_cell_say_different_things():
    lstm = "t.py::test_matches_oracle[cpu-float64-lstm_text-B7-vmap]"
    agreeing = _combination("torch2_14", "2.14.0", {lstm: _cell("error", "lstm_text", LSTM_ERROR)})
    assert disagreements(agreeing) == []
    passing = _combination("torch2_14", "2.14.0", {lstm: _cell("pass", "lstm_text")})
    [said] = disagreements(passing)
    assert "passes, but the row /output with shape" in said
    other_error = _combination("torch2_14", "2.14.0", {lstm: _cell("error", "lstm_text", "TypeError: something else")})
    assert "which the row's /output with shape" in disagreements(other_error)[0]
    mlp = "t.py::test_matches_oracle[cpu-float64-mlp-B7-vmap]"
    unexplained = _combination("torch2_14", "2.14.0", {mlp: _cell("wrong", message="ToleranceError: off")})
    assert "no support-matrix row covers it" in disagreements(unexplained)[0]


def test_a_stored_run_is_judged_by_the_cpu_it_recorded():
    meta = {"instruction_sets": "ATen AVX2, oneDNN bfloat16 yes; CPU flags: amx_bf16 avx2 avx512_bf16"}
    combination = Combination("torch2_0", "torch", TODAY, meta, {})
    assert combination.as_versions().cpu_flags == frozenset({"amx_bf16", "avx2", "avx512_bf16"})
    assert Combination("torch2_0", "torch", TODAY, {}, {}).as_versions().cpu_flags is None


def test_show_writes_the_page_and_a_plot_per_series_and_counted_case(tmp_path):
    store = tmp_path / "store"
    (store / "instructions").mkdir(parents=True)
    test = "t.py::test_matches_oracle[cpu-float64-mlp-B7-vmap]"
    for env, release, outcome in (("torch2_0", "2.0.1", "pass"), ("torch2_1", "2.1.2", "error")):
        cell = {test: ["pass" if outcome == "pass" else "error", None if outcome == "pass" else 0, None, {"model": "mlp", "method": "vmap"}]}
        record = {"env": env, "series": "torch", "versions": {**TODAY, "torch": release}, "meta": {}, "messages": ["MethodFailed: boom"], "tests": cell}
        (store / f"{env}.json.gz").write_bytes(gzip.compress(json.dumps(record).encode()))
        counts = {"cpu-float32-mlp-B8": {"vmap": 1_000_000 if env == "torch2_0" else 1_004_000, "loop": 1_000_000 if env == "torch2_0" else 1_100_000}}
        (store / "instructions" / f"{env}.json").write_text(json.dumps({"instructions": counts}))
    assert main(["--store", str(store), "show", "--out", str(tmp_path / "docs")]) == 0
    page = (tmp_path / "docs" / "history.md").read_text()
    assert "| 2.0.1 → 2.1.2 | cpu-float32-mlp-B8 | loop +10.0% |  |" in page, "+0.4% (vmap) is inside the count threshold"
    assert (tmp_path / "docs" / "history" / "instructions-cpu-float32-mlp-B8.png").stat().st_size > 0
    assert "| test_matches_oracle | vmap | mlp | . | E |" in page
    assert "| 2.0.1 → 2.1.2 | test_matches_oracle | vmap | pass -> error | 1 | mlp | MethodFailed: boom |" in page
    assert (tmp_path / "docs" / "history" / "torch.png").stat().st_size > 0


@pytest.mark.parametrize(
    "argv, message",
    [
        (["show"], "no stored combination"),
        (["check"], "no stored combination"),
        (["run", "--only", "torch1_9", "--tox-ini", str(REPOSITORY / "tox.ini")], "--only torch1_9: no such release environment"),
    ],
)
def test_bad_input_is_one_line(tmp_path, capsys, argv, message):
    assert main(["--store", str(tmp_path / "empty"), *argv]) == 2
    assert message in capsys.readouterr().err


def test_the_stored_history_agrees_with_the_support_matrix():
    """What each stored release combination did, cell by cell, is what today's rows say: a row whose
    range says a cell fails where the history says it passes (or the reverse) fails here."""
    combinations = load_all(REPOSITORY / STORE)
    assert combinations, f"{STORE} holds no combination: python -m harness history run"
    found = [line for combination in combinations for line in disagreements(combination)]
    assert not found, f"{len(found)} disagreements, the first: " + "\n".join(found[:10])


def test_a_new_release_is_a_new_minor_for_torch_and_any_newer_release_otherwise():
    from harness.tools.bisect import Release
    from harness.tools.history import newer_releases

    torch = [Release("2.14.0", "torch2_14"), Release("2.15.0", "torch2_15")]
    available = ["2.16.0", "2.15.1", "2.14.1", "2.17.0rc1", "2.16.0+cpu", "nonsense", "2.0.0"]
    assert newer_releases("torch", torch, available) == ["2.16.0"]
    assert newer_releases("opacus", [Release("1.6.0", "opacus1_6_0")], ["1.6.1", "1.6.0", "1.5.4"]) == ["1.6.1"]


def test_a_property_test_that_fails_where_no_drawn_row_could_cover_it_disagrees():
    def drawn(outcome: str, message: str = "") -> Combination:
        fields = (("device", "cpu"), ("method", "vmap"), ("model", "linear"), ("precision", "float64"))
        return _combination("torch2_14", "2.14.0", {"t.py::test_property[cpu-float64-linear-vmap]": Cell(outcome, message, None, fields)})

    [said] = disagreements(drawn("error", "MethodFailed: boom"))
    assert "no drawn-layer row covers vmap on linear" in said
    assert disagreements(drawn("pass")) == []
