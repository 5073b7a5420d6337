"""``python -m harness report`` on the small real runs under tests/selftest/data/report/ (see its README)."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from harness.tools.report import (
    PLOTS,
    Outcome,
    ResultRun,
    ScorecardRow,
    main,
    method_colors,
    plot_against_batch_size,
    row_of,
)

DATA = Path(__file__).parent / "data" / "report"
NEW, OLD = DATA / "torch-2.14", DATA / "torch-2.6"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def report(capsys, *args: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def scorecard(tmp_path, capsys) -> str:
    code, out, _ = report(capsys, NEW, OLD, "--out", tmp_path)
    assert code == 0
    assert (tmp_path / "scorecard.md").read_text() == out
    return out


def section(text: str, heading: str) -> str:
    """The lines under a ``## heading`` up to the next one."""
    start = text.index(f"## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


ORACLE64 = "Per-sample gradients against the float64 oracle: cpu, float64"
ORACLE32 = "Per-sample gradients against the float64 oracle: cpu, float32"
SUM32 = "Sum of the per-sample gradients against the batch gradient: cpu, float32"


def test_runs_stand_side_by_side_oldest_torch_first(scorecard):
    assert "| model | method | torch 2.6.0+cu124 | torch 2.14.0+cu130 |" in section(scorecard, ORACLE64)
    runs = scorecard.split("\n\n")[1]
    assert "| torch 2.6.0+cu124 | 0.21.0 | 1.6.0 | ? | cpu-2cores (AMD EPYC) | 85 | 24 | 0 | 18 | 26 |" in runs
    assert "| torch 2.14.0+cu130 | 0.29.0 | 1.6.0 | ? | cpu-2cores (AMD EPYC) | 89 | 24 | 8 | 20 | 26 |" in runs


def test_passes_show_the_worst_error_per_precision(scorecard):
    assert "| mlp | vmap | pass (3.6e-16) | pass (3.6e-16) |" in section(scorecard, ORACLE64)
    assert "| mlp | loop | pass (0) | pass (0) |" in section(scorecard, ORACLE64)
    assert "| mlp | vmap | pass (1.7e-07) | pass (1.7e-07) |" in section(scorecard, ORACLE32)
    assert "| mlp | vmap | pass (1.3e-07) | pass (1.3e-07) |" in section(scorecard, SUM32)


def test_xfails_show_the_support_matrix_reason(scorecard):
    row = re.search(r"\| bn_eval \| opacus-hooks \| xfail \[(\d)\] \| xfail \[\1\] \|", section(scorecard, ORACLE64))
    assert row is not None
    reasons = section(scorecard, "Expected failures (strict xfail, from the support matrix)")
    assert f"{row[1]}. Opacus' validation rejects BatchNorm (a trainable layer with buffers), even in eval mode" in reasons


def test_failures_show_counts_error_and_message_and_a_missing_method_a_dash(scorecard):
    oracle = section(scorecard, ORACLE64)
    assert "| mlp | my-wrong-method | — | **FAIL** 2/3, pass 1/3 (4.2e+00) |" in oracle
    assert (
        "- `test_matches_oracle[cpu-float64-mlp-B7-my-wrong-method]` (torch 2.14.0+cu130): harness.core.errors.ToleranceError: "
        "method 'my-wrong-method' on cpu-float64-mlp-B7 differs from the reference: worst at 0.weight, sample 1"
    ) in oracle
    assert "| mlp | my-wrong-method | — | **FAIL** (6.0e+00) |" in section(scorecard, SUM32)


def test_skipped_cuda_cases_are_counted_not_shown(scorecard):
    assert "test_matches_oracle[cuda-float64-mlp-B7-vmap]" in (NEW / "junit.xml").read_text()
    assert ": cuda," not in scorecard and "skipped" not in scorecard[scorecard.index("## ") :]


def test_speedup_and_overhead_per_run(scorecard):
    speed = section(scorecard, "Speed")
    assert (
        "| case | method | speedup, torch 2.6.0+cu124 | speedup, torch 2.14.0+cu130 "
        "| overhead, torch 2.6.0+cu124 | overhead, torch 2.14.0+cu130 |"
    ) in speed
    assert "| cpu-float32-mlp-B32 | vmap | 2.82x | 3.50x | 8.49x | 6.71x |" in speed
    assert "| cpu-float32-smooth_cnn-B16 | batched | 4.29x | 4.31x | 1.00x | 1.00x |" in speed
    assert "![speedup vs batch size](speedup.png)" in speed


def test_the_plot_is_a_png(scorecard, tmp_path):
    png = (tmp_path / "speedup.png").read_bytes()
    assert png[:8] == PNG_SIGNATURE and png[12:16] == b"IHDR"
    width, height = struct.unpack(">II", png[16:24])
    assert width > 100 and height > 100


def test_the_plot_draws_a_line_per_method_over_batch_sizes(tmp_path):
    figures = {("cpu-float32-mlp-B8", "vmap"): 3.0, ("cpu-float32-mlp-B32", "vmap"): 9.0,
               ("cpu-float32-mlp-B8", "loop"): 1.0, ("cuda-float32-mlp-B8-sum", "my-method"): 20.0}
    places = {"cpu-float32-mlp-B8": ("cpu", "mlp", 8), "cpu-float32-mlp-B32": ("cpu", "mlp", 32),
              "cuda-float32-mlp-B8-sum": ("cuda", "mlp", 8)}
    run = ResultRun(Path("r"), "2.14.0", benchmarks={key: {"speedup": v} for key, v in figures.items()}, places=places,
                    label="torch 2.14.0")
    speedup = PLOTS[0]
    assert plot_against_batch_size([run], speedup, tmp_path / "plot.png")
    assert (tmp_path / "plot.png").read_bytes()[:8] == PNG_SIGNATURE
    empty = ResultRun(Path("r"), "2.14.0")
    assert not plot_against_batch_size([empty], speedup, tmp_path / "none.png") and not (tmp_path / "none.png").exists()


def test_files_and_folders_mix_and_without_benchmarks_there_is_no_plot(tmp_path, capsys):
    code, out, err = report(capsys, NEW / "junit.xml", "--out", tmp_path)
    assert code == 0 and "## Speed" not in out and not (tmp_path / "speedup.png").exists()
    assert err.strip() == f"wrote {tmp_path / 'scorecard.md'}"
    code, out, _ = report(capsys, NEW / "junit.xml", NEW / "bench.json", "--out", tmp_path)
    assert code == 0 and "| 89 | 24 | 8 | 20 | 26 |" in out and (tmp_path / "speedup.png").exists()


def test_runs_of_one_torch_version_are_told_apart_by_folder(tmp_path, capsys):
    for name in ("nightly", "py311-torch2_14"):
        shutil.copytree(NEW, tmp_path / "results" / name)
    code, out, _ = report(capsys, tmp_path / "results", "--out", tmp_path / "out")
    assert code == 0
    assert "| torch 2.14.0+cu130 (nightly) | torch 2.14.0+cu130 (py311-torch2_14) |" in section(out, ORACLE64)


def junit(path: Path, cases: str) -> Path:
    path.write_text(f'<?xml version="1.0"?><testsuites><testsuite name="pytest">{cases}</testsuite></testsuites>')
    return path


def test_strict_xpass_and_failures_outside_the_tables(tmp_path, capsys):
    cases = (
        '<testcase classname="tests.test_oracle" name="test_matches_oracle[cpu-float64-mlp-B7-vmap]"><properties>'
        '<property name="trial_device" value="cpu" /><property name="trial_precision" value="float64" />'
        '<property name="trial_model" value="mlp" /><property name="trial_method" value="vmap" /></properties>'
        '<failure message="[XPASS(strict)] fixed upstream?" /></testcase>'
        '<testcase classname="tests.test_seeds" name="test_seed_001_claim">'
        '<failure message="AssertionError: the claim no longer holds" /></testcase>'
    )
    code, out, _ = report(capsys, junit(tmp_path / "x.xml", cases), "--out", tmp_path)
    assert code == 0
    assert "| mlp | vmap | **XPASS** |" in out
    assert "- `test_seed_001_claim` (torch unknown): AssertionError: the claim no longer holds" in section(
        out, "Other failures"
    )


def test_the_seeds_element_wise_outcomes_are_shown_as_recorded(tmp_path, capsys):
    cases = (
        '<testcase classname="tests.test_seeds" name="test_functorch_tutorial_script[cpu]"><properties>'
        '<property name="seed_max_abs_diff" value="0.0007041" /><property name="seed_claim_holds" value="False" />'
        '</properties></testcase>'
        '<testcase classname="tests.test_seeds" name="test_torch_func_tutorial[cpu]"><properties>'
        '<property name="seed_max_abs_diff" value="7.041e-07" /><property name="seed_claim_holds" value="True" />'
        '</properties></testcase>'
    )
    code, out, _ = report(capsys, junit(tmp_path / "x.xml", cases), "--out", tmp_path)
    assert code == 0
    claims = section(out, "The seeds' element-wise claims, on the machine of each run")
    assert "| torch unknown | `test_functorch_tutorial_script[cpu]` | 7.04e-04 | does not hold |" in claims
    assert "| torch unknown | `test_torch_func_tutorial[cpu]` | 7.04e-07 | holds |" in claims


def trial(device="cpu", precision="float64", model="mlp", method="vmap") -> Outcome:
    fields = {"device": device, "precision": precision, "model": model, "batch_size": "7", "method": method}
    return Outcome("passed", recorded={f"trial_{k}": v for k, v in fields.items()})


@pytest.mark.parametrize(
    "test, outcome, row",
    [
        ("tests.test_oracle::test_matches_oracle[cpu-float64-simple_cnn-B7-vmap]", trial(model="simple_cnn"),
         ScorecardRow("test_matches_oracle", "cpu", "float64", "simple_cnn", "vmap")),
        ("test_matches_oracle[whatever-the-id-says]", trial("cuda", "tf32", "resnet18_gn", "opacus-hooks"),
         ScorecardRow("test_matches_oracle", "cuda", "tf32", "resnet18_gn", "opacus-hooks")),
        ("test_property[cpu-float64-conv_transpose2d-vmap-chunked]", trial(model="conv_transpose2d", method="vmap-chunked"),
         ScorecardRow("test_property", "cpu", "float64", "conv_transpose2d", "vmap-chunked")),
        ("test_vmap_has_batching_rules[cpu-float32-mlp-B7]", trial(method=""), None),
        ("test_benchmark[cpu-float32-mlp-B32-vmap]", trial(), None),
        ("test_matches_oracle[cpu-float64-mlp-B7-vmap]", Outcome("passed"), None),
        ("tests.test_report::test_ids[tests.test_oracle::test_matches_oracle[cpu-float64-mlp-B7-vmap]]", trial(), None),
    ],
)
def test_rows_come_from_the_trial_fields_a_test_recorded_not_from_its_id(test, outcome, row):
    assert row_of(test, outcome) == row


def one_line_error(err: str) -> str:
    assert "Traceback" not in err and err.count("\n") == 1 and err.startswith("error: "), err
    return err


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: d / "missing.xml", "missing.xml: no such file or directory"),
        (lambda d: d / "nothing", "nothing: holds no *.xml or *.json result files"),
        (lambda d: d / "notes.txt", "notes.txt: neither JUnit XML nor pytest-benchmark JSON"),
        (lambda d: d / "page.xml", "page.xml: XML, but not JUnit (root element <html>"),
        (lambda d: d / "broken.xml", "broken.xml: not well-formed XML"),
        (lambda d: d / "other.json", "other.json: not pytest-benchmark JSON"),
        (lambda d: d / "zero.json", "zero.json: benchmark 'test_benchmark[cpu-float32-mlp-B1-batched]' is not as pytest-benchmark"
         " writes it: stats.median is 0, not a positive time"),
        (lambda d: d / "empty.xml", "no test results or benchmarks in"),
    ],
)
def test_bad_input_is_one_line_and_exit_status_2(tmp_path, capsys, make, message):
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "notes.txt").write_text("hello\n")
    (inputs / "page.xml").write_text("<html><body/></html>")
    (inputs / "broken.xml").write_text("<testsuites><testsuite>")
    (inputs / "other.json").write_text('{"name": "not a benchmark"}')
    zero = json.loads(swept_run(tmp_path / "swept.json", batch_sizes=(1,)).read_text())
    zero["benchmarks"][0]["stats"]["median"] = 0
    (inputs / "zero.json").write_text(json.dumps(zero))
    junit(inputs / "empty.xml", "")
    (inputs / "nothing").mkdir()
    code, out, err = report(capsys, make(inputs), "--out", tmp_path / "out")
    assert code == 2 and out == "" and message in one_line_error(err)


