"""The plugin in a project outside this repository, where the repository's pytest options
(``-rfEs --tb=short``) do not apply: a mistake is one line and an exit status, not a traceback.

The tests that run pytest in another process (about 5 s each) are ``integration`` tests: left
out of the default run, run by .ci/run after it (``python -m pytest -m integration``)."""

from __future__ import annotations

import os
import re

import pytest
from hypothesis import settings

from harness.checking import profiles
from harness.checking.run_summary import TestOutcome, failure_lines, first_line, markdown_summary

pytest_plugins = ["pytester"]

PLUGIN = """
import torch

from harness import get_method, register_method


@register_method("my-wrong-method")
def my_wrong_method(case):
    grads = get_method("vmap")(case)
    return {name: g.sum(0, keepdim=True).expand_as(g) for name, g in grads.items()}


@register_method("my-raising-method")
def my_raising_method(case):
    return torch.ones(3) @ torch.ones(4)
"""

OWN_TESTS = """
import pytest


def test_own_failing():
    assert 1 == 2, "the project's own test"


@pytest.mark.skip(reason="not today")
def test_own_skipped():
    pass


@pytest.mark.xfail(reason="known to fail", strict=True)
def test_own_xfail():
    assert False
"""

#: The project's run: the plugin's two wrong methods on one model of the harness's oracle and
#: DP-quantity grids (four checks each), and the project's own tests, with pytest's default options.
RUN = ("--pyargs", "harness.suite.test_oracle", "harness.suite.test_dp_quantities", "test_own.py", "-p", "my_psg",
       "-p", "no:randomly", "-p", "no:cacheprovider", "--psg-methods", "my-wrong-method,my-raising-method")


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A project folder outside the repository; its runs are not pytest-xdist workers."""
    for name in [name for name in os.environ if name.startswith("PYTEST_XDIST_")]:
        monkeypatch.delenv(name)
    return pytester


@pytest.mark.integration
def test_an_unknown_hypothesis_profile_is_a_usage_error_listing_the_known_ones(project):
    project.makeconftest("from hypothesis import settings\n\nsettings.register_profile('my-profile', max_examples=3)\n")
    result = project.runpytest_subprocess("--hypothesis-profile=nope", "--co", "-p", "no:randomly")
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str() + result.stderr.str()
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    assert [line for line in result.stderr.lines if line.strip()] == [
        "ERROR: --hypothesis-profile: unknown Hypothesis profile 'nope'; registered: psg-ci, psg-dev, psg-nightly "
        "(the harness's property suite), ci, default, my-profile"
    ]


def test_a_projects_own_profile_leaves_the_property_suite_on_its_default(monkeypatch):
    monkeypatch.setattr(profiles, "_active", profiles._active)
    settings.register_profile("selftest-own", max_examples=2)
    profiles.use_profile("selftest-own")
    assert profiles.active_profile() == settings.get_profile(profiles.DEFAULT_PROFILE)
    profiles.use_profile("psg-dev")
    assert profiles.active_profile() == settings.get_profile("psg-dev")
    with pytest.raises(ValueError, match=r"unknown Hypothesis profile 'psg-nope'; registered: psg-ci, .*selftest-own"):
        profiles.use_profile("psg-nope")


@pytest.mark.integration
def test_a_failing_method_ends_in_one_readable_line_per_failure_and_a_markdown_summary(project):
    project.makepyfile(my_psg=PLUGIN, test_own=OWN_TESTS)
    result = project.runpytest_subprocess(*RUN, "-k", "cpu-float64-mlp-B7 or test_own", "--psg-summary", "pr/run.md")
    out = result.stdout.lines
    assert result.ret == pytest.ExitCode.TESTS_FAILED, "\n".join(out)
    start = next((i for i, line in enumerate(out) if "psg-harness: 8 failing harness tests (--tb=long" in line), None)
    assert start is not None, "\n".join(out)
    lines = out[start + 1 : start + 9]
    assert "short test summary info" in out[start + 9], "\n".join(out)
    expected = {
        f"test_{test}[cpu-float64-mlp-B7{case}-{method}]"
        for test, case in (("matches_oracle", ""), ("matches_oracle", "-sum"), ("norms_match_oracle", "-norms"),
                           ("clipped_step_matches_oracle", "-clip4of7"))
        for method in ("my-wrong-method", "my-raising-method")
    }
    assert {line.split("::")[-1].split(" - ")[0] for line in lines} == expected, "\n".join(lines)
    for line in lines:
        method = "my-wrong-method" if "my-wrong-method]" in line else "my-raising-method"
        message = line.split(" - ", 1)[1]
        assert message.startswith(("ToleranceError: ", "MethodFailed: ")) and f"method '{method}' on cpu-float64-mlp-B7" in message
        assert re.search(r"worst at \S+, sample \d: .* > bound |raised RuntimeError: inconsistent tensor size", message), line
    # a harness failure is its message, not a traceback through the harness and the method's cause;
    # the project's own test keeps pytest's traceback
    assert "The above exception was the direct cause" not in result.stdout.str()
    assert not [line for line in out if re.search(r"harness/\S+\.py:\d+", line)], "\n".join(out)
    assert ">       assert 1 == 2, \"the project's own test\"" in out and "test_own.py:5: AssertionError" in out
    assert len(out) < 70, "\n".join(out)

    summary = (project.path / "pr" / "run.md").read_text()
    assert summary.startswith("## psg-harness: 9 failed, 1 skipped, 1 xfailed\n"), summary
    assert (
        "test_matches_oracle[cpu-float64-mlp-B7-my-wrong-method]` | my-wrong-method | "
        "cpu-float64-mlp-B7 | ToleranceError: method 'my-wrong-method' on cpu-float64-mlp-B7 differs from the reference: "
        "worst at "
    ) in summary, summary
    assert "\\|\\|g - g*\\|\\|" in summary and "| `test_own.py::test_own_failing` |  |  | AssertionError: the project's own test |" in summary
    assert "| 1 | known to fail |" in summary and "| 1 | not today |" in summary, summary


@pytest.mark.integration
def test_long_tracebacks_are_there_when_asked_for(project):
    project.makepyfile(my_psg=PLUGIN, test_own=OWN_TESTS)
    result = project.runpytest_subprocess(*RUN, "-k", "test_matches_oracle and cpu-float64-mlp-B7-my-raising", "--tb=long")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    text = result.stdout.str()
    assert "The above exception was the direct cause" in text and "return torch.ones(3) @ torch.ones(4)" in text, text
    assert "::test_matches_oracle[cpu-float64-mlp-B7-my-raising-method] - MethodFailed: method 'my-raising-method'" in text


def test_a_runs_outcomes_as_lines_and_markdown():
    """What the plugin prints and writes, from the outcomes it recorded (the runs above end to end)."""
    oracle = "suite/test_oracle.py::test_matches_oracle[cpu-float64-mlp-B7-mine]"
    message = "ToleranceError: method 'mine' on cpu-float64-mlp-B7 differs from the reference: ||g - g*|| = 1"
    cuda = "CUDA is not available on this machine"
    outcomes = [
        TestOutcome(oracle, "failed", message, True, "mine", "cpu-float64-mlp-B7"),
        TestOutcome("test_own.py::test_own", "failed", "AssertionError: the project's own"),
        TestOutcome("a", "skipped", cuda, True),
        TestOutcome("b", "xfailed", "no LSTM support", True),
        TestOutcome("c", "skipped", cuda, True),
        TestOutcome("d", "passed", harness=True),
    ]
    assert failure_lines(outcomes) == [f"FAILED {oracle} - {message}"], "one line per failing harness test only"
    summary = markdown_summary(outcomes, "torch 2.14")
    assert summary.startswith("## psg-harness: 2 failed, 1 passed, 2 skipped, 1 xfailed\n\ntorch 2.14\n"), summary
    assert f"| `{oracle}` | mine | cpu-float64-mlp-B7 | ToleranceError: method 'mine' on cpu-float64-mlp-B7 differs " \
        "from the reference: \\|\\|g - g*\\|\\| = 1 |" in summary, summary
    assert f"### 2 skipped, by reason\n\n| tests | reason |\n|---|---|\n| 2 | {cuda} |" in summary, summary
    assert first_line("\nharness.core.errors.ToleranceError: method 'a.b' on x\nmore") == "ToleranceError: method 'a.b' on x"
