"""``python -m harness COMMAND``: the harness' command-line tools."""

from __future__ import annotations

import sys

#: Each command, the module whose ``main(argv)`` runs it, and what it does.
COMMANDS = {
    "compare": ("harness.benchmarks.judge", "judge benchmark runs against stored baselines (speed, counts and memory)"),
    "check-env": ("harness.core.environment", "check that the installed torch and torchvision import together"),
    "report": ("harness.tools.report", "the Markdown scorecard and plots of JUnit XML and benchmark JSON"),
    "same-verdicts": ("harness.tools.verdicts", "check that several runs of one suite gave every test the same outcome"),
    "measure-tolerances": ("harness.tools.tolerance_survey", "measure each method's worst error against the oracle (the tolerance table's numbers)"),
    "support-table": ("harness.tools.supporttable", "print or write the README's support table"),
    "argument-table": ("harness.tools.argumenttable", "print or write the README's table of what the property suite draws"),
    "history": ("harness.tools.history", "run the suite on every release combination, store it, show it (docs/history.md), check it against the support matrix"),
    "bisect": ("harness.tools.bisect", "the first torch, Opacus or BackPACK release where the selected tests' outcomes change"),
}


def usage() -> str:
    """The commands, one a line."""
    width = max(map(len, COMMANDS))
    lines = [f"  {name:{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    return "usage: python -m harness COMMAND [ARGS...]   (COMMAND --help for its own)\n\ncommands:\n" + "\n".join(lines)


def main() -> int:
    """Dispatch to a sub-command; ``--help`` lists them."""
    if len(sys.argv) >= 2 and sys.argv[1] in ("-h", "--help"):
        print(usage())
        return 0
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        given = f"unknown command {sys.argv[1]!r}\n" if len(sys.argv) >= 2 else "no command given\n"
        print(given + usage(), file=sys.stderr)
        return 2
    import importlib

    return importlib.import_module(COMMANDS[sys.argv[1]][0]).main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