def test_no_results_and_an_unwritable_out_are_bad_input(tmp_path, capsys):
    code, _, err = report(capsys)
    assert code == 2 and "no results given" in one_line_error(err)
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, _, err = report(capsys, NEW, "--out", blocker)
    assert code == 2 and f"cannot write to {blocker}" in one_line_error(err)


def test_python_m_harness_report_dispatches():
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "report", "no/such/run"],
        cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert one_line_error(proc.stderr) == "error: no/such/run: no such file or directory\n"


@pytest.mark.parametrize("count", [3, 12, 25])
def test_every_method_gets_its_own_colour(count):
    colors = method_colors([f"method-{i}" for i in range(count)])
    assert len(set(colors.values())) == count


def swept_run(path: Path, batch_sizes=(1, 8, 32, 128)) -> Path:
    """A pytest-benchmark JSON file of mlp over batch sizes (batched, vmap, loop), with instruction counts."""
    cost = {"batched": (1e-3, 2e-5, 10**7, 10**5), "vmap": (3e-3, 5e-5, 3 * 10**7, 3 * 10**5), "loop": (1e-3, 1e-3, 10**7, 10**7)}
    benchmarks = []
    for b in batch_sizes:
        case = f"cpu-float32-mlp-B{b}"
        for method, (fixed, per_sample, fixed_count, count_per_sample) in cost.items():
            median = fixed + per_sample * b
            benchmarks.append({
                "group": case, "name": f"test_benchmark[{case}-{method}]", "param": f"{case}-{method}",
                "stats": {"median": median, "data": [median * f for f in (0.98, 1.0, 1.03)]},
                "extra_info": {"case": case, "method": method, "device": "cpu", "model": "mlp", "batch_size": b,
                               "instructions": fixed_count + count_per_sample * b},
            })
    path.write_text(json.dumps({"machine_info": {"torch": "2.14.0+cu130", "machine_class": "cpu-2cores"}, "benchmarks": benchmarks}))
    return path


