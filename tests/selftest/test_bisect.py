"""python -m harness bisect: the first release whose outcome differs from the good one's."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.tools.bisect import Release, bisect, main, pick, releases
from harness.tools.report import Outcome

TOX_INI = Path(__file__).parents[2] / "tox.ini"
TORCH = [Release(f"2.{n}.0", f"torch2_{n}") for n in range(8)]


def _fake_probe(first_bad: int, probed: list[str]):
    def probe(release: Release) -> dict[str, Outcome]:
        probed.append(release.version)
        broken = int(release.env.removeprefix("torch2_")) >= first_bad
        return {"t::a": Outcome("passed"), "t::b": Outcome("failed" if broken else "passed")}

    return probe


@pytest.mark.parametrize("first_bad", [1, 3, 6, 7])
def test_the_first_release_with_another_outcome_is_found_in_few_probes(first_bad):
    probed: list[str] = []
    lines: list[str] = []
    found = bisect(TORCH, 0, 7, _fake_probe(first_bad, probed), lines.append)
    assert found is not None
    release, what = found
    assert release == TORCH[first_bad] and what == {"t::b": ("passed", "failed")}
    assert len(probed) == len(set(probed)) <= 2 + 3, "each release once; log2(7) probes between the ends"
    assert lines[0].startswith("2.0.0 (torch2_0): 2 passed; the good release (") and len(lines) == len(probed)


def test_no_change_in_the_range_is_said():
    assert bisect(TORCH, 0, 7, _fake_probe(99, []), lambda line: None) is None


def test_every_release_of_each_library_in_tox_ini_is_known_oldest_first():
    torch_releases = releases("torch", TOX_INI)
    assert [r.env for r in torch_releases] == [f"torch2_{n}" for n in range(16)]
    assert torch_releases[0].version == "2.0.1" and torch_releases[-1].version == "2.15.0"
    assert [r.version for r in releases("backpack", TOX_INI)] == ["1.6.0", "1.7.0", "1.7.1"]
    opacus = [r.version for r in releases("opacus", TOX_INI)]
    assert opacus[0] == "1.0.0" and opacus[-1] == "1.6.0" and len(opacus) == 17


def test_a_release_is_named_by_its_minor_or_full_version():
    candidates = releases("torch", TOX_INI)
    assert candidates[pick(candidates, "2.1", "good")].version == "2.1.2"
    assert candidates[pick(candidates, "2.10.0", "good")].env == "torch2_10"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--library", "torch", "--good", "1.9", "--bad", "2.3", "--tox-ini", str(TOX_INI)], "--good 1.9: names no release with an environment; known: 2.0.1"),
        (["--library", "torch", "--good", "2.3", "--bad", "2.0", "--tox-ini", str(TOX_INI)], "--good 2.3.1 must be an earlier release than --bad 2.0.1"),
        (["--library", "torch", "--good", "2.0", "--bad", "2.3", "--tox-ini", "nowhere.ini"], "nowhere.ini: no such file"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err
