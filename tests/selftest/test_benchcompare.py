"""The compare step on synthetic pytest-benchmark JSON: what it calls a regression, and bad input."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness.benchmarks.judge import COUNT_FLOORS, DEFAULT_COUNT_THRESHOLD, main

CASE = "cpu-float32-simple_cnn-B64"


def rounds(median: float, n: int = 30, spread: float = 0.02, seed: int = 0) -> list[float]:
    """``n`` noisy rounds around ``median`` (uniform within +-spread)."""
    rng = random.Random(seed)
    return [median * (1 + rng.uniform(-spread, spread)) for _ in range(n)]


def write_run(
    path: Path, times: dict[str, list[float]], case: str = CASE, cpu: dict | None = None, **extra: dict[str, object]
) -> Path:
    """A minimal pytest-benchmark JSON file with one benchmark per method of ``case``, on a
    2-core machine (whose ``cpu`` py-cpuinfo describes, if given); ``extra`` adds ``extra_info``
    entries per method (``vmap={"load": 3.0}``)."""
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
    if cpu is not None:
        info["cpu"] = cpu
    path.write_text(json.dumps({"machine_info": info, "benchmarks": benchmarks, "version": "5.3.1"}))
    return path


def run(tmp_path: Path, base: dict, cur: dict, *args: str, capsys) -> tuple[int, str, str]:
    code = main([str(write_run(tmp_path / "base.json", base)), str(write_run(tmp_path / "cur.json", cur)), *args])
    out, err = capsys.readouterr()
    return code, out, err


def line(out: str, method: str) -> str:
    return next(row for row in out.splitlines() if f"| {method} |" in row)


def cells(row: str) -> list[str]:
    """A Markdown table row's cells."""
    return [cell.strip() for cell in row.strip().strip("|").split("|")]


def memory_line(out: str, method: str) -> str:
    return line(out.split("| memory |", 1)[1], method)


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
    assert "1 regression(s) in 1 time comparison(s) against 1 baseline run(s)" in out


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
    assert code == 3 and "not judged: batched step 2x the baseline's" in line(out, "vmap")
    assert "UNJUDGED: 0 of 1 benchmark(s) judged by time or count, fewer than 50% (1 with the batched step beyond --max-drift" in out
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
    """Not one of its times: the 1-minute load lags, so a benchmark of a loaded run that read
    under the cores was not timed on a quiet machine either (the storage rule, too)."""
    base = {"batched": rounds(1.0, seed=1), "vmap": rounds(2.0, seed=2), "loop": rounds(9.0, seed=7)}
    times = {"batched": rounds(1.0, seed=3), "vmap": rounds(4.0, seed=4), "loop": rounds(9.0, seed=8)}
    cur = write_run(tmp_path / "cur.json", times, vmap={"load": 1.9}, loop={"load": 2.5})
    assert main([str(write_run(tmp_path / "base.json", base)), str(cur)]) == 3
    out = capsys.readouterr().out
    assert "not judged: load 2.5 on 2 cores" in line(out, "vmap") and "not judged: load 2.5 on 2 cores" in line(out, "loop")
    assert "2 time comparison(s) not judged: 2 with a load at or above the core count recorded in every current run" in out
    quiet = write_run(
        tmp_path / "quiet.json", {"batched": rounds(1.0, seed=5), "vmap": rounds(4.0, seed=6), "loop": rounds(9.0, seed=9)},
        vmap={"load": 1.2},
    )
    assert main([str(tmp_path / "base.json"), "--current", str(cur), str(quiet)]) == 1
    assert "REGRESSION" in line(capsys.readouterr().out, "vmap")
    # the other way round, a baseline file given by hand: a quiet run is not judged against it
    assert main([str(cur), str(quiet)]) == 3
    out = capsys.readouterr().out
    assert "not judged: baseline recorded at load 2.5 on 2 cores" in line(out, "vmap")
    assert "2 with a load at or above the core count recorded in every baseline run" in out


