"""Compare two pytest-benchmark runs, per case and method: did a method get slower?

    python -m harness compare BASELINE.json [BASELINE.json ...] CURRENT.json [--absolute] [--threshold 0.10]
    python -m harness compare BASELINE.json [...] --current RUN1.json RUN2.json RUN3.json

``auto`` as BASELINE takes every run stored under ``baselines/`` (or ``--baselines DIR``) for
the machine class and torch version the (first) current run recorded in its machine info (where ``--benchmark-autosave`` and ``--benchmark-save``
put them); with ``--if-missing store``, a machine class with no stored run yet gets the
current run(s) stored as its baseline, and nothing is judged.

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
spread. The rounds of all baseline runs are pooled for the test. The same holds for the run
being judged: ``--current`` takes several runs of the same code, whose median figure is judged.

A benchmark recorded while the 1-minute load average was at or above the core count is not
judged (the harness's benchmarks record both): a process descheduled for milliseconds at a
time fakes a slowdown of any size. Nor, for ratios, is a run whose batched step took more than
``--max-drift`` times as long (or as short) as the baseline runs' median: a shared machine has
such spells, and they slow the methods by a different factor than the batched step.

Memory: where both sides recorded peak memory (``peak_bytes`` on CUDA, ``peak_rss_bytes`` on
the CPU), a method whose median peak grew by more than ``--memory-threshold``, twice the range
of the baseline runs' peaks and :data:`MEMORY_FLOOR` is a regression too ("hungrier").

Exit status: 0 no regression, 1 regression, 2 bad input.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.benchmarks.records import BATCHED, BadInput, case_and_method, read_json, storage_name

DEFAULT_THRESHOLD = 0.10
#: How many times the spread of the baseline runs a change must exceed.
NOISE_FACTOR = 2.0
DEFAULT_ALPHA = 0.002
DEFAULT_MEMORY_THRESHOLD = 0.10
#: A run whose batched step took this many times longer (or shorter) than the baseline runs'
#: median is not judged by ratios: on this shared VM some runs ran the batched step 1.7-2.3x
#: slower, the methods less so, and the ratios moved by 8-20% with nothing changed.
DEFAULT_MAX_DRIFT = 1.5
#: Growth of the peak below this is never a memory regression: the CPU figure counts pages and
#: malloc's own bookkeeping (measured here: up to 16 MiB apart between runs of the same code).
MEMORY_FLOOR = 8 * 1024 * 1024


@dataclass(frozen=True)
class Timing:
    """One method on one case in one run: its raw rounds (seconds), and the batched step's
    rounds timed just before each of them where the run recorded them."""

    case: str
    method: str
    rounds: tuple[float, ...]
    paired_batched: tuple[float, ...] = ()
    peak: int | None = None
    load: float | None = None
    cpus: int | None = None

    @property
    def median(self) -> float:
        """The median round."""
        return statistics.median(self.rounds)

    @property
    def loaded(self) -> bool:
        """Recorded while the machine had more runnable work than cores: not to be judged."""
        return self.load is not None and self.cpus is not None and self.load >= self.cpus


TimedRun = dict[tuple[str, str], Timing]


class NoBaseline(BadInput):
    """``auto`` found no stored run for this machine class and torch version."""

    def __init__(self, folder: Path) -> None:
        super().__init__(f"no stored baseline under {folder}/ for the machine class and torch version the runs recorded")
        self.folder = folder


def baseline_folder(root: Path, machine_info: dict) -> Path:
    """Where ``auto`` looks for runs like one recorded with ``machine_info``:
    ``root/<machine class>-torch-<version>/`` (the class and version the run itself recorded)."""
    return root / storage_name(machine_info)


def stored_baselines(root: Path, machine_info: dict) -> list[Path]:
    """Every stored run of the machine class and torch version in ``machine_info`` (``auto``)."""
    folder = baseline_folder(root, machine_info)
    runs = sorted(folder.glob("*/*.json"))
    if not runs:
        raise NoBaseline(folder)
    return runs


def store_as_baseline(runs: Sequence[Path], folder: Path) -> list[Path]:
    """Copy runs (already read as valid) into ``folder`` where ``auto`` will find them."""
    target = folder / "stored"
    target.mkdir(parents=True, exist_ok=True)
    stored = []
    for number, run in enumerate(runs, start=1):
        stored.append(target / f"{number:04d}_baseline.json")
        stored[-1].write_bytes(run.read_bytes())
    return stored


def load(path: str | Path) -> TimedRun:
    """Read a pytest-benchmark JSON file into timings keyed by (case, method)."""
    data = read_json(path)
    run: TimedRun = {}
    for bench in data["benchmarks"]:
        key = case_and_method(bench)
        rounds = (bench.get("stats") or {}).get("data")
        if not rounds:
            raise BadInput(
                f"{path}: benchmark {bench.get('fullname', key)!r} has no raw rounds (stats.data); "
                "record runs with --benchmark-save-data (the project's benchmark runs do)"
            )
        extra = bench.get("extra_info") or {}
        paired = extra.get("batched_rounds") or ()
        if paired and len(paired) != len(rounds):
            raise BadInput(f"{path}: benchmark {key} has {len(rounds)} rounds but {len(paired)} paired batched rounds")
        peak = extra.get("peak_bytes", extra.get("peak_rss_bytes"))
        run[key] = Timing(
            *key,
            rounds=tuple(float(r) for r in rounds),
            paired_batched=tuple(float(r) for r in paired),
            peak=None if peak is None else int(peak),
            load=extra.get("load"),
            cpus=data["machine_info"].get("cpus"),
        )
    if not run:
        raise BadInput(f"{path}: holds no benchmarks")
    return run


@dataclass(frozen=True)
class TimingVerdict:
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


def _samples(run: TimedRun, key: tuple[str, str], absolute: bool) -> list[float]:
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


def _common_keys(baselines: Sequence[TimedRun], currents: Sequence[TimedRun]) -> list[tuple[str, str]]:
    """Every (case, method) of all current runs that some baseline run has (a method added
    after some of the baseline runs were recorded is judged against the runs that have it)."""
    keys = sorted(set(currents[0]).intersection(*currents[1:]) & set().union(*baselines))
    if not keys:
        raise BadInput("the baseline and current runs have no case and method in common")
    return keys


def _median_of_runs(per_run: Sequence[Sequence[float]]) -> tuple[float, float]:
    """The median of the runs' medians, and the largest relative distance of a run's from it."""
    figures = [statistics.median(samples) for samples in per_run]
    middle = statistics.median(figures)
    return middle, max(abs(f / middle - 1) for f in figures)


def _batched_time(run: TimedRun, key: tuple[str, str]) -> float | None:
    """The run's batched step time for this benchmark: its paired rounds, else the group's."""
    timing = run[key]
    if timing.paired_batched:
        return statistics.median(timing.paired_batched)
    batched = run.get((timing.case, BATCHED))
    return batched.median if batched is not None else None


def _drift(run: TimedRun, key: tuple[str, str], reference: float | None) -> float:
    """How many times slower (>1) or faster (<1) the run's batched step was than ``reference``."""
    own = _batched_time(run, key)
    return 1.0 if own is None or not reference else own / reference


