"""Which method gives which quantity on which model (CPU), generated from the support matrix.

    python -m harness support-table            # print the Markdown table
    python -m harness support-table --write README.md

The README carries the table between ``<!-- support-table -->`` and ``<!-- /support-table -->``;
``--write`` replaces it there, and a test fails when the README's copy is stale.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.checking.support import ExpectedFailure, expected_failure
from harness.core.hardware import LIMITS, Limit
from harness.core.releases import DEFAULT_RELEASES, Versions
from harness.methods import BUILT_IN, gives_itself, methods_for
from harness.problems.zoo import MODELS
from harness.quantities import QUANTITIES

BEGIN, END = "<!-- support-table -->", "<!-- /support-table -->"  # BLOCK's markers
#: The precisions the table shows (the CPU's).
TABLE_PRECISIONS = ("float64", "float32", "bf16")


def _gives(method: str) -> str:
    """The quantities a method gives; those the harness derives from its gradients are marked."""
    parts = []
    for quantity in QUANTITIES:
        if quantity in gives_itself(method):
            parts.append(quantity)
        elif method in methods_for(quantity):
            parts.append(f"({quantity})")
    return ", ".join(parts)


def _entry(method: str, model: str, notes: dict[str, int], versions: Versions) -> str:
    """``✓``, or ``✗`` with what fails (when not everything) and the notes saying why."""
    quantities = [q for q in QUANTITIES if method in methods_for(q)]
    failing: dict[tuple[str, str], ExpectedFailure] = {}
    for quantity in quantities:
        for precision in TABLE_PRECISIONS:
            row = expected_failure(method, model, precision, "cpu", quantity, versions)
            if row is not None:
                failing[(quantity, precision)] = row
    if not failing:
        return "✓"
    reasons = dict.fromkeys(row.describe() for row in failing.values())  # rows of one family share a note
    refs = ",".join(str(notes.setdefault(reason, len(notes) + 1)) for reason in reasons)
    if len(failing) == len(quantities) * len(TABLE_PRECISIONS):
        return f"✗ [{refs}]"
    everywhere = [q for q in quantities if all((q, p) in failing for p in TABLE_PRECISIONS)]
    what = ["/".join(everywhere)] if everywhere else []
    for precision in TABLE_PRECISIONS:
        failed = [q for q in quantities if (q, precision) in failing and q not in everywhere]
        if failed and failed == [q for q in quantities if q not in everywhere]:
            what.append(precision)
        elif failed:
            what.append(f"{'/'.join(failed)} {precision}")
    return f"✗ {', '.join(what)} [{refs}]"


def _limits_of(model: str) -> list[Limit]:
    """The hardware limits a zoo model can hit: those whose layer it holds."""
    module = MODELS[model].build()
    return [limit for limit in LIMITS if any(isinstance(m, limit.module) for m in module.modules())]


def _hardware_notes(models: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """Each model's header mark for the hardware limits it can hit, and the notes explaining them."""
    marks: dict[str, str] = {}
    notes = []
    for n, limit in enumerate(LIMITS, start=1):
        hit = [model for model in models if limit in _limits_of(model)]
        for model in hit:
            marks[model] = marks.get(model, "") + f" (hw{n})"
        dtype = str(limit.dtype).removeprefix("torch.")
        notes.append(
            f"hw{n}. Depends on the machine: the {dtype} cases of {', '.join(hit) or 'no model'} (an `nn.{limit.module.__name__}`) "
            f"are skipped, never failed, on a CPU without {limit.needs} or capped below them ({limit.cap}): "
            f"{limit.what} need them; {limit.finding}."
        )
    return marks, notes


def support_table(methods: Sequence[str] = BUILT_IN, versions: Versions = DEFAULT_RELEASES) -> str:
    """The Markdown table: methods (the built-in ones by default) x models on the given releases
    (the project's default ones by default, whatever is installed), then the numbered reasons,
    then what depends on the machine (:data:`harness.core.hardware.LIMITS`)."""
    models = list(MODELS)
    notes: dict[str, int] = {}
    marks, hardware = _hardware_notes(models)
    lines = [
        f"On torch {versions.torch}, Opacus {versions.opacus}, BackPACK {versions.backpack} (other releases: docs/releases.md).",
        "",
        "| method | gives | " + " | ".join(model + marks.get(model, "") for model in models) + " |",
        "|---|---|" + "---|" * len(models),
    ]
    for method in methods:
        entries = [_entry(method, model, notes, versions) for model in models]
        lines.append(f"| `{method}` | {_gives(method)} | " + " | ".join(entries) + " |")
    lines.append("")
    lines.extend(f"{n}. {reason}" for reason, n in notes.items())
    lines.extend(["", *hardware])
    return "\n".join(lines)


@dataclass(frozen=True)
class MarkedBlock:
    """A generated block of a Markdown file, between ``<!-- name -->`` and ``<!-- /name -->``."""

    name: str

    @property
    def begin(self) -> str:
        return f"<!-- {self.name} -->"

    @property
    def end(self) -> str:
        return f"<!-- /{self.name} -->"

    def of(self, text: str) -> str | None:
        """The block in ``text``, markers included, or None if it has none."""
        match = re.search(re.escape(self.begin) + r".*?" + re.escape(self.end), text, flags=re.S)
        return match.group(0) if match else None

    def around(self, content: str) -> str:
        """``content`` between the markers."""
        return f"{self.begin}\n{content}\n{self.end}"

    def main(self, argv: Sequence[str] | None, generate: Callable[[], str], prog: str, description: str) -> int:
        """Print what ``generate`` gives, or (``--write FILE``) replace the block in FILE with it."""
        parser = argparse.ArgumentParser(prog=prog, description=description)
        parser.add_argument("--write", metavar="FILE", type=Path, help="replace the block between the markers in FILE")
        args = parser.parse_args(argv)
        if args.write is None:
            print(generate())
            return 0
        text = args.write.read_text() if args.write.is_file() else ""
        old = self.of(text)
        if old is None:
            print(f"error: {args.write} has no {self.begin} ... {self.end} block to replace", file=sys.stderr)
            return 2
        args.write.write_text(text.replace(old, self.around(generate())))
        print(f"wrote the {self.name.replace('-', ' ')} to {args.write}")
        return 0


BLOCK = MarkedBlock("support-table")


def readme_block(text: str) -> str | None:
    """The support-table block of a README's text, markers included, or None if it has none."""
    return BLOCK.of(text)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m harness support-table [--write FILE]``."""
    return BLOCK.main(argv, support_table, "python -m harness support-table", __doc__.splitlines()[0])
