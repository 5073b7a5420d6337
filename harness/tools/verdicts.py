"""Same verdicts from several runs of one suite: serially, at one thread, in random order, under xdist.

    python -m harness same-verdicts serial.xml threads1.xml random-1.xml xdist.xml

Each file is a JUnit XML (``pytest --junitxml``) of the same selection run another way. Every
test must have the same outcome (passed, xfailed, skipped, failed) in every file, and none may
have failed. Prints each file's counts and, where they differ, the tests and their outcomes.

One difference is legitimate: a run under a lower instruction set (``ONEDNN_MAX_CPU_ISA=AVX2``,
say) skips what that hardware cannot run, with a reason that starts "missing instruction set".
A test skipped so in some runs and of one outcome in all the others is listed as ``HARDWARE``
and does not fail the comparison.

Exit status: 0 the same verdicts and no failure; 1 a verdict differs, a test is missing from a
run, or a test failed; 2 bad input (fewer than two files, a file that is not JUnit XML or holds
no tests).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from harness.benchmarks.records import BadInput
from harness.core.hardware import MISSING_ISA
from harness.tools.report import Outcome, read_junit

#: How many differing tests are listed before the rest is counted.
MAX_LISTED = 20


def differences(runs: dict[str, dict[str, Outcome]]) -> dict[str, dict[str, str]]:
    """The tests whose outcome is not the same in every run: test -> run -> outcome (``missing``)."""
    tests = sorted({test for outcomes in runs.values() for test in outcomes})
    differ = {}
    for test in tests:
        seen = {name: outcomes[test].status if test in outcomes else "missing" for name, outcomes in runs.items()}
        if len(set(seen.values())) > 1:
            differ[test] = seen
    return differ


def _hardware_skip(outcome: Outcome | None) -> bool:
    return outcome is not None and outcome.status == "skipped" and outcome.message.startswith(MISSING_ISA)


def hardware_only(runs: dict[str, dict[str, Outcome]], test: str) -> bool:
    """Whether a test's outcomes differ only by skips for a missing instruction set: the runs that
    did not skip it so agree on one outcome."""
    others = {outcomes[test].status if test in outcomes else "missing" for outcomes in runs.values() if not _hardware_skip(outcomes.get(test))}
    return len(others) <= 1 and "missing" not in others


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m harness same-verdicts``: compare the outcomes of several runs of one suite."""
    parser = argparse.ArgumentParser(prog="python -m harness same-verdicts", description=__doc__.splitlines()[0])
    parser.add_argument("junit", nargs="*", metavar="JUNIT_XML", help="two or more JUnit XML files of one selection")
    args = parser.parse_args(argv)
    try:
        if len(args.junit) < 2:
            raise BadInput("name two or more JUnit XML files (pytest --junitxml) to compare")
        runs = {}
        resolved = [Path(name).resolve() for name in args.junit]
        repeated = sorted({name for name, path in zip(args.junit, resolved, strict=True) if resolved.count(path) > 1})
        if repeated:
            raise BadInput(f"{', '.join(repeated)}: named twice; a run agrees with itself (name two or more different runs)")
        for name in args.junit:
            if not Path(name).is_file():
                raise BadInput(f"{name}: no such file")
            runs[name] = read_junit(Path(name))[1]
            if not runs[name]:
                raise BadInput(f"{name}: holds no test results (a run that ran nothing cannot agree)")
    except BadInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name, outcomes in runs.items():
        counts = Counter(o.status for o in outcomes.values())
        print(f"{name}: " + ", ".join(f"{counts[s]} {s}" for s in sorted(counts)))
    failed = sorted({t for outcomes in runs.values() for t, o in outcomes.items() if o.status in ("failed", "xpassed")})
    differ = differences(runs)
    hardware = {test: seen for test, seen in differ.items() if hardware_only(runs, test)}
    differ = {test: seen for test, seen in differ.items() if test not in hardware}
    for test, seen in hardware.items():
        print(f"HARDWARE {test}: " + ", ".join(f"{status} in {name}" for name, status in seen.items()))
    for test in list(differ)[:MAX_LISTED]:
        print(f"DIFFERS {test}: " + ", ".join(f"{status} in {name}" for name, status in differ[test].items()))
    if len(differ) > MAX_LISTED:
        print(f"... and {len(differ) - MAX_LISTED} more tests whose outcome differs")
    for test in failed[:MAX_LISTED]:
        print(f"FAILED {test}")
    if differ or failed:
        print(f"{len(differ)} test(s) with different outcomes, {len(failed)} failed", file=sys.stderr)
        return 1
    print(
        f"same verdicts in {len(runs)} runs of {len(next(iter(runs.values())))} tests"
        + (f", but for {len(hardware)} skipped for a missing instruction set (HARDWARE)" if hardware else "")
    )
    return 0