def test_a_swept_run_plots_time_and_instructions_per_sample_and_lists_the_counts(tmp_path, capsys):
    code, out, err = report(capsys, swept_run(tmp_path / "swept.json"), "--out", tmp_path / "out")
    assert code == 0
    speed = section(out, "Speed")
    for plot in PLOTS:
        assert (tmp_path / "out" / plot.file).read_bytes()[:8] == PNG_SIGNATURE
        assert f"![{plot.caption}]({plot.file})" in speed and plot.file in err
    assert "| case | method | speedup, torch 2.14.0+cu130 | overhead, torch 2.14.0+cu130 | instructions, torch 2.14.0+cu130 |" in speed
    assert "| cpu-float32-mlp-B128 | vmap | 13.7x | 2.64x | 68,400,000 |" in speed


def test_runs_of_one_folder_keep_the_counts_only_one_of_them_made(tmp_path, capsys):
    """tox -e bench: bench-1.json counts instructions, bench-2.json and bench-3.json do not."""
    folder = tmp_path / "bench"
    folder.mkdir()
    counted = swept_run(folder / "bench-1.json", batch_sizes=(128,))
    data = json.loads(counted.read_text())
    for bench in data["benchmarks"]:
        del bench["extra_info"]["instructions"]
    (folder / "bench-2.json").write_text(json.dumps(data))
    code, out, _ = report(capsys, folder, "--out", tmp_path / "out")
    assert code == 0
    assert "| cpu-float32-mlp-B128 | vmap | 13.7x | 2.64x | 68,400,000 |" in section(out, "Speed")


