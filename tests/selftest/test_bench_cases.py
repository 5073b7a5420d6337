"""A plugin's own benchmark cases: its model at its batch sizes, timed (and counted, if it asks)
for every method, as the built-in cases are."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.benchmarks import cases
from harness.benchmarks.cases import BenchmarkTrial, benchmark_trials, register_benchmark_case

PLUGINS = Path(__file__).parent / "plugins"


@pytest.fixture
def added(monkeypatch):
    """Cases added here are gone afterwards."""
    monkeypatch.setattr(cases, "ADDED_CASES", {})
    return cases.ADDED_CASES


def test_an_added_case_is_benchmarked_for_every_method_and_counted_where_asked(added):
    register_benchmark_case("conv1d", (3,), counted=True)
    register_benchmark_case("conv1d", (64,), slow=True)
    trials = [t for t in benchmark_trials() if t.model == "conv1d"]
    built_in = [t for t in benchmark_trials() if (t.model, t.batch_size) == ("mlp", 8)]
    assert {t.method for t in trials if t.batch_size == 3} == {t.method for t in built_in}
    assert all(t.slow == (t.batch_size == 64) for t in trials)
    assert BenchmarkTrial("conv1d", 3, "float32", "cpu", "vmap").counted
    assert not BenchmarkTrial("conv1d", 3, "float32", "cuda", "vmap").counted
    assert not BenchmarkTrial("conv1d", 64, "float32", "cpu", "vmap").counted


def test_a_case_that_cannot_be_added_says_why(added):
    with pytest.raises(KeyError, match="unknown model 'no_such_model'"):
        register_benchmark_case("no_such_model", (4,))
    with pytest.raises(ValueError, match="positive ints"):
        register_benchmark_case("conv1d", (0,))
    with pytest.raises(ValueError, match="mlp at B=8 is a built-in benchmark case already"):
        register_benchmark_case("mlp", (8,))
    assert not added


@pytest.mark.integration  # starts pytest in another process
def test_a_plugins_model_appears_in_a_benchmark_run_of_its_method(tmp_path, subprocess_env):
    out = tmp_path / "run.json"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "own_benchmark", "-m", "benchmark",
         "--psg-methods", "vmap-copy", "-k", "cpu and tiny_mlp", f"--benchmark-json={out}", "harness/suite/test_benchmarks.py"],
        capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2],
        env={**subprocess_env, "PYTHONPATH": str(PLUGINS)},
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    recorded = {(b["extra_info"]["case"], b["extra_info"]["method"]) for b in json.loads(out.read_text())["benchmarks"]}
    assert recorded == {
        (f"cpu-float32-tiny_mlp-B{b}", method) for b in (4, 32) for method in ("batched", "loop", "vmap-copy")
    }