def test_a_method_that_allocates_more_is_hungrier_per_figure(tmp_path, capsys):
    """vmap allocates one more copy of its output (+6%, its peak unmoved); the loop allocates 0.5% more."""
    times = {"batched": rounds(1.0, seed=1), "vmap": rounds(2.0, seed=2), "loop": rounds(9.0, seed=3)}
    before = {"vmap": {"peak_alloc_bytes": 426052, "allocated_bytes": 897808}, "loop": {"allocated_bytes": 2_000_000}}
    after = {"vmap": {"peak_alloc_bytes": 426052, "allocated_bytes": 951676}, "loop": {"allocated_bytes": 2_010_000}}
    base = write_run(tmp_path / "base.json", times, **before)
    cur = write_run(tmp_path / "cur.json", times, **after)
    assert main([str(base), str(cur)]) == 1
    out = capsys.readouterr().out.split("| memory |", 1)[1]
    assert "| vmap | peak alloc bytes | 416.1 KiB | 416.1 KiB | +0.0% | 4.2 KiB | ok |" in out
    assert "| vmap | allocated bytes | 876.8 KiB | 929.4 KiB | +6.0% | 8.8 KiB | HUNGRIER |" in out
    assert "| loop | allocated bytes | 1.9 MiB | 1.9 MiB | +0.5% | 19.5 KiB | ok |" in out
    assert "1 HUNGRIER in 3 memory comparison(s) (allowed: 1.0% or 2x the baseline runs' range)" in out


def test_the_range_of_the_baseline_runs_widens_the_memory_allowance(tmp_path, capsys):
    """Baseline peaks 100, 112 and 120 MiB (range 20): 135 MiB is within 2x that range of 112, 160 is not."""
    mib = 2**20
    times = {"batched": rounds(1.0, seed=1), "vmap": rounds(2.0, seed=2)}
    paths = [write_run(tmp_path / f"base{p}.json", times, vmap={"peak_alloc_bytes": p * mib}) for p in (100, 112, 120)]
    for peak, verdict, code in ((135, "| 40.0 MiB | ok |", 0), (160, "| 40.0 MiB | HUNGRIER |", 1)):
        cur = write_run(tmp_path / "cur.json", times, vmap={"peak_alloc_bytes": peak * mib})
        assert main([*map(str, paths), str(cur)]) == code
        assert verdict in memory_line(capsys.readouterr().out, "vmap")


def test_resident_memory_of_older_runs_is_not_judged(tmp_path, capsys):
    times = {"batched": rounds(1.0, seed=1), "vmap": rounds(2.0, seed=2)}
    base = write_run(tmp_path / "base.json", times, vmap={"peak_rss_bytes": 50 * 2**20})
    cur = write_run(tmp_path / "cur.json", times, vmap={"peak_rss_bytes": 60 * 2**20, "peak_alloc_bytes": 2**20})
    assert main([str(base), str(cur)]) == 0
    assert "memory comparison" not in capsys.readouterr().out


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
    assert capsys.readouterr().err == (
        f"error: {loaded}: not stored as a baseline: 1 of 2 benchmark(s) recorded at a load at or above the 2 cores "
        "(cpu-float32-simple_cnn-B64/vmap); store a run of a quiet machine\n"
    )