def _steady(runs: Sequence[TimedRun], key: tuple[str, str], reference: float | None, max_drift: float) -> list[TimedRun]:
    return [run for run in runs if 1 / max_drift <= _drift(run, key, reference) <= max_drift]


def judge_timings(
    baselines: Sequence[TimedRun],
    currents: Sequence[TimedRun],
    threshold: float = DEFAULT_THRESHOLD,
    alpha: float = DEFAULT_ALPHA,
    absolute: bool = False,
    max_drift: float = DEFAULT_MAX_DRIFT,
) -> list[TimingVerdict]:
    """A row per (case, method) in every run; ``batched`` itself is compared only with ``absolute``.

    Current runs taken under load are left out of a row, and so are runs (current or baseline)
    whose batched step ran more than ``max_drift`` times slower or faster than the baseline
    runs' median (ratios only); a row with no current run left is not judged."""
    keys = [k for k in _common_keys(baselines, currents) if absolute or k[1] != BATCHED]
    if not keys:
        raise BadInput(f"the runs have nothing in common but {BATCHED!r} (pass --absolute to compare it)")
    rows = []
    for key in keys:
        having = [run for run in baselines if key in run]
        judged_baselines, quiet = having, [run for run in currents if not run[key].loaded]
        reference = None
        if not absolute:
            times = [t for t in (_batched_time(run, key) for run in having) if t is not None]
            reference = statistics.median(times) if times else None
            judged_baselines = _steady(having, key, reference, max_drift) or having
            steady = _steady(quiet, key, reference, max_drift)
        else:
            steady = quiet
        per_run = [_samples(run, key, absolute) for run in judged_baselines]
        b, spread = _median_of_runs(per_run)
        allowed = max(threshold, NOISE_FACTOR * spread)
        if not steady:
            if quiet:
                worst = max((_drift(run, key, reference) for run in quiet), key=lambda d: max(d, 1 / d))
                why = f"batched step {worst:.2g}x the baseline's"
            else:
                loaded = max(currents, key=lambda run: run[key].load)[key]
                why = f"load {loaded.load:.1f} on {loaded.cpus} cores"
            rows.append(TimingVerdict(*key, b, float("nan"), 1.0, f"not judged: {why}", allowed))
            continue
        cur_runs = [_samples(run, key, absolute) for run in steady]
        c, _ = _median_of_runs(cur_runs)
        base = [x for samples in per_run for x in samples]
        cur = [x for samples in cur_runs for x in samples]
        if c > b * (1 + allowed):
            p = _slower_p(base, cur, "greater")
            verdict = "REGRESSION" if p < alpha else "slower, not significant"
        elif c < b / (1 + allowed):
            p = _slower_p(base, cur, "less")
            verdict = "improved" if p < alpha else "faster, not significant"
        else:
            p, verdict = 1.0, "ok"
        rows.append(TimingVerdict(*key, b, c, p, verdict, allowed))
    return rows


