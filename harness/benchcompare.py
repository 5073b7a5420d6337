"""Compare two pytest-benchmark runs, per case and method: did a method get slower?

    python -m harness compare BASELINE.json [BASELINE.json ...] CURRENT.json [--absolute] [--threshold 0.15]

``auto`` as BASELINE takes every run stored under ``baselines/`` for this machine class and
torch version (where ``--benchmark-autosave`` and ``--benchmark-save`` put them).

Reads pytest-benchmark JSON (``--benchmark-json`` output or an autosaved run). Each
benchmark names its case and method in ``extra_info`` (the project's benchmark tests do), or
in its ``group`` and ``param``. By default the figure judged is the overhead ratio: the
method's time over the plain batched forward+backward (``batched``) of the same case in the
same run (round by round where the run timed a paired batched step before each round, else
over the ``batched`` benchmark's median), which carries across machines of a class; ``--absolute`` judges raw times (the same
machine only). A change is a regression only when the median moved beyond the threshold
*and* a one-sided Mann-Whitney U test on the raw rounds says so at ``--alpha`` (asv's rule);
a change beyond the threshold that the rounds do not support is reported as such.

Rounds of one run share that run's luck (measured here: the same code moved by up to 31% from
one run to the next, though within 4% for most methods), so a baseline is best several runs
of unchanged code: their figures' spread around their median is the noise of that case and
method, and the threshold it is judged by is the larger of ``--threshold`` and twice that
spread. The rounds of all baseline runs are pooled for the test.

Exit status: 0 no regression, 1 regression, 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

BATCHED = "batched"
DEFAULT_THRESHOLD = 0.15
#: How many times the spread of the baseline runs a change must exceed.
NOISE_FACTOR = 2.0
DEFAULT_ALPHA = 0.002


class BadInput(Exception):
    """A file that cannot be compared; the message says which and why."""


@dataclass(frozen=True)
class Timing:
    """One method on one case in one run: its raw rounds (seconds), and the batched step's
    rounds timed just before each of them where the run recorded them."""

    case: str
    method: str
    rounds: tuple[float, ...]
    paired_batched: tuple[float, ...] = ()

    @property
    def median(self) -> float:
        """The median round."""
        return statistics.median(self.rounds)


Run = dict[tuple[str, str], Timing]


def case_and_method(bench: dict) -> tuple[str, str]:
    """A benchmark's case and method, from its ``extra_info`` or else its ``group`` and ``param``."""
    extra = bench.get("extra_info") or {}
    if "case" in extra and "method" in extra:
        return str(extra["case"]), str(extra["method"])
    group, param = bench.get("group"), bench.get("param")
    if group and param:
        return str(group), str(param)
    raise BadInput(f"benchmark {bench.get('fullname', bench.get('name'))!r} names no case and method")


def stored_baselines(root: Path = Path("baselines")) -> list[Path]:
    """Every stored run for this machine class and torch version (``auto``)."""
    from harness.bench import storage_name

    folder = root / storage_name()
    runs = sorted(folder.glob("*/*.json"))
    if not runs:
        raise BadInput(f"no stored baseline under {folder}/ for this machine class and torch version")
    return runs


