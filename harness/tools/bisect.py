"""Which release changed it: the first release of a library where the selected tests' outcomes change.

    python -m harness bisect --library torch --good 2.0 --bad 2.3 -- -k "transformer and vmap"
    python -m harness bisect --library opacus --good 1.5.3 --bad 1.6.0 -- -p my_psg --psg-methods mine

The releases are tox's release environments (tox.ini: ``torch2_N`` for each torch minor release
with the newest Opacus and BackPACK that import with it; ``opacus1_X_Y`` and ``backpack1_X_Y`` on
torch 2.14), in the order of the release each constraints file pins. Each probe runs ``tox -e ENV
-- PYTEST_ARGS`` (an environment uv has cached is made in seconds) and reads its JUnit XML; the
outcome of a release is every selected test's (passed, failed, xfailed, skipped, ...). The
good release's outcome is the reference: a binary search finds the first release after it whose
outcome differs. A user's plugin works as in any run (``-p my_psg``; tox passes ``PYTHONPATH``).

One line per probed release, then the answer. Exit status: 0 found (or no change in the range),
1 a probe ran nothing or tox failed before the tests, 2 bad input.
"""

from __future__ import annotations

import argparse
import configparser
import importlib.util
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.version import Version

from harness.benchmarks.records import BadInput
from harness.tools.report import Outcome, read_junit
from harness.tools.verdicts import differences

#: The distribution a constraints file pins for each library.
PINNED = {"torch": "torch", "opacus": "opacus", "backpack": "backpack-for-pytorch"}
#: Which tox environments stand for a library's releases.
ENV_PATTERN = {"torch": r"torch2_\d+", "opacus": r"opacus1_\d+_\d+", "backpack": r"backpack1_\d+_\d+"}
#: How many tests whose outcome changed the answer lists.
MAX_LISTED = 10


@dataclass(frozen=True)
class Release:
    """A release of the library and the tox environment that runs it."""

    version: str
    env: str

    def __str__(self) -> str:
        return f"{self.version} ({self.env})"


def releases(library: str, tox_ini: Path) -> list[Release]:
    """The library's releases that tox.ini has an environment for, oldest first."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(tox_ini)
    set_env = parser.get("testenv", "set_env", fallback="")
    found = []
    for env, path in re.findall(r"^\s*(\w+): CONSTRAINTS = \{tox_root\}/(\S+)$", set_env, re.MULTILINE):
        if not re.fullmatch(ENV_PATTERN[library], env):
            continue
        pins = dict(re.findall(r"^([\w-]+)==(\S+)", (tox_ini.parent / path).read_text(), re.MULTILINE))
        found.append(Release(pins[PINNED[library]], env))
    return sorted(found, key=lambda release: Version(release.version))


def pick(candidates: list[Release], given: str, role: str) -> int:
    """The index of the release ``given`` names (``2.3`` names 2.3.1; a full version must match)."""
    hits = [i for i, r in enumerate(candidates) if r.version == given or r.version.startswith(given + ".") or r.env == given]
    if len(hits) != 1:
        known = ", ".join(r.version for r in candidates)
        raise BadInput(f"--{role} {given}: {'names no' if not hits else 'names more than one'} release with an environment; known: {known}")
    return hits[0]


def tox_probe(release: Release, pytest_args: Sequence[str], workdir: Path) -> dict[str, Outcome]:
    """Run the selection in the release's tox environment; every test's outcome (empty: nothing ran)."""
    junit = workdir / f"{release.env}.xml"
    command = [sys.executable, "-m", "tox", "-e", release.env, "-q", "--", *pytest_args, f"--junitxml={junit}"]
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return read_junit(junit)[1] if junit.exists() else {}


def counts(outcomes: dict[str, Outcome]) -> str:
    """``3 passed, 1 failed``."""
    return ", ".join(f"{n} {status}" for status, n in sorted(Counter(o.status for o in outcomes.values()).items()))


class ProbeFailed(Exception):
    """A release's run gave no test outcomes."""


