"""The plugin in a project outside this repository, where the repository's pytest options
(``-rfEs --tb=short``) do not apply: a mistake is one line and an exit status, not a traceback."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

from harness.checking import profiles

pytest_plugins = ["pytester"]


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A project folder outside the repository; its runs are not pytest-xdist workers."""
    for name in [name for name in os.environ if name.startswith("PYTEST_XDIST_")]:
        monkeypatch.delenv(name)
    return pytester


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
