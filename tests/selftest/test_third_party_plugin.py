"""A method registered from a separate module loaded with ``-p`` runs through the suite (DESIGN.md)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PLUGIN = '''
from harness import get_method, register_method


@register_method("my-method")
def my_method(case):
    return get_method("vmap")(case)


@register_method("my-wrong-method")
def my_wrong_method(case):
    grads = get_method("vmap")(case)
    return {name: g.sum(0, keepdim=True).expand_as(g) for name, g in grads.items()}
'''


def run_pytest(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    (tmp_path / "my_psg.py").write_text(PLUGIN)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    cmd = [sys.executable, "-m", "pytest", "-p", "my_psg", "-v", *args]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def test_registered_method_runs_and_appears_in_test_ids(tmp_path):
    proc = run_pytest(tmp_path, "tests/test_oracle.py", "-k", "cpu and mlp-B7-my-method")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for precision in ("float64", "float32", "bf16"):
        assert f"test_matches_oracle[cpu-{precision}-mlp-B7-my-method] PASSED" in proc.stdout
    assert "3 passed" in proc.stdout


def test_wrong_registered_method_fails_with_a_readable_message(tmp_path):
    proc = run_pytest(tmp_path, "tests/test_oracle.py", "-k", "cpu-float64-mlp-B7-my-wrong-method")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "method 'my-wrong-method' on cpu-float64-mlp-B7 differs from the reference: worst at" in proc.stdout
    assert "harness/compare.py" not in proc.stdout, "the failure shows the harness' internals"
