"""Under pytest-xdist each worker takes its share of the cores (and its own GPU), and benchmarks refuse to run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness.pytest_plugin import _share_the_machine_with_the_other_workers, selects_benchmarks


@pytest.mark.parametrize("cores, workers, threads", [(2, 2, 1), (16, 4, 4), (2, 3, 1), (8, 1, 8)])
def test_a_worker_runs_its_share_of_the_cores(monkeypatch, cores, workers, threads):
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", str(workers))
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(cores)))
    monkeypatch.setattr(torch, "get_num_threads", lambda: cores)
    chosen = []
    monkeypatch.setattr(torch, "set_num_threads", chosen.append)
    _share_the_machine_with_the_other_workers()
    assert chosen == [threads]


@pytest.mark.parametrize("worker, gpus, device", [("gw0", 4, 0), ("gw5", 4, 1), ("gw1", 2, 1)])
def test_a_worker_takes_its_own_gpu(monkeypatch, worker, gpus, device):
    monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "8")
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    chosen = []
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    _share_the_machine_with_the_other_workers()
    assert chosen == [device]


def test_outside_xdist_nothing_changes(monkeypatch):
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: pytest.fail("set_num_threads called outside xdist"))
    _share_the_machine_with_the_other_workers()


@pytest.mark.parametrize(
    "expression, selects",
    [("", False), ("slow", False), ("not benchmark", False), ("benchmark", True), ("benchmark and slow", True),
     ("cuda and not slow", False), ("not slow and benchmark", True), ("slow or benchmark", True),
     ("benchmark and", False)],  # not an expression: pytest says so in one line
)
def test_which_marker_expressions_select_benchmarks(expression, selects):
    assert selects_benchmarks(expression) is selects


@pytest.mark.integration  # starts pytest or Python in another process
@pytest.mark.parametrize("markers", ["benchmark", "benchmark and slow"])
def test_benchmarks_under_xdist_stop_with_one_line_and_a_non_zero_exit(subprocess_env, markers):
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "-m", markers, "harness/suite/test_benchmarks.py"],
        capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2], env=subprocess_env,
    )
    assert proc.returncode == pytest.ExitCode.USAGE_ERROR
    assert "benchmarks time one process on a quiet machine: run -m benchmark without -n" in proc.stderr


@pytest.mark.integration  # starts pytest or Python in another process
def test_a_benchmark_json_whose_folder_cannot_be_made_is_a_usage_error(subprocess_env, tmp_path):
    (tmp_path / "afile").write_text("")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "benchmark", f"--benchmark-json={tmp_path}/afile/run.json", "--co", "-q"],
        capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2], env=subprocess_env,
    )
    assert proc.returncode == pytest.ExitCode.USAGE_ERROR
    assert f"ERROR: --benchmark-json: cannot make its folder {tmp_path}/afile" in proc.stderr, proc.stderr