@dataclass(frozen=True)
class MemoryVerdict:
    """One line of the memory table: median peak bytes of the baseline and current runs, and
    the growth allowed before it counts."""

    case: str
    method: str
    baseline: int
    current: int
    allowed: int
    verdict: str

    @property
    def change(self) -> float:
        """Current over baseline, minus one."""
        return self.current / self.baseline - 1.0 if self.baseline else float("inf")


def judge_memory(
    baselines: Sequence[TimedRun], currents: Sequence[TimedRun], threshold: float = DEFAULT_MEMORY_THRESHOLD
) -> list[MemoryVerdict]:
    """A row per (case, method) whose peak memory every run recorded.

    The growth allowed is the largest of ``threshold`` of the baseline, :data:`NOISE_FACTOR`
    times the range of the baseline runs' peaks, and :data:`MEMORY_FLOOR`."""
    rows = []
    for key in _common_keys(baselines, currents):
        base = [run[key].peak for run in baselines if key in run]
        cur = [run[key].peak for run in currents]
        if None in base or None in cur:
            continue
        b, c = int(statistics.median(base)), int(statistics.median(cur))
        allowed = int(max(threshold * b, NOISE_FACTOR * (max(base) - min(base)), MEMORY_FLOOR))
        verdict = "HUNGRIER" if c - b > allowed else "leaner" if b - c > allowed else "ok"
        rows.append(MemoryVerdict(*key, b, c, allowed, verdict))
    return rows


def format_table(rows: Sequence[TimingVerdict], absolute: bool) -> str:
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


