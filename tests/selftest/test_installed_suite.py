"""The suite from another project: the built wheel, installed into a fresh virtual environment,
run on a plugin written outside this repository (DESIGN.md's third-party contract).

The environment reuses this one's packages (torch, Opacus, pytest, ...) through a ``.pth`` line,
so nothing is downloaded; the harness itself comes from the wheel only.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import site
import subprocess
import sys
import sysconfig
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

#: Each test starts Python processes in a new virtual environment: slow by nature (about 30 s in
#: all), so left out of the default run; .ci/run runs them after it (-m integration).
pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]

PLUGIN = '''
"""A project's own methods and model, as a pytest plugin (-p my_psg)."""
import torch
from torch import nn

from harness import ModelSpec, ZooFailure, add_expected_failures, get_method, register_method, register_model


@register_method("my-method")
def my_method(case):
    return get_method("vmap")(case)


@register_method("my-wrong-method")
def my_wrong_method(case):
    grads = get_method("vmap")(case)
    return {name: g.sum(0, keepdim=True).expand_as(g) for name, g in grads.items()}


def _batch(batch_size, generator):
    return torch.randn(batch_size, 5, generator=generator), torch.randint(3, (batch_size,), generator=generator)


register_model(ModelSpec("my_model", lambda: nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)), _batch,
                         numerics="smooth"))

# my-method cannot do LSTMs, and says so: those trials are strict xfails
add_expected_failures(ZooFailure(methods=("my-method",), models=("lstm_text",), error="no LSTM support",
                                 reason="my-method has no LSTM support (declared by the plugin)"))


@register_method("my-method", replace=True)
def my_method_without_lstm(case):
    if case.model_name == "lstm_text":
        raise NotImplementedError("no LSTM support")
    return my_method(case)
