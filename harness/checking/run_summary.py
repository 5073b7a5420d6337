"""A run's outcomes as a reader wants them: one line per failing harness test (the plugin prints
them at the end of every run) and a Markdown summary to paste into a pull request (``--psg-summary``).

Plain data: the pytest plugin turns its reports into :class:`TestOutcome` s.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from harness.core.markdown import markdown_table

#: Outcomes in the order pytest's last line names them; any other (a plugin's) comes after.
STATUSES = ("failed", "error", "passed", "skipped", "xfailed", "xpassed")
#: The outcomes that fail a run.
FAILING = ("failed", "error")
#: The module path before an exception's name in pytest's crash message (``harness.core.errors.``).
_MODULE_PATH = re.compile(r"^(?:[A-Za-z_]\w*\.)+(?=[A-Za-z_]\w*: )")


@dataclass(frozen=True)
class TestOutcome:
    """One test's outcome: its id, status, the message's first line (or the skip/xfail reason),
    and for a harness test (``harness``) the method and case of its trial, where it has one."""

    __test__ = False  # not a test class, whatever its name

    test_id: str
    status: str
    message: str = ""
    harness: bool = False
    method: str = ""
    case: str = ""


def first_line(text: str) -> str:
    """The first non-empty line of a message, the exception's module path left out."""
    line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return _MODULE_PATH.sub("", line)


def counts(outcomes: Iterable[TestOutcome]) -> dict[str, int]:
    """How many tests came to each status, in :data:`STATUSES` order."""
    counted = Counter(o.status for o in outcomes)
    order = [*STATUSES, *sorted(set(counted) - set(STATUSES))]
    return {status: counted[status] for status in order if counted[status]}


def failure_lines(outcomes: Iterable[TestOutcome]) -> list[str]:
    """One line per failing harness test: ``FAILED <test id> - <message>``."""
    return [f"{o.status.upper()} {o.test_id} - {o.message}" for o in outcomes if o.harness and o.status in FAILING]


def _cell(text: str) -> str:
    """Text as one Markdown table cell: pipes escaped, on one line."""
    return " ".join(text.split()).replace("|", "\\|")


def _by_reason(outcomes: Sequence[TestOutcome], status: str) -> list[str]:
    """A table of how many tests came to ``status`` for each reason, the most common first."""
    reasons = Counter(o.message for o in outcomes if o.status == status)
    if not reasons:
        return []
    rows = [(str(n), _cell(reason) or "(no reason given)") for reason, n in reasons.most_common()]
    return ["", *markdown_table(("tests", "reason"), rows)]


def markdown_summary(outcomes: Sequence[TestOutcome], environment: str = "") -> str:
    """The run as Markdown: the counts per outcome, a table of the failures (test id, method,
    case, message), and the expected failures and skips by reason."""
    counted = counts(outcomes)
    total = ", ".join(f"{n} {status}" for status, n in counted.items()) or "no tests ran"
    lines = [f"## psg-harness: {total}", ""]
    if environment:
        lines += [environment, ""]
    lines += markdown_table(("outcome", "tests"), [(status, str(n)) for status, n in counted.items()])
    failures = [o for o in outcomes if o.status in FAILING]
    if failures:
        rows = [(f"`{_cell(o.test_id)}`", _cell(o.method), _cell(o.case), _cell(o.message)) for o in failures]
        lines += ["", f"### {len(failures)} failing", "", *markdown_table(("test", "method", "case", "message"), rows)]
    for status in ("xfailed", "skipped"):
        if status in counted:
            lines += ["", f"### {counted[status]} {status}, by reason", *_by_reason(outcomes, status)]
    return "\n".join(lines) + "\n"
