"""The support matrix: the one table of expected failures, split by what it is about (zoo models
in :mod:`.zoo`, drawn layers in :mod:`.drawn`).

Each row becomes a strict xfail: the failure must happen, and must match the row's ``error`` (a
different failure is a real failure), so a fix upstream shows as XPASS and the row is then
narrowed or removed.

Precedence: where several rows cover a trial, the first decides, and the rows a plugin added
(:func:`add_expected_failures`) come first, in the order added, before the built-in ones: a
plugin's statement about a cell (its own method, or a built-in one it replaced) overrides the
built-in row for that cell.
"""

from __future__ import annotations

from harness.checking.support.drawn import DRAWN_MATRIX
from harness.checking.support.rows import CHECKS, EMPTY_BATCH, DrawnFailure, ExpectedFailure, ZooFailure
from harness.checking.support.zoo import ZOO_MATRIX
from harness.core.releases import Versions
from harness.problems.drawn import Problem

#: Every built-in row, the zoo's first.
SUPPORT_MATRIX: tuple[ExpectedFailure, ...] = (*ZOO_MATRIX, *DRAWN_MATRIX)

#: Whether the rows decide verdicts; off (``--psg-raw``), every test records what the library did.
_applied = True


def apply_support_matrix(applied: bool) -> None:
    """Let the rows turn failures into expected ones (the default), or not: with ``False`` no trial
    is expected to fail, so every test records what the library did (a failure with its error),
    as the release history and ``python -m harness bisect`` want."""
    global _applied
    _applied = applied


#: Rows a plugin added for its own methods (:func:`add_expected_failures`), consulted before the built-in ones.
_ADDED_ZOO: list[ZooFailure] = []
_ADDED_DRAWN: list[DrawnFailure] = []


def add_expected_failures(*rows: ExpectedFailure) -> None:
    """Add support-matrix rows, for a plugin's own methods: each covered trial becomes a strict
    xfail, as the built-in rows' do. Added rows take precedence over the built-in ones (and an
    earlier added row over a later one) where both cover a trial. Call it where the plugin
    registers its methods::

        add_expected_failures(ZooFailure(methods=("my-method",), models=("lstm_text",),
                                         error="MethodFailed", reason="no LSTM support yet"))
    """
    for row in rows:
        if isinstance(row, ZooFailure):
            _ADDED_ZOO.append(row)
        elif isinstance(row, DrawnFailure):
            _ADDED_DRAWN.append(row)
        else:
            raise TypeError(f"a support-matrix row is a ZooFailure or a DrawnFailure, got {type(row).__name__}")


def remove_expected_failures(*rows: ExpectedFailure) -> None:
    """Take rows added with :func:`add_expected_failures` out again (for tests)."""
    for row in rows:
        for added in (_ADDED_ZOO, _ADDED_DRAWN):
            if row in added:
                added.remove(row)


def expected_failure(
    method: str,
    model: str,
    precision: str,
    device: str,
    check: str = "grads",
    torch_version: str | Versions | None = None,
) -> ZooFailure | None:
    """The zoo row covering this trial, or None if it must pass: the first that covers it, the
    rows a plugin added before the built-in ones. ``torch_version`` (or all the releases, as
    :class:`Versions`) stands for the installed ones."""
    if check not in CHECKS:
        raise ValueError(f"unknown check {check!r}; known: {', '.join(CHECKS)}")
    if not _applied:
        return None
    versions = Versions.of(torch_version)
    return next((row for row in (*_ADDED_ZOO, *ZOO_MATRIX) if row.applies(method, model, precision, device, check, versions)), None)


def expected_failure_drawn(
    method: str, problem: Problem, precision: str, device: str, torch_version: str | Versions | None = None
) -> DrawnFailure | None:
    """The drawn-layer row covering a drawn problem: the first that covers any of its layers, the
    rows a plugin added before the built-in ones."""
    if not _applied:
        return None
    versions = Versions.of(torch_version)
    for row in (*_ADDED_DRAWN, *DRAWN_MATRIX):
        if any(row.applies(method, layer, precision, device, versions) for layer in problem.layers):
            return row
    return None


__all__ = [
    "CHECKS",
    "DRAWN_MATRIX",
    "EMPTY_BATCH",
    "SUPPORT_MATRIX",
    "ZOO_MATRIX",
    "DrawnFailure",
    "ExpectedFailure",
    "ZooFailure",
    "add_expected_failures",
    "apply_support_matrix",
    "expected_failure",
    "expected_failure_drawn",
    "remove_expected_failures",
]