'''


#: The storage rule refuses a run recorded at a load at or above the core count (tested in
#: test_benchcompare.py); this module makes the project's run read a quiet machine, so where the
#: run is stored does not depend on what else the machine is doing.
QUIET_MACHINE = "import os\n\nos.getloadavg = lambda: (0.0, 0.0, 0.0)\n"


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path, dict[str, str]]:
    """(the venv's python, a project folder outside the repository with my_psg.py, the environment)."""
    root = tmp_path_factory.mktemp("installed")
    source = root / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "harness", source / "harness", ignore=shutil.ignore_patterns("__pycache__"))
    build = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(root / "dist"),
                  str(source)], root, dict(os.environ))
    assert build.returncode == 0, build.stdout + build.stderr
    wheel = next((root / "dist").glob("psg_harness-*.whl"))

    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                        root, dict(os.environ)).stdout.strip())
    # this environment's packages (torch, ...) after the venv's own: a path line, so the
    # editable install's import hook in this environment is not loaded there
    outer = [p for p in [*site.getsitepackages(), sysconfig.get_paths()["purelib"]] if Path(p).is_dir()]
    (purelib / "zz_outer_env.pth").write_text("\n".join(dict.fromkeys(outer)) + "\n")
    install = _run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", str(purelib),
                    str(wheel)], root, dict(os.environ))
    assert install.returncode == 0, install.stdout + install.stderr

    project = root / "project"
    project.mkdir()
    (project / "my_psg.py").write_text(PLUGIN)
    (project / "quiet_machine.py").write_text(QUIET_MACHINE)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "PYTHONPATH", "VIRTUAL_ENV"))}
    env["PYTHONPATH"] = str(project)
    return python, project, env


def test_the_harness_comes_from_the_wheel(installed):
    python, project, env = installed
    proc = _run([str(python), "-c", "import harness.suite, harness.pytest_plugin; print(harness.__file__)"], project, env)
    assert proc.returncode == 0, proc.stderr
    assert str(python.parents[1]) in proc.stdout and str(REPO) not in proc.stdout, proc.stdout


def test_installed_suite_runs_a_plugins_methods_and_model(installed):
    """``--pyargs harness -p my_psg --psg-methods``: the plugin's methods only (and the loop), its
    model like a zoo model, its own support-matrix row, no folders left in the project."""
    python, project, env = installed
    junit = project.parent / "junit.xml"
    proc = _run([str(python), "-m", "pytest", "--pyargs", "harness", "-p", "my_psg", "-p", "no:randomly",
                 "--psg-methods", "my-method,my-wrong-method", "-k", "float64 and (mlp-B7 or my_model-B7 or lstm_text-B7)",
                 f"--junitxml={junit}", "-q"], project, env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    outcomes = {}
    for case in ET.parse(junit).iter("testcase"):
        kind = next((child for child in case if child.tag in ("failure", "skipped", "error")), None)
        outcomes[case.get("name")] = (
            "passed" if kind is None else "xfailed" if kind.get("type") == "pytest.xfail" else kind.tag
        )
    assert outcomes["test_matches_oracle[cpu-float64-mlp-B7-my-method]"] == "passed"
    assert outcomes["test_matches_oracle[cpu-float64-my_model-B7-my-method]"] == "passed"
    assert "test_matches_oracle[cpu-float64-my_model-B7-loop]" not in outcomes, "the oracle was checked against itself"
    assert outcomes["test_matches_oracle[cpu-float64-mlp-B7-my-wrong-method]"] == "failure"
    assert outcomes["test_matches_oracle[cpu-float64-lstm_text-B7-my-method]"] == "xfailed"
    assert not [name for name in outcomes if name.endswith("-vmap]")], "--psg-methods let a built-in method through"
    assert "method 'my-wrong-method' on cpu-float64-mlp-B7 differs from the reference: worst at" in proc.stdout
    assert "warnings summary" not in proc.stdout, proc.stdout
    # pytest's own cache aside, the run left nothing in the project (no empty baselines/ or .benchmarks/)
    left = sorted(p.name for p in project.iterdir() if p.name not in ("__pycache__", ".pytest_cache"))
    assert left == ["my_psg.py", "quiet_machine.py"], left


def test_check_method_gives_the_same_verdicts_without_pytest(installed):
    python, project, env = installed
    script = (
        "import json, my_psg, harness\n"
        "for name in ('my-method', 'my-wrong-method'):\n"
        "    report = harness.check_method(name, grids=['oracle'], models=['mlp', 'lstm_text'])\n"
        "    print(json.dumps({'ok': report.ok, 'counts': report.counts(), 'text': str(report)}))\n"
    )
    proc = _run([str(python), "-c", script], project, env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    right, wrong = (json.loads(line) for line in proc.stdout.splitlines())
    assert right["ok"] and right["counts"].get("xfailed") and "failed" not in right["counts"], right
    assert not wrong["ok"] and wrong["counts"]["failed"] >= 1, wrong
    assert (
        "FAILED   oracle[cpu-float64-mlp-B7-my-wrong-method]: ToleranceError: method 'my-wrong-method' on "
        "cpu-float64-mlp-B7 differs from the reference: worst at"
    ) in wrong["text"], wrong["text"]


def test_a_projects_own_test_file_is_parametrized_over_the_checks(installed):
    """``parametrize_with_checks``, in the project's own tests: its method's trials, with its rows' xfails."""
    python, project, env = installed
    tests = project.parent / "own_tests"
    tests.mkdir(exist_ok=True)
    (tests / "test_mine.py").write_text(
        "import my_psg\n"
        "from harness import parametrize_with_checks\n\n\n"
        "@parametrize_with_checks(['my-method'], grids=['oracle'])\n"
        "def test_my_method(trial, check):\n"
        "    check(trial)\n"
    )
    proc = _run([str(python), "-m", "pytest", "-p", "no:randomly", "-q", "-rxX", "-k", "cpu-float64-mlp-B or cpu-float64-lstm_text-B",
                 str(tests)], project, env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "test_mine.py::test_my_method[oracle-cpu-float64-lstm_text-B1-my-method] - my-method has no LSTM" \
        in proc.stdout, proc.stdout
    assert re.search(r"\b3 passed, \d+ deselected, 3 xfailed", proc.stdout), proc.stdout


def test_benchmarks_of_a_project_are_stored_where_it_says(installed):
    """``-m benchmark --baselines DIR --benchmark-autosave``: the run lands in DIR/<class>-torch-<version>/."""
    python, project, env = installed
    proc = _run([str(python), "-m", "pytest", "--pyargs", "harness", "-p", "my_psg", "-p", "quiet_machine", "-p", "no:randomly",
                 "-q", "-m", "benchmark", "-k", "cpu-float32-mlp and my-method", "--baselines", "perf",
                 "--benchmark-autosave"], project, env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    stored = list((project / "perf").glob("*-torch-*/*/0001_*.json"))
    assert len(stored) == 1, proc.stdout
    assert not (project / "baselines").exists() and not (project / ".benchmarks").exists()
    shutil.rmtree(project / "perf")


def test_an_unknown_method_name_is_a_usage_error(installed):
    python, project, env = installed
    proc = _run([str(python), "-m", "pytest", "--pyargs", "harness", "-p", "my_psg", "--psg-methods", "my-methd",
                 "--co", "-q"], project, env)
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert "--psg-methods: unknown methods ['my-methd']; registered: loop, vmap" in proc.stderr, proc.stderr