def test_per_sample_figures_divide_one_call_by_the_batch_size():
    per_sample = {plot.file: plot for plot in PLOTS}
    figures = {"median": 0.64, "instructions": 3.2e9, "speedup": 4.0}
    assert per_sample["time_per_sample.png"].value(figures, 32) == pytest.approx(0.02)
    assert per_sample["instructions_per_sample.png"].value(figures, 32) == pytest.approx(1e8)
    assert per_sample["instructions_per_sample.png"].value({"median": 0.64}, 32) is None
    assert per_sample["speedup.png"].value(figures, 32) == 4.0


def figures_of(table: str, column: int) -> dict[str, float]:
    """Method -> the number in one column of a Markdown table's rows (``—`` rows left out)."""
    rows = [[cell.strip() for cell in row.strip("|").split("|")] for row in table.splitlines() if row.startswith("| cpu-")]
    return {row[1]: float(row[column].rstrip("x")) for row in rows if row[column] != "—"}


def test_report_and_compare_give_the_same_overhead_for_one_real_run(tmp_path, capsys):
    """The report once divided medians (vmap-chunked 41.0x here) where the compare step judged the
    paired per-round ratio (24.5): both now show :func:`harness.benchmarks.records.overhead`."""
    from harness.benchmarks.judge import main as compare

    run = Path(__file__).parent / "data" / "bench" / "mlp-B32.json"
    code, out, _ = report(capsys, run, "--out", tmp_path)
    assert code == 0
    reported = figures_of(section(out, "Speed"), 3)
    assert compare([str(run), str(run), "--allow-unjudged"]) == 0
    time_table = next(block for block in capsys.readouterr().out.split("\n\n") if "overhead vs batched" in block)
    judged = figures_of(time_table, 2)
    assert len(judged) == 12 and set(judged) == set(reported) - {"batched"}
    for method, figure in judged.items():
        assert reported[method] == pytest.approx(figure, rel=5e-3), method
    data = json.loads(run.read_text())
    medians = {bench["extra_info"]["method"]: bench["stats"]["median"] for bench in data["benchmarks"]}
    assert medians["vmap-chunked"] / medians["batched"] > 1.5 * reported["vmap-chunked"], "the two figures differ here"