def format_memory_table(rows: Sequence[MemoryVerdict]) -> str:
    """The peak-memory comparison as a Markdown table."""
    lines = [
        "| case | method | baseline peak (MiB) | current | change | allowed (MiB) | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.case} | {r.method} | {r.baseline / 2**20:.1f} | {r.current / 2**20:.1f} | {r.change:+.1%} | "
            f"{r.allowed / 2**20:.1f} | {r.verdict} |"
        )
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m harness compare", description=__doc__.splitlines()[0])
    parser.add_argument(
        "runs", nargs="+", metavar="RUN",
        help="baseline run(s) ('auto': the stored ones, see above), then the run to judge (pytest-benchmark JSON)",
    )
    parser.add_argument(
        "--current", nargs="+", metavar="RUN",
        help="the runs to judge (several runs of the same code; their median is judged): every RUN is then a baseline",
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
    parser.add_argument(
        "--memory-threshold", type=float, default=DEFAULT_MEMORY_THRESHOLD,
        help=f"relative growth of peak memory that counts (default {DEFAULT_MEMORY_THRESHOLD}; "
        f"growth below {MEMORY_FLOOR // 2**20} MiB never does)",
    )
    parser.add_argument(
        "--max-drift", type=float, default=DEFAULT_MAX_DRIFT,
        help="leave out runs whose batched step took more than this many times the baseline runs' "
        f"(or less than its inverse); ratios only (default {DEFAULT_MAX_DRIFT})",
    )
    parser.add_argument("--baselines", type=Path, default=Path("baselines"), help="where 'auto' looks (default baselines/)")
    parser.add_argument(
        "--if-missing", choices=("fail", "store"), default="fail",
        help="when 'auto' finds no stored run for this machine class: fail (exit 2, the default), "
        "or store the current run(s) there as its baseline and judge nothing",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m harness compare``: print the tables, return the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.threshold <= 0 or args.memory_threshold <= 0 or not 0 < args.alpha < 1 or args.max_drift <= 1:
        parser.error("--threshold and --memory-threshold must be positive, --alpha between 0 and 1, --max-drift above 1")
    given, current_paths = (args.runs, args.current) if args.current else (args.runs[:-1], args.runs[-1:])
    if not given:
        parser.error("give at least one baseline run and the current run")
    try:
        currents = [load(p) for p in current_paths]
        try:
            recorded = read_json(current_paths[0])["machine_info"]
            paths = [
                p for arg in given for p in (stored_baselines(args.baselines, recorded) if arg == "auto" else [Path(arg)])
            ]
        except NoBaseline as missing:
            if args.if_missing == "fail":
                raise
            loaded = sorted({f"{t.case}/{t.method}" for run in currents for t in run.values() if t.loaded})
            if loaded:
                raise BadInput(f"{missing}; not storing runs recorded under load as one ({', '.join(loaded)})") from None
            stored = store_as_baseline([Path(p) for p in current_paths], missing.folder)
            print(f"{missing}: stored the current run(s) as its baseline, nothing judged: " + ", ".join(map(str, stored)))
            return 0
        baselines = [load(p) for p in paths]
        rows = judge_timings(baselines, currents, args.threshold, args.alpha, args.absolute, args.max_drift)
        memory = judge_memory(baselines, currents, args.memory_threshold)
    except BadInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_table(rows, args.absolute))
    if memory:
        print("\n" + format_memory_table(memory))
    baseline_keys = set().union(*baselines)
    current_keys = set().union(*currents)
    for label, only in (("baseline only", baseline_keys - current_keys), ("current only", current_keys - baseline_keys)):
        if only:
            print(f"\n{label} (not compared): " + ", ".join(f"{case}/{method}" for case, method in sorted(only)))
    regressions = [r for r in rows if r.verdict == "REGRESSION"]
    hungrier = [r for r in memory if r.verdict == "HUNGRIER"]
    unjudged = [r for r in rows if r.verdict.startswith("not judged")]
    print(
        f"\n{len(regressions)} regression(s) in {len(rows)} comparison(s) against {len(baselines)} baseline run(s) "
        f"(threshold {args.threshold:.0%} or {NOISE_FACTOR:g}x the baseline runs' spread, alpha {args.alpha}); "
        f"{len(currents)} current run(s)"
    )
    if memory:
        print(f"{len(hungrier)} method(s) hungrier in {len(memory)} memory comparison(s) (threshold {args.memory_threshold:.0%})")
    if unjudged:
        print(
            f"{len(unjudged)} comparison(s) not judged: every current run was recorded with the load at or above the "
            f"core count, or ran the batched step more than {args.max_drift:g}x slower or faster than the baseline "
            "runs did; rerun on a quiet machine"
        )
    return 1 if regressions or hungrier else 0
