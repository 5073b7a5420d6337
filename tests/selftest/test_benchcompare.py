"""The compare step on synthetic pytest-benchmark JSON: what it calls a regression, and bad input."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness.benchmarks.judge import main

CASE = "cpu-float32-simple_cnn-B64"


def rounds(median: float, n: int = 30, spread: float = 0.02, seed: int = 0) -> list[float]:
    """``n`` noisy rounds around ``median`` (uniform within +-spread)."""
    rng = random.Random(seed)
    return [median * (1 + rng.uniform(-spread, spread)) for _ in range(n)]


def write_run(path: Path, times: dict[str, list[float]], case: str = CASE, **extra: dict[str, object]) -> Path:
    """A minimal pytest-benchmark JSON file with one benchmark per method of ``case``, on a
    2-core machine; ``extra`` adds ``extra_info`` entries per method (``vmap={"load": 3.0}``)."""
    benchmarks = [
        {
            "group": case,
            "name": f"test_bench[{case}-{method}]",
            "fullname": f"tests/benchmarks/test_bench.py::test_bench[{case}-{method}]",
            "param": method,
            "extra_info": {"case": case, "method": method, **extra.get(method, {})},
            "stats": {"data": data, "rounds": len(data)},
        }
        for method, data in times.items()
    ]
    info = {"node": "test", "cpus": 2, "machine_class": "cpu-2cores", "torch": "2.14.0+cu130"}
    path.write_text(json.dumps({"machine_info": info, "benchmarks": benchmarks, "version": "5.3.1"}))
    return path


def run(tmp_path: Path, base: dict, cur: dict, *args: str, capsys) -> tuple[int, str, str]:
    code = main([str(write_run(tmp_path / "base.json", base)), str(write_run(tmp_path / "cur.json", cur)), *args])
    out, err = capsys.readouterr()
    return code, out, err


def line(out: str, method: str) -> str:
    return next(row for row in out.splitlines() if f"| {method} |" in row)


def memory_line(out: str, method: str) -> str:
    return line(out.split("baseline peak (MiB)", 1)[1], method)


def test_unchanged_code_does_not_alarm(tmp_path, capsys):
    base = {"batched": rounds(1.0, seed=1), "vmap": rounds(2.0, seed=2)}
    cur = {"batched": rounds(1.0, seed=3), "vmap": rounds(2.0, seed=4)}
    code, out, _ = run(tmp_path, base, cur, capsys=capsys)
    assert code == 0 and "| ok |" in line(out, "vmap")


def test_a_25_percent_slowdown_is_a_regression(tmp_path, capsys):
    base = {"batched": rounds(1.0, seed=1), "vmap": rounds(2.0, seed=2)}
    cur = {"batched": rounds(1.0, seed=3), "vmap": rounds(2.5, seed=4)}
    code, out, _ = run(tmp_path, base, cur, capsys=capsys)
    assert code == 1
    assert "REGRESSION" in line(out, "vmap") and "+24." in line(out, "vmap")
    assert "1 regression(s) in 1 comparison(s) against 1 baseline run(s)" in out


def test_a_speed_up_is_an_improvement_not_a_failure(tmp_path, capsys):
    base = {"batched": rounds(1.0, seed=1), "vmap": rounds(2.0, seed=2)}
    cur = {"batched": rounds(1.0, seed=3), "vmap": rounds(1.5, seed=4)}
    code, out, _ = run(tmp_path, base, cur, capsys=capsys)
    assert code == 0 and "improved" in line(out, "vmap")


def test_a_slower_machine_does_not_alarm_on_ratios_but_does_with_absolute(tmp_path, capsys):
    base = {"batched": rounds(1.0, seed=1), "vmap": rounds(2.0, seed=2)}
    cur = {"batched": rounds(1.3, seed=3), "vmap": rounds(2.6, seed=4)}
    code, out, _ = run(tmp_path, base, cur, capsys=capsys)
    assert code == 0 and "| ok |" in line(out, "vmap")
    code, out, _ = run(tmp_path, base, cur, "--absolute", capsys=capsys)
    assert code == 1 and "REGRESSION" in line(out, "vmap") and "REGRESSION" in line(out, "batched")


def test_a_run_whose_batched_step_drifted_too_far_is_not_judged_by_ratios(tmp_path, capsys):
    """A spell of a shared machine: the batched step 2x slower, the method 1.6x: ratios say -20%."""
    base = {"batched": rounds(1.0, seed=1), "vmap": rounds(2.0, seed=2)}
    cur = {"batched": rounds(2.0, seed=3), "vmap": rounds(3.2, seed=4)}
    code, out, _ = run(tmp_path, base, cur, capsys=capsys)
    assert code == 0 and "not judged: batched step 2x the baseline's" in line(out, "vmap")
    code, out, _ = run(tmp_path, base, cur, "--max-drift", "2.5", capsys=capsys)
    assert code == 0 and "improved" in line(out, "vmap")


def test_a_change_beyond_the_threshold_without_support_in_the_rounds_is_reported_not_failed(tmp_path, capsys):
    base = {"batched": [1.0, 1.0, 1.0], "vmap": [2.0, 1.0, 3.0]}
    cur = {"batched": [1.0, 1.0, 1.0], "vmap": [2.5, 1.2, 3.1]}
    code, out, _ = run(tmp_path, base, cur, capsys=capsys)
    assert code == 0 and "slower, not significant" in line(out, "vmap")


def test_noise_inside_the_threshold_is_ok(tmp_path, capsys):
    base = {"batched": rounds(1.0, seed=1), "vmap": rounds(2.0, seed=2)}
    cur = {"batched": rounds(1.0, seed=3), "vmap": rounds(2.1, seed=4)}
    code, out, _ = run(tmp_path, base, cur, "--threshold", "0.10", capsys=capsys)
    assert code == 0 and "| ok |" in line(out, "vmap")


def test_the_spread_of_several_baseline_runs_widens_the_threshold(tmp_path, capsys):
    """Baseline runs at 2.0, 2.4 and 2.8 (spread 17% around 2.4): +25% is noise there, +50% is not."""
    paths = [
        write_run(tmp_path / f"base{i}.json", {"batched": rounds(1.0, seed=i), "vmap": rounds(m, seed=10 + i)})
        for i, m in enumerate((2.0, 2.4, 2.8))
    ]
    for median, verdict, code in ((3.0, "| ok |", 0), (3.6, "REGRESSION", 1)):
        cur = write_run(tmp_path / "cur.json", {"batched": rounds(1.0, seed=7), "vmap": rounds(median, seed=8)})
        assert main([*map(str, paths), str(cur)]) == code
        out = capsys.readouterr().out
        assert verdict in line(out, "vmap") and re.search(r"\| 3[3-5]% \|", line(out, "vmap"))
        assert "against 3 baseline run(s)" in out


def test_several_current_runs_are_judged_by_their_median(tmp_path, capsys):
    """One of three current runs +40% (a bad run), the median +2%: not a regression; two of three: one."""
    base = write_run(tmp_path / "base.json", {"batched": rounds(1.0, seed=1), "vmap": rounds(2.0, seed=2)})
    for slow_runs, code in ((1, 0), (2, 1)):
        currents = [
            write_run(tmp_path / f"cur{i}.json", {"batched": rounds(1.0, seed=3 + i), "vmap": rounds(2.8 if i < slow_runs else 2.04, seed=9 + i)})
            for i in range(3)
        ]
        assert main([str(base), "--current", *map(str, currents)]) == code
        out = capsys.readouterr().out
        assert ("REGRESSION" in line(out, "vmap")) == bool(code) and "3 current run(s)" in out


def test_a_run_recorded_under_load_is_not_judged(tmp_path, capsys):
    base = {"batched": rounds(1.0, seed=1), "vmap": rounds(2.0, seed=2)}
    cur = write_run(tmp_path / "cur.json", {"batched": rounds(1.0, seed=3), "vmap": rounds(4.0, seed=4)}, vmap={"load": 2.5})
    assert main([str(write_run(tmp_path / "base.json", base)), str(cur)]) == 0
    out = capsys.readouterr().out
    assert "not judged: load 2.5 on 2 cores" in line(out, "vmap")
    assert "1 comparison(s) not judged: every current run was recorded with the load at or above the core count" in out
    quiet = write_run(tmp_path / "quiet.json", {"batched": rounds(1.0, seed=5), "vmap": rounds(4.0, seed=6)}, vmap={"load": 1.2})
    assert main([str(tmp_path / "base.json"), "--current", str(cur), str(quiet)]) == 1
    assert "REGRESSION" in line(capsys.readouterr().out, "vmap")


def test_a_method_that_needs_more_memory_is_a_regression(tmp_path, capsys):
    mib = 2**20
    times = {"batched": rounds(1.0, seed=1), "vmap": rounds(2.0, seed=2), "loop": rounds(9.0, seed=3)}
    base = write_run(tmp_path / "base.json", times, vmap={"peak_rss_bytes": 100 * mib}, loop={"peak_rss_bytes": 20 * mib})
    cur = write_run(tmp_path / "cur.json", times, vmap={"peak_rss_bytes": 130 * mib}, loop={"peak_rss_bytes": 26 * mib})
    assert main([str(base), str(cur)]) == 1
    out = capsys.readouterr().out
    assert "| 100.0 | 130.0 | +30.0% | 10.0 | HUNGRIER |" in memory_line(out, "vmap")
    assert "| 20.0 | 26.0 | +30.0% | 8.0 | ok |" in memory_line(out, "loop"), "6 MiB is below the floor"
    assert "1 method(s) hungrier in 3 memory comparison(s)" not in out and "1 method(s) hungrier in 2 memory comparison(s)" in out


def test_the_spread_of_the_baseline_runs_peaks_widens_the_memory_allowance(tmp_path, capsys):
    """Baseline peaks 100, 112 and 120 MiB (range 20): 135 MiB is within 2x that range of 112, 160 is not."""
    mib = 2**20
    times = {"batched": rounds(1.0, seed=1), "vmap": rounds(2.0, seed=2)}
    paths = [write_run(tmp_path / f"base{p}.json", times, vmap={"peak_rss_bytes": p * mib}) for p in (100, 112, 120)]
    for peak, verdict, code in ((135, "| 40.0 | ok |", 0), (160, "| 40.0 | HUNGRIER |", 1)):
        cur = write_run(tmp_path / "cur.json", times, vmap={"peak_rss_bytes": peak * mib})
        assert main([*map(str, paths), str(cur)]) == code
        assert verdict in memory_line(capsys.readouterr().out, "vmap")


def test_a_machine_class_without_baseline_fails_or_stores_the_run_when_asked(tmp_path, capsys):
    from harness.benchmarks.judge import baseline_folder

    times = {"batched": rounds(1.0, seed=1), "vmap": rounds(2.0, seed=2)}
    cur = write_run(tmp_path / "cur.json", times)
    info = json.loads(cur.read_text())["machine_info"]
    root = tmp_path / "stored-baselines"
    assert main(["auto", str(cur), "--baselines", str(root)]) == 2
    assert "no stored baseline under" in capsys.readouterr().err
    assert main(["auto", str(cur), "--baselines", str(root), "--if-missing", "store"]) == 0
    assert "stored the current run(s) as its baseline, nothing judged" in capsys.readouterr().out
    assert [p.name for p in baseline_folder(root, info).glob("*/*.json")] == ["0001_baseline.json"]
    assert baseline_folder(root, info).name == "cpu-2cores-torch-2.14.0-cu130", "the class and torch the run recorded"
    assert main(["auto", str(cur), "--baselines", str(root), "--if-missing", "store"]) == 0
    assert "| ok |" in line(capsys.readouterr().out, "vmap"), "the stored run is the baseline from then on"
    loaded = write_run(tmp_path / "loaded.json", times, vmap={"load": 4.0})
    assert main(["auto", str(loaded), "--baselines", str(tmp_path / "other"), "--if-missing", "store"]) == 2
    assert "not storing runs recorded under load" in capsys.readouterr().err


def test_a_method_added_after_some_baseline_runs_is_judged_against_the_runs_that_have_it(tmp_path, capsys):
    old = write_run(tmp_path / "old.json", {"batched": rounds(1.0, seed=1), "vmap": rounds(2.0, seed=2)})
    new = write_run(tmp_path / "new.json", {"batched": rounds(1.0, seed=3), "vmap": rounds(2.0, seed=4), "ghost": rounds(3.0, seed=5)})
    cur = write_run(tmp_path / "cur.json", {"batched": rounds(1.0, seed=6), "vmap": rounds(2.0, seed=7), "ghost": rounds(4.0, seed=8)})
    assert main([str(old), str(new), str(cur)]) == 1
    out = capsys.readouterr().out
    assert "REGRESSION" in line(out, "ghost") and "| ok |" in line(out, "vmap")


def test_cases_in_one_run_only_are_listed(tmp_path, capsys):
    base = {"batched": rounds(1.0), "vmap": rounds(2.0), "loop": rounds(9.0)}
    cur = {"batched": rounds(1.0), "vmap": rounds(2.0), "my-method": rounds(3.0)}
    code, out, _ = run(tmp_path, base, cur, capsys=capsys)
    assert code == 0
    assert f"baseline only (not compared): {CASE}/loop" in out
    assert f"current only (not compared): {CASE}/my-method" in out


def test_bad_input_exits_2_with_a_message(tmp_path, capsys):
    good = write_run(tmp_path / "good.json", {"batched": rounds(1.0), "vmap": rounds(2.0)})
    (tmp_path / "garbage.json").write_text("{not json")
    (tmp_path / "other.json").write_text(json.dumps({"results": []}))
    no_rounds = write_run(tmp_path / "norounds.json", {"batched": [], "vmap": []})
    elsewhere = write_run(tmp_path / "elsewhere.json", {"batched": rounds(1.0), "vmap": rounds(2.0)}, case="cpu-mlp-B7")
    cases = [
        (tmp_path / "missing.json", "missing.json: no such file"),
        (tmp_path / "garbage.json", "garbage.json: not JSON"),
        (tmp_path / "other.json", "other.json: not pytest-benchmark JSON"),
        (no_rounds, "has no raw rounds (stats.data); record runs with --benchmark-save-data"),
        (elsewhere, "the baseline and current runs have no case and method in common"),
    ]
    for path, message in cases:
        assert main([str(good), str(path)]) == 2, message
        assert message in capsys.readouterr().err


def test_normalizing_needs_the_batched_timing(tmp_path, capsys):
    code, _, err = run(tmp_path, {"vmap": rounds(2.0)}, {"vmap": rounds(2.0)}, capsys=capsys)
    assert code == 2 and "has no 'batched' timing to normalize by (or pass --absolute)" in err


def test_the_module_entry_point_names_an_unknown_command_and_lists_them():
    proc = subprocess.run([sys.executable, "-m", "harness", "nope"], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.startswith("unknown command 'nope'\nusage: python -m harness COMMAND")
    assert all(f"  {name} " in proc.stderr for name in ("compare", "check-env", "report", "same-verdicts", "support-table"))


def test_the_module_entry_point_help_lists_the_commands_and_exits_0():
    proc = subprocess.run([sys.executable, "-m", "harness", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and re.search(r"\n  same-verdicts +check that several runs", proc.stdout)


def test_a_benchmark_run_writes_its_json_into_a_folder_that_does_not_exist_yet(tmp_path, subprocess_env):
    out = tmp_path / "results" / "bench" / "bench-1.json"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-m", "benchmark", "-k", "cpu-float32-mlp-B32-batched",
         f"--benchmark-json={out}", "harness/suite/test_benchmarks.py"],
        capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2], env=subprocess_env,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert [b["extra_info"]["method"] for b in json.loads(out.read_text())["benchmarks"]] == ["batched"]


def test_each_benchmark_gets_its_overhead_and_speedup():
    from harness.benchmarks.records import add_ratios

    benchmarks = [
        {"extra_info": {"case": CASE, "method": method}, "stats": {"median": median}}
        for method, median in (("batched", 0.5), ("loop", 8.0), ("vmap", 2.0))
    ]
    add_ratios(benchmarks)
    vmap = benchmarks[2]["extra_info"]
    assert vmap["overhead"] == pytest.approx(4.0) and vmap["speedup"] == pytest.approx(4.0)
    assert benchmarks[1]["extra_info"]["speedup"] == pytest.approx(1.0)
