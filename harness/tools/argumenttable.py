"""What the property suite draws per layer kind, generated from :mod:`harness.problems.arguments`.

    python -m harness argument-table            # print the Markdown table
    python -m harness argument-table --write README.md

The README carries the table between ``<!-- argument-table -->`` and ``<!-- /argument-table -->``;
``--write`` replaces it there, and a test fails when the README's copy is stale.
"""

from __future__ import annotations

from collections.abc import Sequence

from harness.problems.arguments import ARGUMENTS, NEVER_DRAWN, PER_DIM, KindArguments
from harness.tools.supporttable import MarkedBlock

BLOCK = MarkedBlock("argument-table")


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _row(kind: str, described: KindArguments) -> str:
    drawn = "; ".join(f"`{a.label}`: {a.values}" for a in described.arguments if a.values)
    not_drawn = "; ".join(f"`{a.label}`: {a.why_not}" for a in described.arguments if a.why_not)
    classes = ", ".join(f"`{c}`" for c in described.classes)
    return f"| `{kind}` ({classes}) | {_cell(drawn)} | {_cell(not_drawn) or '-'} |"


def argument_table() -> str:
    """The Markdown table: per layer kind, the arguments drawn with their values, and those not
    drawn with the reason; then what no kind draws."""
    lines = ["| kind (class) | drawn: values | not drawn: why |", "|---|---|---|"]
    lines.extend(_row(kind, described) for kind, described in ARGUMENTS.items())
    never = "; ".join(f"`{name}` ({why})" for name, why in NEVER_DRAWN.items())
    lines.extend(["", f"{PER_DIM} an int, or a tuple of one value per dimension. No kind draws {never}."])
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m harness argument-table [--write FILE]``."""
    return BLOCK.main(argv, argument_table, "python -m harness argument-table", __doc__.splitlines()[0])
