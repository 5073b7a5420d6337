"""The support matrix: the one table of expected failures, split by what it is about (zoo models
in :mod:`.zoo`, drawn layers in :mod:`.drawn`, the entry points users call in :mod:`.entry_points`,
layer conversions in :mod:`.conversions`).

Each row becomes a strict xfail: the failure must happen, and must match the row's ``error`` (a
different failure is a real failure), so a fix upstream shows as XPASS and the row is then
narrowed or removed.

Precedence: where several rows cover a trial, the first decides, and the rows a plugin added
(:func:`add_expected_failures`) come first, in the order added, before the built-in ones: a
plugin's statement about a cell (its own method, or a built-in one it replaced) overrides the
built-in row for that cell.
"""

from __future__ import annotations

from harness.checking.support.conversions import CONVERSION_MATRIX
from harness.checking.support.drawn import DRAWN_MATRIX
from harness.checking.support.entry_points import ENTRY_POINT_MATRIX
from harness.checking.support.rows import (
    CHECKS,
    EMPTY_BATCH,
    ConversionFailure,
    DrawnFailure,
    EntryPointFailure,
    ExpectedFailure,
    ZooFailure,
)
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


def support_matrix_applied() -> bool:
    """Whether the rows turn failures into expected ones (False under ``--psg-raw``)."""
    return _applied


#: Rows a plugin added for its own methods (:func:`add_expected_failures`), consulted before the built-in ones.
_ADDED_ZOO: list[ZooFailure] = []
_ADDED_DRAWN: list[DrawnFailure] = []
_ADDED_ENTRY_POINTS: list[EntryPointFailure] = []
_ADDED_CONVERSIONS: list[ConversionFailure] = []
#: Where an added row goes, by its kind.
_ADDED: dict[type, list] = {
    ZooFailure: _ADDED_ZOO,
    DrawnFailure: _ADDED_DRAWN,
    EntryPointFailure: _ADDED_ENTRY_POINTS,
    ConversionFailure: _ADDED_CONVERSIONS,
}


def add_expected_failures(*rows: ExpectedFailure) -> None:
    """Add support-matrix rows, for a plugin's own methods: each covered trial becomes a strict
    xfail, as the built-in rows' do. Added rows take precedence over the built-in ones (and an
    earlier added row over a later one) where both cover a trial. Call it where the plugin
    registers its methods::

        add_expected_failures(ZooFailure(methods=("my-method",), models=("lstm_text",),
                                         error="MethodFailed", reason="no LSTM support yet"))
    """
    for row in rows:
        added = next((rows for kind, rows in _ADDED.items() if isinstance(row, kind)), None)
        if added is None:
            kinds = ", ".join(kind.__name__ for kind in _ADDED)
            raise TypeError(f"a support-matrix row is one of {kinds}, got {type(row).__name__}")
        added.append(row)


def remove_expected_failures(*rows: ExpectedFailure) -> None:
    """Take rows added with :func:`add_expected_failures` out again (for tests)."""
    for row in rows:
        for added in _ADDED.values():
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
    method: str,
    problem: Problem,
    precision: str,
    device: str,
    torch_version: str | Versions | None = None,
    check: str = "grads",
) -> DrawnFailure | None:
    """The drawn-layer row covering a drawn problem checked for ``check`` (a quantity): the first
    that covers any of its layers, the rows a plugin added before the built-in ones."""
    if not _applied:
        return None
    versions = Versions.of(torch_version)
    for row in (*_ADDED_DRAWN, *DRAWN_MATRIX):
        if any(row.applies(method, layer, precision, device, versions, check, problem.batch_size) for layer in problem.layers):
            return row
    return None


def expected_entry_point_failure(
    method: str, model: str, path: str, check: str, versions: Versions | str | None = None
) -> ExpectedFailure | None:
    """The row covering a ``make_private`` trial (:mod:`harness.checking.entry_points`): the first
    entry-point row a plugin added that covers it; else the method's zoo row for the clipped step (a
    model the method cannot run, ``make_private`` cannot: that failure comes first); else the first
    built-in entry-point row."""
    if not _applied:
        return None
    installed = Versions.of(versions)
    added = next((row for row in _ADDED_ENTRY_POINTS if row.applies(method, model, path, check, installed)), None)
    zoo = expected_failure(method, model, "float64", "cpu", "clipped", installed)
    built_in = next((row for row in ENTRY_POINT_MATRIX if row.applies(method, model, path, check, installed)), None)
    return added or zoo or built_in


def expected_conversion_failure(
    kind: str, arguments: dict, check: str, precision: str = "float64", versions: Versions | str | None = None
) -> ConversionFailure | None:
    """The row covering a layer conversion (:mod:`harness.checking.conversions`): the first that
    covers it, the rows a plugin added before the built-in ones."""
    if not _applied:
        return None
    installed = Versions.of(versions)
    return next(
        (row for row in (*_ADDED_CONVERSIONS, *CONVERSION_MATRIX) if row.applies(kind, arguments, check, precision, installed)),
        None,
    )


__all__ = [
    "CHECKS",
    "CONVERSION_MATRIX",
    "DRAWN_MATRIX",
    "EMPTY_BATCH",
    "ENTRY_POINT_MATRIX",
    "SUPPORT_MATRIX",
    "ZOO_MATRIX",
    "DrawnFailure",
    "ExpectedFailure",
    "ConversionFailure",
    "EntryPointFailure",
    "ZooFailure",
    "add_expected_failures",
    "apply_support_matrix",
    "expected_conversion_failure",
    "expected_entry_point_failure",
    "expected_failure",
    "expected_failure_drawn",
    "remove_expected_failures",
]
