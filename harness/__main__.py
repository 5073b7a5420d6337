"""``python -m harness COMMAND``: the harness' command-line tools."""

from __future__ import annotations

import sys


def main() -> int:
    """Dispatch to a sub-command."""
    commands = {
        "compare": "harness.benchcompare",
        "check-env": "harness.envcheck",
        "report": "harness.report",
        "same-verdicts": "harness.verdicts",
        "support-table": "harness.supporttable",
    }
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print(f"usage: python -m harness {{{','.join(commands)}}} ...", file=sys.stderr)
        return 2
    import importlib

    return importlib.import_module(commands[sys.argv[1]]).main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
