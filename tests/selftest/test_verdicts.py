"""``python -m harness same-verdicts``: one suite run several ways must give the same outcomes."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.tools.verdicts import main

PASSED = '<testcase classname="t" name="{}" />'
XFAILED = '<testcase classname="t" name="{}"><skipped type="pytest.xfail" message="row" /></testcase>'
FAILED = '<testcase classname="t" name="{}"><failure message="boom" /></testcase>'


def junit(path: Path, *cases: str) -> str:
    path.write_text(f'<testsuites><testsuite name="pytest">{"".join(cases)}</testsuite></testsuites>')
    return str(path)


def test_the_same_outcomes_agree(tmp_path, capsys):
    a = junit(tmp_path / "a.xml", PASSED.format("x"), XFAILED.format("y"))
    b = junit(tmp_path / "b.xml", XFAILED.format("y"), PASSED.format("x"))
    assert main([a, b]) == 0
    out = capsys.readouterr().out
    assert f"{a}: 1 passed, 1 xfailed" in out and "same verdicts in 2 runs of 2 tests" in out


@pytest.mark.parametrize(
    "other, shown",
    [
        ((PASSED.format("x"), PASSED.format("y")), "DIFFERS t::y: xfailed in A, passed in B"),
        ((PASSED.format("x"),), "DIFFERS t::y: xfailed in A, missing in B"),
        ((PASSED.format("x"), XFAILED.format("y"), FAILED.format("z")), "FAILED t::z"),
    ],
    ids=["xfail-became-pass", "missing", "failed"],
)
def test_a_different_missing_or_failed_test_is_named_and_exits_1(tmp_path, capsys, other, shown):
    a = junit(tmp_path / "a.xml", PASSED.format("x"), XFAILED.format("y"))
    b = junit(tmp_path / "b.xml", *other)
    assert main([a, b]) == 1
    assert shown.replace(" A", f" {a}").replace(" B", f" {b}") in capsys.readouterr().out


@pytest.mark.parametrize(
    "files", [["one.xml"], ["one.xml", "nope.xml"], ["one.xml", "empty.xml"], ["one.xml", "one.xml"]]
)
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, files):
    junit(tmp_path / "one.xml", PASSED.format("x"))
    junit(tmp_path / "empty.xml")
    assert main([str(tmp_path / f) for f in files]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


HARDWARE_SKIP = '<testcase classname="t" name="{}"><skipped type="pytest.skip" message="missing instruction set: oneDNN ..." /></testcase>'
OTHER_SKIP = '<testcase classname="t" name="{}"><skipped type="pytest.skip" message="CUDA is not available" /></testcase>'


def test_a_skip_for_a_missing_instruction_set_is_listed_and_does_not_fail(tmp_path, capsys):
    a = junit(tmp_path / "a.xml", PASSED.format("x"), XFAILED.format("y"))
    b = junit(tmp_path / "b.xml", PASSED.format("x"), XFAILED.format("y"))
    avx2 = junit(tmp_path / "avx2.xml", PASSED.format("x"), HARDWARE_SKIP.format("y"))
    assert main([a, b, avx2]) == 0
    out = capsys.readouterr().out
    assert f"HARDWARE t::y: xfailed in {a}, xfailed in {b}, skipped in {avx2}" in out
    assert "but for 1 skipped for a missing instruction set (HARDWARE)" in out


@pytest.mark.parametrize(
    "cases",
    [
        (PASSED.format("x"), OTHER_SKIP.format("y")),  # a skip for another reason
        (HARDWARE_SKIP.format("x"), PASSED.format("y")),  # the other runs disagree on y
    ],
    ids=["another-reason", "the-others-disagree"],
)
def test_any_other_difference_beside_a_hardware_skip_fails(tmp_path, capsys, cases):
    a = junit(tmp_path / "a.xml", PASSED.format("x"), XFAILED.format("y"))
    b = junit(tmp_path / "b.xml", *cases)
    assert main([a, b]) == 1
    assert "DIFFERS t::y" in capsys.readouterr().out
