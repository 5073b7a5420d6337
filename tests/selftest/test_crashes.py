"""A method that kills its process is that test's failure naming the signal; the run goes on (under pytest-xdist)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness.checking.crashes import describe_fault

PLUGINS = Path(__file__).parent / "plugins"

SEGFAULT_REPORT = """Fatal Python error: Segmentation fault

Current thread 0x00007f (most recent call first):
  File "/lib/python3.11/ctypes/__init__.py", line 519 in string_at
  File "/plugins/segfaulting_method.py", line 16 in segfault
  File "/harness/checking/runner.py", line 34 in _call
"""


def test_a_fault_report_names_the_signal_and_the_innermost_frame():
    described = describe_fault(SEGFAULT_REPORT)
    assert described.startswith("killed by SIGSEGV (Segmentation fault); innermost frames: ")
    assert 'line 519 in string_at <- File "/plugins/segfaulting_method.py", line 16 in segfault' in described


def test_an_abort_is_named_too():
    assert describe_fault("Fatal Python error: Aborted\n\n").startswith("killed by SIGABRT (Aborted)")


def test_a_death_without_a_report_says_what_can_cause_it():
    assert "SIGKILL, which the out-of-memory killer sends" in describe_fault("")


@pytest.mark.integration  # starts pytest in another process
def test_a_segfaulting_method_fails_its_tests_and_the_run_goes_on(subprocess_env):
    env = {**subprocess_env, "PYTHONPATH": str(PLUGINS)}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:randomly", "-p", "segfaulting_method", "-n", "1",
         "--psg-methods", "segfault", "-k", "segfault and (float64-conv1d or float64-mlp-B)", "-q",
         "harness/suite/test_oracle.py"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    # each crash is named in its failure's report and, where the terminal is wide enough, in the summary line too
    crashed = re.findall(r"crashed while running '.*?\[cpu-float64-(conv1d[^\]]*)-segfault\]': killed by SIGSEGV", out)
    assert sorted(set(crashed)) == ["conv1d-B1", "conv1d-B7", "conv1d-B7-sum"], out
    assert "in segfault" in out, "the report quotes the method's frame"
    assert re.search(r"3 failed, 3 passed", out), "the mlp cases ran after the crashes"