def read_json(path: str | Path) -> dict:
    """Read a pytest-benchmark JSON file as it is; :class:`BadInput` if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"{path}: no such file")
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInput(f"{path}: not JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list) or "machine_info" not in data:
        raise BadInput(f"{path}: not pytest-benchmark JSON (expected 'machine_info' and a 'benchmarks' list)")
    return data


def load(path: str | Path) -> Run:
    """Read a pytest-benchmark JSON file into timings keyed by (case, method)."""
    data = read_json(path)
    run: Run = {}
    for bench in data["benchmarks"]:
        key = case_and_method(bench)
        rounds = (bench.get("stats") or {}).get("data")
        if not rounds:
            raise BadInput(
                f"{path}: benchmark {bench.get('fullname', key)!r} has no raw rounds (stats.data); "
                "record runs with --benchmark-save-data (the project's benchmark runs do)"
            )
        paired = (bench.get("extra_info") or {}).get("batched_rounds") or ()
        if paired and len(paired) != len(rounds):
            raise BadInput(f"{path}: benchmark {key} has {len(rounds)} rounds but {len(paired)} paired batched rounds")
        run[key] = Timing(*key, tuple(float(r) for r in rounds), tuple(float(r) for r in paired))
    if not run:
        raise BadInput(f"{path}: holds no benchmarks")
    return run


@dataclass(frozen=True)
class Row:
    """One line of the comparison table."""

    case: str
    method: str
    baseline: float
    current: float
    p_value: float
    verdict: str
    allowed: float = DEFAULT_THRESHOLD

    @property
    def change(self) -> float:
        """Current over baseline, minus one (+0.25 is 25% slower)."""
        return self.current / self.baseline - 1.0


def _samples(run: Run, key: tuple[str, str], absolute: bool) -> list[float]:
    timing = run[key]
    if absolute:
        return list(timing.rounds)
    if timing.paired_batched:
        return [r / b for r, b in zip(timing.rounds, timing.paired_batched, strict=True)]
    batched = run.get((timing.case, BATCHED))
    if batched is None:
        raise BadInput(f"case {timing.case!r} has no {BATCHED!r} timing to normalize by (or pass --absolute)")
    scale = batched.median
    return [r / scale for r in timing.rounds]


def _slower_p(baseline: Sequence[float], current: Sequence[float], alternative: str) -> float:
    from scipy.stats import mannwhitneyu

    return float(mannwhitneyu(current, baseline, alternative=alternative).pvalue)


def compare(
    baselines: Sequence[Run],
    current: Run,
    threshold: float = DEFAULT_THRESHOLD,
    alpha: float = DEFAULT_ALPHA,
    absolute: bool = False,
) -> list[Row]:
    """A row per (case, method) in every run; ``batched`` itself is compared only with ``absolute``."""
    keys = sorted(set(current).intersection(*baselines))
    if not absolute:
        keys = [k for k in keys if k[1] != BATCHED]
    if not keys:
        raise BadInput("the baseline and current runs have no case and method in common")
    rows = []
    for key in keys:
        per_run = [_samples(run, key, absolute) for run in baselines]
        figures = [statistics.median(samples) for samples in per_run]
        b = statistics.median(figures)
        spread = max(abs(f / b - 1) for f in figures)
        allowed = max(threshold, NOISE_FACTOR * spread)
        base = [x for samples in per_run for x in samples]
        cur = _samples(current, key, absolute)
        c = statistics.median(cur)
        if c > b * (1 + allowed):
            p = _slower_p(base, cur, "greater")
            verdict = "REGRESSION" if p < alpha else "slower, not significant"
        elif c < b / (1 + allowed):
            p = _slower_p(base, cur, "less")
            verdict = "improved" if p < alpha else "faster, not significant"
        else:
            p, verdict = 1.0, "ok"
        rows.append(Row(*key, b, c, p, verdict, allowed))
    return rows


def format_table(rows: Sequence[Row], absolute: bool) -> str:
    """The comparison as a Markdown table."""
    unit = "median time (s)" if absolute else "overhead vs batched"
    lines = [
        f"| case | method | baseline {unit} | current | change | allowed | p | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.case} | {r.method} | {r.baseline:.4g} | {r.current:.4g} | {r.change:+.1%} | "
            f"{r.allowed:.0%} | {r.p_value:.2g} | {r.verdict} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m harness compare``: print the table, return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m harness compare", description=__doc__.splitlines()[0])
    parser.add_argument(
        "runs", nargs="+", metavar="RUN",
        help="baseline run(s) ('auto': the stored ones, see above), then the run to judge (pytest-benchmark JSON)",
    )
    parser.add_argument("--absolute", action="store_true", help="judge raw times (same machine only)")
    parser.add_argument(
        "--threshold", type=float, default=DEFAULT_THRESHOLD,
        help=f"relative change of the median that counts (default {DEFAULT_THRESHOLD})",
    )
    parser.add_argument(
        "--alpha", type=float, default=DEFAULT_ALPHA,
        help=f"significance level of the Mann-Whitney U test on the raw rounds (default {DEFAULT_ALPHA})",
    )
    args = parser.parse_args(argv)
    if args.threshold <= 0 or not 0 < args.alpha < 1:
        parser.error("--threshold must be positive and --alpha between 0 and 1")
    if len(args.runs) < 2:
        parser.error("give at least one baseline run and the current run")
    try:
        paths = [p for arg in args.runs[:-1] for p in (stored_baselines() if arg == "auto" else [Path(arg)])]
        baselines, current = [load(p) for p in paths], load(args.runs[-1])
        rows = compare(baselines, current, args.threshold, args.alpha, args.absolute)
        baseline = {key: timing for run in baselines for key, timing in run.items()}
    except BadInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_table(rows, args.absolute))
    for label, only in (("baseline only", set(baseline) - set(current)), ("current only", set(current) - set(baseline))):
        if only:
            print(f"\n{label} (not compared): " + ", ".join(f"{case}/{method}" for case, method in sorted(only)))
    regressions = [r for r in rows if r.verdict == "REGRESSION"]
    print(
        f"\n{len(regressions)} regression(s) in {len(rows)} comparison(s) against {len(baselines)} baseline run(s) "
        f"(threshold {args.threshold:.0%} or {NOISE_FACTOR:g}x the baseline runs' spread, alpha {args.alpha})"
    )
    return 1 if regressions else 0