def changed(reference: dict[str, Outcome], outcomes: dict[str, Outcome]) -> dict[str, tuple[str, str]]:
    """The tests whose outcome differs from the reference's: test -> (before, after)."""
    return {test: (seen["before"], seen["after"]) for test, seen in differences({"before": reference, "after": outcomes}).items()}


def bisect(
    candidates: list[Release], good: int, bad: int, probe: Callable[[Release], dict[str, Outcome]], say: Callable[[str], None]
) -> tuple[Release, dict[str, tuple[str, str]]] | None:
    """The first release after ``good`` whose outcome differs from good's, with what changed; None
    where even ``bad`` has good's outcome. Raises ProbeFailed where a probe ran nothing."""
    probed: dict[int, dict[str, Outcome]] = {}

    def outcome(i: int) -> dict[str, Outcome]:
        if i not in probed:
            start = time.monotonic()
            probed[i] = probe(candidates[i])
            seconds = time.monotonic() - start
            if not probed[i]:
                raise ProbeFailed(f"{candidates[i]}: the selection ran no test (is the environment broken? run tox -e {candidates[i].env})")
            difference = "" if i == good else f"{len(changed(probed[good], probed[i]))} tests differ from the good release"
            say(f"{candidates[i]}: {counts(probed[i])}" + (f"; {difference}" if difference else "; the good release") + f" ({seconds:.0f} s)")
        return probed[i]

    reference = outcome(good)
    if not changed(reference, outcome(bad)):
        return None
    low, high = good, bad  # outcome(low) is good's, outcome(high) differs
    while high - low > 1:
        middle = (low + high) // 2
        if changed(reference, outcome(middle)):
            high = middle
        else:
            low = middle
    return candidates[high], changed(reference, probed[high])


def _say(line: str) -> None:
    print(line, flush=True)  # one line per probe as it ends: a probe takes a while


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m harness bisect``: the first release whose outcome differs from a good one's."""
    parser = argparse.ArgumentParser(prog="python -m harness bisect", description=__doc__.splitlines()[0])
    parser.add_argument("--library", choices=sorted(PINNED), required=True)
    parser.add_argument("--good", required=True, help="a release whose outcome is the reference (2.0 or 2.0.1)")
    parser.add_argument("--bad", required=True, help="a later release whose outcome differs")
    parser.add_argument("--tox-ini", type=Path, default=Path("tox.ini"), help="default: ./tox.ini (the repository's)")
    parser.add_argument("pytest_args", nargs="*", metavar="-- PYTEST_ARGS", help="the selection, as for pytest")
    args = parser.parse_args(argv)
    try:
        if not args.tox_ini.is_file():
            raise BadInput(f"{args.tox_ini}: no such file (run from the repository, or give --tox-ini)")
        candidates = releases(args.library, args.tox_ini)
        good, bad = pick(candidates, args.good, "good"), pick(candidates, args.bad, "bad")
        if good >= bad:
            raise BadInput(f"--good {candidates[good].version} must be an earlier release than --bad {candidates[bad].version}")
        if importlib.util.find_spec("tox") is None:
            raise BadInput('tox is not installed here: python -m pip install "tox>=4" tox-uv')
        with tempfile.TemporaryDirectory(prefix="psg-bisect-") as workdir:
            found = bisect(candidates, good, bad, lambda r: tox_probe(r, args.pytest_args, Path(workdir)), _say)
    except BadInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ProbeFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if found is None:
        print(f"no change: {candidates[bad]} gives the outcome of {candidates[good]}")
        return 0
    first, what = found
    print(f"first release with another outcome: {args.library} {first}, {len(what)} tests changed:")
    for test, (before, after) in list(what.items())[:MAX_LISTED]:
        print(f"  {test}: {before} -> {after}")
    if len(what) > MAX_LISTED:
        print(f"  ... and {len(what) - MAX_LISTED} more")
    return 0