def test_autosave_and_compare_store_by_the_same_rule():
    """pytest-benchmark's --benchmark-save/--benchmark-autosave is turned off, with the compare step's line."""
    from types import SimpleNamespace

    from harness.benchmarks.records import baseline_refusal, hold_back_unfit_baseline

    def session(load: float, **storing: bool) -> SimpleNamespace:
        bench = SimpleNamespace(extra_info={"case": CASE, "method": "vmap", "load": load}, group=CASE, param="vmap", name="b")
        return SimpleNamespace(benchmarks=[bench], save=storing.get("save"), autosave=storing.get("autosave"))

    loaded = session(2.5, autosave=True)
    line = hold_back_unfit_baseline(loaded, 2)
    assert line == baseline_refusal([{"extra_info": {"case": CASE, "method": "vmap", "load": 2.5}}], 2)
    assert line.startswith("not stored as a baseline: 1 of 1 benchmark(s)") and "\n" not in line
    assert not loaded.autosave and not loaded.save
    quiet = session(0.5, save="baseline")
    assert hold_back_unfit_baseline(quiet, 2) is None and quiet.save == "baseline"
    assert hold_back_unfit_baseline(session(2.5), 2) is None, "a run that stores nothing is left alone"


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
    def broken(name: str, change) -> Path:
        data = json.loads(good.read_text())
        change(data)
        (tmp_path / name).write_text(json.dumps(data))
        return tmp_path / name

    def first(data: dict) -> dict:
        return data["benchmarks"][0]

    cases = [
        (broken("notarecord.json", lambda d: d.update(benchmarks=[1])), "benchmark 'number 1' is not as pytest-benchmark writes it: 1 is not an object"),
        (broken("textround.json", lambda d: first(d)["stats"].update(data=["x"])), "stats.data is not a list of positive times"),
        (broken("zeromedian.json", lambda d: first(d)["stats"].update(median=0)), "stats.median is 0, not a positive time"),
        (broken("nostats.json", lambda d: first(d).update(stats=[1])), "no 'stats' object"),
        (broken("machine.json", lambda d: d.update(machine_info=[])), "not pytest-benchmark JSON (expected a 'machine_info' object"),
        (broken("peak.json", lambda d: first(d)["extra_info"].update(peak_rss_bytes="lots")), "extra_info.peak_rss_bytes is 'lots', not a count"),
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


def test_compare_help_names_the_options_and_exits_0(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["--help"])
    out = capsys.readouterr().out
    assert exit.value.code == 0 and "--count-threshold" in out and "fewer than 50% of the benchmarks" in out


def test_the_module_entry_point_help_lists_the_commands_and_exits_0():
    proc = subprocess.run([sys.executable, "-m", "harness", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and re.search(r"\n  same-verdicts +check that several runs", proc.stdout)


@pytest.mark.integration  # starts pytest or Python in another process
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


# Counts, machines, and a guard that judged too little.

#: py-cpuinfo's view of three CPUs: two models with the same SIMD extensions, and one with AVX-512.
AVX2_CPU = {"vendor_id_raw": "AuthenticAMD", "brand_raw": "AMD EPYC", "family": 25, "model": 1, "stepping": 1, "flags": ["avx", "avx2", "fma", "sse4_2"]}
AVX2_CPU_FASTER = {**AVX2_CPU, "model": 17}
AVX512_CPU = {**AVX2_CPU, "family": 26, "model": 2, "flags": [*AVX2_CPU["flags"], "avx512f", "avx512_vnni"]}
#: The AVX2 CPU's SIMD extensions on an Intel CPU: MKL may take other code there.
INTEL_AVX2_CPU = {**AVX2_CPU, "vendor_id_raw": "GenuineIntel", "brand_raw": "Intel Xeon", "family": 6}
TIMES = {"batched": rounds(1.0, seed=1), "vmap": rounds(2.0, seed=2), "loop": rounds(9.0, seed=3)}


def counted(instructions: dict[str, int], **extra: dict[str, object]) -> dict[str, dict[str, object]]:
    """``extra_info`` per method: its instruction count per call, and whatever else is given."""
    return {method: {"instructions": count, **extra.get(method, {})} for method, count in instructions.items()}


def count_line(out: str, method: str) -> str:
    return line(out.split("| count per call |", 1)[1], method)


#: The smallest call counted in the benchmarks (vmap-compiled on mlp at B=1: 773,844 to 776,423, docs/calibration.md).
SMALLEST_CALL = 773_844


@pytest.mark.parametrize("size", [SMALLEST_CALL, 4 * 10**8])
@pytest.mark.parametrize("increase, verdict, code", [(0.03, "MORE WORK", 1), (0.01, "MORE WORK", 1), (-0.03, "less work", 0)])
def test_a_count_1_percent_up_is_more_work_on_any_counted_call(tmp_path, capsys, size, increase, verdict, code):
    base = write_run(tmp_path / "base.json", TIMES, **counted({"batched": 10**8, "vmap": size}))
    now = round(size * (1 + increase))
    cur = write_run(tmp_path / "cur.json", TIMES, **counted({"batched": 10**8, "vmap": now}))
    assert main([str(base), str(cur)]) == code
    out = capsys.readouterr().out
    assert f"| instructions | {size:,} | {now:,} | {increase:+.2%} |" in count_line(out, "vmap")
    assert verdict in count_line(out, "vmap") and "| +0.00% | 0.50% | ok |" in count_line(out, "batched")
    assert f"{code} MORE WORK in 2 instructions comparison(s) (allowed: 0.5% (torch.compile'd: 1.0%) or {COUNT_FLOORS['instructions']:,} per call" in out
    assert main([str(base), str(cur), "--count-threshold", "0.04"]) == 0
    assert "| 4.00% | ok |" in count_line(capsys.readouterr().out, "vmap")


def test_a_count_within_the_floor_or_the_threshold_is_ok(tmp_path, capsys):
    """What runs of unchanged code gave apart, in absolute numbers on a small call and as a fraction on a large one."""
    floor = COUNT_FLOORS["instructions"]
    for size, now in ((SMALLEST_CALL, SMALLEST_CALL + floor), (4 * 10**8, round(4 * 10**8 * (1 + DEFAULT_COUNT_THRESHOLD)))):
        base = write_run(tmp_path / "base.json", TIMES, **counted({"vmap": size}))
        cur = write_run(tmp_path / "cur.json", TIMES, **counted({"vmap": now}))
        assert main([str(base), str(cur)]) == 0
        assert "| ok |" in count_line(capsys.readouterr().out, "vmap")


@pytest.mark.parametrize("increase, verdict", [(0.008, "ok"), (0.012, "MORE WORK")])
def test_a_compiled_call_is_allowed_1_percent(tmp_path, capsys, increase, verdict):
    """torch.compile'd calls move by up to 0.45% between processes: their allowance is 1%, not 0.5%;
    a larger ``--count-threshold`` still holds for them."""
    times = {**TIMES, "vmap-compiled": rounds(1.5, seed=4)}
    base = write_run(tmp_path / "base.json", times, **counted({"vmap": SMALLEST_CALL, "vmap-compiled": SMALLEST_CALL}))
    now = round(SMALLEST_CALL * (1 + increase))
    cur = write_run(tmp_path / "cur.json", times, **counted({"vmap": now, "vmap-compiled": now}))
    assert main([str(base), str(cur)]) == 1
    out = capsys.readouterr().out
    assert "| 1.00% | " + verdict + " |" in count_line(out, "vmap-compiled")
    assert "| 0.52% | MORE WORK |" in count_line(out, "vmap")  # the floor, 4,000
    assert main([str(base), str(cur), "--count-threshold", "0.02"]) == 0
    assert "| 2.00% | ok |" in count_line(capsys.readouterr().out, "vmap-compiled")


def test_the_spread_of_several_baseline_runs_counts_widens_the_allowance(tmp_path, capsys):
    """Counts 1.00M, 1.01M and 1.02M (median 1.01M, spread 10k): 2x the spread allows +20k, not +30k."""
    paths = [write_run(tmp_path / f"base{n}.json", TIMES, **counted({"vmap": n})) for n in (1_000_000, 1_010_000, 1_020_000)]
    for count, code in ((1_030_000, 0), (1_040_000, 1)):
        cur = write_run(tmp_path / "cur.json", TIMES, **counted({"vmap": count}))
        assert main([*map(str, paths), str(cur)]) == code
        assert ("MORE WORK" in count_line(capsys.readouterr().out, "vmap")) == bool(code)


def test_several_current_runs_counts_are_judged_by_their_median(tmp_path, capsys):
    base = write_run(tmp_path / "base.json", TIMES, **counted({"vmap": 10**6}))
    for counts, code in (((10**6, 1_030_000, 10**6), 0), ((1_030_000, 10**6, 1_030_000), 1)):
        currents = [write_run(tmp_path / f"cur{i}.json", TIMES, **counted({"vmap": n})) for i, n in enumerate(counts)]
        assert main([str(base), "--current", *map(str, currents)]) == code
        assert ("| 1,000,000 | 1,030,000 | +3.00% | 0.50% | MORE WORK |" in count_line(capsys.readouterr().out, "vmap")) == bool(code)


def test_one_kernel_launch_more_per_call_is_more_launches(tmp_path, capsys):
    base = write_run(tmp_path / "base.json", TIMES, vmap={"kernel_launches": 300}, loop={"kernel_launches": 2000})
    cur = write_run(tmp_path / "cur.json", TIMES, vmap={"kernel_launches": 301}, loop={"kernel_launches": 2000})
    assert main([str(base), str(cur)]) == 1
    out = capsys.readouterr().out
    assert "| kernel launches | 300 | 301 | +0.33% | 0.00% | MORE LAUNCHES |" in count_line(out, "vmap")
    assert "| kernel launches | 2,000 | 2,000 | +0.00% | 0.00% | ok |" in count_line(out, "loop")
    assert "1 MORE LAUNCHES in 2 kernel launches comparison(s) (allowed: none beyond 2x the baseline runs' spread)" in out


def test_cuda_peak_bytes_are_held_to_the_memory_threshold(tmp_path, capsys):
    mib = 2**20
    base = write_run(tmp_path / "base.json", TIMES, vmap={"peak_bytes": 100 * mib})
    for peak, verdict, code in ((100.5, "ok", 0), (103, "HUNGRIER", 1)):
        cur = write_run(tmp_path / "cur.json", TIMES, vmap={"peak_bytes": int(peak * mib)})
        assert main([str(base), str(cur)]) == code
        assert f"| peak bytes | 100.0 MiB | {peak:.1f} MiB |" in memory_line(capsys.readouterr().out, "vmap")
        assert verdict


def loaded(methods: dict, load: float = 2.9) -> dict[str, dict[str, object]]:
    return {method: {"load": load} for method in methods}


@pytest.mark.parametrize(
    "current, reason",
    [
        ({"times": TIMES, **loaded({"vmap": None})}, "2 with a load at or above the core count recorded in every current run"),
        ({"times": {m: [2 * t for t in r] if m == "batched" else [1.6 * t for t in r] for m, r in TIMES.items()}},
         "2 with the batched step beyond --max-drift of the baseline runs' in every current run"),
        ({"times": TIMES, "cpu": AVX2_CPU_FASTER}, "2 with no baseline run on this CPU"),
    ],
    ids=["high-load", "drifted", "another-cpu"],
)
def test_a_comparison_that_judged_nothing_fails_unless_allowed(tmp_path, capsys, current, reason):
    base = write_run(tmp_path / "base.json", TIMES, cpu=AVX2_CPU)
    cur = write_run(tmp_path / "cur.json", **{"cpu": AVX2_CPU, **current})
    assert main([str(base), str(cur)]) == 3
    out = capsys.readouterr().out
    assert f"UNJUDGED: 0 of 2 benchmark(s) judged by time or count, fewer than 50% ({reason}); " in out
    assert "0 regression(s) in 0 time comparison(s)" in out
    for method in ("vmap", "loop"):
        _, _, _, current, change, _, p, verdict = cells(line(out, method))
        assert (current, change, p) == ("—", "—", "—") and verdict.startswith("not judged: ")
    assert "nan" not in out.lower() and "p = 1" not in out
    assert main([str(base), str(cur), "--allow-unjudged"]) == 0
    assert "UNJUDGED" not in capsys.readouterr().out


def test_half_the_benchmarks_judged_is_enough_and_fewer_is_not(tmp_path, capsys):
    """Rows drop out one by one in a slow spell: a method whose paired batched step ran 2.5x as
    long as the baseline's is not judged by time."""
    times = {**TIMES, "functorch": rounds(3.0, seed=4), "ghost": rounds(5.0, seed=5)}
    base = write_run(tmp_path / "base.json", times)
    slow_spell = {"batched_rounds": [2.5 * t for t in times["batched"]]}
    for drifted, code in ((("vmap", "loop"), 0), (("vmap", "loop", "functorch"), 3)):
        cur = write_run(tmp_path / "cur.json", times, **{method: slow_spell for method in drifted})
        assert main([str(base), str(cur)]) == code
        out = capsys.readouterr().out
        assert f"{len(drifted)} time comparison(s) not judged" in out
        assert ("UNJUDGED: 1 of 4 benchmark(s) judged by time or count, fewer than 50%" in out) == bool(code)
        assert ("UNJUDGED" in out) == bool(code)


def test_rows_that_were_judged_without_a_test_show_no_p_value(tmp_path, capsys):
    code, out, _ = run(tmp_path, TIMES, TIMES, capsys=capsys)
    assert code == 0 and line(out, "vmap").endswith("| 10% | — | ok |")


def test_counts_are_judged_at_any_load_and_count_as_judged(tmp_path, capsys):
    base = write_run(tmp_path / "base.json", TIMES, **counted({"vmap": 10**6, "loop": 5 * 10**6}))
    cur = write_run(tmp_path / "cur.json", TIMES, **counted({"vmap": 10**6, "loop": 5_200_000}, **loaded(TIMES)))
    assert main([str(base), str(cur)]) == 1
    out = capsys.readouterr().out
    assert "not judged: load 2.9 on 2 cores" in line(out, "vmap") and "MORE WORK" in count_line(out, "loop")
    cur = write_run(tmp_path / "cur.json", TIMES, **counted({"vmap": 10**6, "loop": 5 * 10**6}, **loaded(TIMES)))
    assert main([str(base), str(cur)]) == 0
    assert "UNJUDGED" not in capsys.readouterr().out


def test_another_cpu_is_not_judged_by_time_but_by_counts_of_the_same_vendor_and_isa(tmp_path, capsys):
    """A 2x faster CPU of the same machine class: its times say nothing against the baseline's,
    its instruction counts do where the vendor and the SIMD extensions (the kernels run) are the same."""
    base = write_run(tmp_path / "base.json", TIMES, cpu=AVX2_CPU, **counted({"vmap": 1000, "loop": 5000}))
    fast = {m: [t / 2 for t in r] for m, r in TIMES.items()}
    cur = write_run(tmp_path / "cur.json", fast, cpu=AVX2_CPU_FASTER, **counted({"vmap": 1000, "loop": 5000}))
    assert main([str(base), str(cur)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(
        "this run's machine: AMD EPYC (family 25, model 17, stepping 1), AVX2; 1 of 1 baseline run(s) were recorded on "
        "another (AMD EPYC (family 25, model 1, stepping 1), AVX2): times are judged against the 0 of this CPU, counts "
        "(where recorded) against the 1 of its vendor and ISA"
    )
    assert "| vmap | — | — | — | — | — | not judged: no baseline run on this CPU |" in line(out, "vmap")
    assert "| ok |" in count_line(out, "vmap") and "UNJUDGED" not in out
    other_isa = write_run(tmp_path / "avx512.json", fast, cpu=AVX512_CPU, **counted({"vmap": 1000, "loop": 5000}))
    assert main([str(base), str(other_isa)]) == 3
    out = capsys.readouterr().out
    assert "| count per call |" not in out and "UNJUDGED: 0 of 2 benchmark(s) judged" in out
    assert "against the 0 of its vendor and ISA" in out and "AVX512" in out
    intel = write_run(tmp_path / "intel.json", fast, cpu=INTEL_AVX2_CPU, **counted({"vmap": 1000, "loop": 5000}))
    assert main([str(base), str(intel)]) == 3
    assert "against the 0 of its vendor and ISA" in capsys.readouterr().out


def test_auto_stores_the_runs_of_a_cpu_it_has_no_baseline_of_when_asked(tmp_path, capsys):
    from harness.benchmarks.judge import baseline_folder

    root = tmp_path / "stored-baselines"
    first = write_run(tmp_path / "first.json", TIMES, cpu=AVX2_CPU)
    assert main(["auto", str(first), "--baselines", str(root), "--if-missing", "store"]) == 0
    capsys.readouterr()
    other = write_run(tmp_path / "other.json", TIMES, cpu=AVX2_CPU_FASTER)
    assert main(["auto", str(other), "--baselines", str(root)]) == 3
    assert "not judged: no baseline run on this CPU" in line(capsys.readouterr().out, "vmap")
    assert main(["auto", str(other), "--baselines", str(root), "--if-missing", "store"]) == 0
    assert "no stored run of this CPU (AMD EPYC (family 25, model 17, stepping 1), AVX2): stored" in capsys.readouterr().out
    folder = baseline_folder(root, json.loads(first.read_text())["machine_info"])
    assert sorted(p.name for p in folder.glob("*/*.json")) == ["0001_baseline.json", "0002_baseline.json"]
    assert main(["auto", str(other), "--baselines", str(root)]) == 0
    assert "| ok |" in line(capsys.readouterr().out, "vmap"), "judged against the run of its own CPU"


def test_current_runs_of_different_machines_and_bad_counts_are_bad_input(tmp_path, capsys):
    base = write_run(tmp_path / "base.json", TIMES)
    one, two = (write_run(tmp_path / f"{cpu['model']}.json", TIMES, cpu=cpu) for cpu in (AVX2_CPU, AVX2_CPU_FASTER))
    assert main([str(base), "--current", str(one), str(two)]) == 2
    assert "the current runs were recorded on different machines" in capsys.readouterr().err
    bad = write_run(tmp_path / "bad.json", TIMES, vmap={"instructions": "many"})
    assert main([str(base), str(bad)]) == 2
    assert "extra_info.instructions is 'many', not a count" in capsys.readouterr().err
