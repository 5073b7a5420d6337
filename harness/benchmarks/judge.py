"""Compare pytest-benchmark runs, per case and method: did a method get slower, or do more work?

    python -m harness compare BASELINE.json [BASELINE.json ...] CURRENT.json [--absolute] [--threshold 0.10]
    python -m harness compare BASELINE.json [...] --current RUN1.json RUN2.json RUN3.json

``auto`` as BASELINE takes every run stored under ``baselines/`` (or ``--baselines DIR``) for
the machine class and torch version the (first) current run recorded in its machine info (where
``--benchmark-autosave`` and ``--benchmark-save`` put them). With ``--if-missing store``, a
machine class with no stored run yet gets the current run(s) stored as its baseline and nothing
is judged; so does a CPU none of the stored runs was recorded on (its counts are still judged).

Reads pytest-benchmark JSON (``--benchmark-json`` output or an autosaved run). Each benchmark
names its case and method in ``extra_info`` (the project's benchmark tests do), or in its
``group`` and ``param``.

Time. By default the figure judged is the overhead ratio (:func:`~harness.benchmarks.records.overhead`,
the same figure the report shows): the method's time over the plain batched forward+backward
(``batched``) of the same case in the same run, round by round where the run timed a paired
batched step before each round, else over the ``batched`` benchmark's median; ``--absolute``
judges raw times. A change is a regression only when the median moved beyond the threshold
*and* a one-sided Mann-Whitney U test on the raw rounds says so at ``--alpha`` (asv's rule).
Times are judged only against baseline runs recorded on the same CPU (model and SIMD
extensions, :class:`~harness.benchmarks.records.Machine`): a 2x faster CPU of the same machine
class moves the batched step and the methods by different factors.

Rounds of one run share that run's luck (measured here: the same code moved by up to 31% from
one run to the next, though within 4% for most methods), so a baseline is best several runs
of unchanged code: their figures' spread around their median is the noise of that case and
method, and the threshold it is judged by is the larger of ``--threshold`` and twice that
spread. The rounds of all baseline runs are pooled for the test. The same holds for the run
being judged: ``--current`` takes several runs of the same code, whose median figure is judged.

A run in which any benchmark recorded a 1-minute load average at or above the core count is not
judged by time, nor judged against where it is a baseline given by hand (the harness's benchmarks
record both; the rule that refuses such a run as a stored baseline): a process descheduled for
milliseconds at a time fakes a slowdown of any size, and the 1-minute average lags the load, so the benchmarks of a loaded run that read below the cores were
not timed on a quiet machine either (two such runs gave a +18.4% ``REGRESSION`` of unchanged code,
docs/calibration.md). Nor, for ratios, is a run whose batched step took more
than ``--max-drift`` times as long (or as short) as the baseline runs' median: a shared machine
has such spells, and they slow the methods by a different factor than the batched step.

Counts. Where both sides recorded them, the instructions of one call (``instructions``, counted
under callgrind) and CUDA kernel launches per call (``kernel_launches``) are judged per call,
against the median of the baseline runs of the same code path (the CPU vendor and SIMD
extensions: the same kernels, whatever the CPU's speed), whatever the load. They are
deterministic, so no test on rounds: an instruction count up by more than the largest of
``--count-threshold`` (:data:`DEFAULT_COUNT_THRESHOLD`) of it, :data:`COUNT_FLOORS` (an absolute
number per call: what is left of one process's state on another, measured) and twice the baseline
runs' spread is ``MORE WORK``; any kernel launch beyond twice the baseline runs' spread is ``MORE
LAUNCHES`` (the same code launches the same kernels). Counts are judged per call, not as a ratio
to ``batched``: they do not drift with the machine, so dividing would only add the batched count's
own noise and hide a change that hits the batched step as well.

Memory: each of :data:`~harness.benchmarks.records.MEMORY_FIGURES` both sides recorded (CUDA's
allocator peak; on the CPU the peak of live bytes and the bytes allocated by one call, from the
allocator's events), a figure up by more than the largest of ``--memory-threshold`` of it, its
:data:`MEMORY_FLOORS` and twice the range of the baseline runs' is ``HUNGRIER``. They are counted,
not sampled; resident-memory growth (``peak_rss_bytes``, older runs) is not judged.

A guard that judged nothing does not pass: when fewer than :data:`MIN_JUDGED` of the
benchmarks were judged (by time or by a count), the run is ``UNJUDGED`` unless
``--allow-unjudged``.

Exit status: 0 no regression, 1 regression (``REGRESSION``, ``MORE WORK``, ``MORE LAUNCHES``,
``HUNGRIER``), 2 bad input, 3 too little judged (and no regression).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.benchmarks.records import (
    BATCHED,
    COUNTERS,
    MEMORY_FIGURES,
    BadInput,
    Machine,
    baseline_refusal,
    case_and_method,
    overhead_ratios,
    read_json,
    storage_name,
)
from harness.core.markdown import markdown_table

DEFAULT_THRESHOLD = 0.10
#: How many times the spread of the baseline runs a change must exceed.
NOISE_FACTOR = 2.0
DEFAULT_ALPHA = 0.002
#: The memory figures are counted (the allocator's events): the same code gives the same bytes,
#: and one extra copy of the per-sample gradients adds 6% or more to the bytes a call allocates.
DEFAULT_MEMORY_THRESHOLD = 0.01
#: A run whose batched step took this many times longer (or shorter) than the baseline runs'
#: median is not judged by ratios: on this shared VM some runs ran the batched step 1.7-2.3x
#: slower, the methods less so, and the ratios moved by 8-20% with nothing changed.
DEFAULT_MAX_DRIFT = 1.5
#: Growth below this (bytes) is never a memory regression, per figure: what runs of the same code
#: gave apart, measured (docs/calibration.md).
MEMORY_FLOORS = {"peak_bytes": 0, "peak_alloc_bytes": 0, "allocated_bytes": 0}
#: Measured on an Intel Xeon (docs/calibration.md, issue 28), one run against one run, the copies
#: that count a plugin's method alone importing it, addresses not randomized: unchanged code, with
#: or without an unrelated plugin loaded, counted within 0.44% (vmap-compiled; every other method
#: within 0.26%); one extra copy of vmap's output added +0.93% on smooth_cnn at B=16 and
#: +1.4% to +2.8% elsewhere. On an AMD EPYC (round 5) unchanged code read up to 0.61% apart
#: (opacus-hooks), an offset per worker: scipy's random docstrings. With the worker's entropy fixed
#: (round 6) every method but vmap-compiled counted within 0.32% in every pair of runs there, and
#: the copy read +1.32% in every trial.
DEFAULT_COUNT_THRESHOLD = 0.005
#: The relative increase a torch.compile'd call's instructions are allowed (a method of
#: :data:`~harness.checking.trials.HEAVY_METHODS`), whatever ``--count-threshold`` says below it:
#: each count compiles the call anew in an empty cache, and that compile leaves the heap the call
#: runs in differently in every process: vmap-compiled on smooth_cnn moved by up to 0.45% between
#: fresh processes (0.52% between runs in round 6, every other method 0.32%), and one build of
#: the case is all a count can take (a second build's call reads 1.5% more; docs/calibration.md,
#: round 5).
COMPILED_COUNT_THRESHOLD = 0.01
#: The relative increase each counter allows beyond twice the baseline runs' spread: kernel
#: launches are integers that the same code repeats exactly, so one more per call counts.
COUNT_THRESHOLDS = {"instructions": DEFAULT_COUNT_THRESHOLD, "kernel_launches": 0.0}
#: The increase per call each counter allows whatever the call's size: above the 2,907
#: instructions the smallest counted calls (vmap-compiled on mlp, 774k-787k) moved by in runs of
#: unchanged code, and below 1% of them (7,738), so a 1% change of any counted call is caught;
#: a plugin's smaller call is held to what can be told apart.
COUNT_FLOORS = {"instructions": 4000, "kernel_launches": 0}
#: What a count beyond its allowance is called (a regression), and one below it.
MORE = {"instructions": "MORE WORK", "kernel_launches": "MORE LAUNCHES"}
LESS = {"instructions": "less work", "kernel_launches": "fewer launches"}
#: A comparison in which fewer than this fraction of the benchmarks were judged (by time or by
#: a count) does not pass: at high load or on another CPU every time row is left out, and a
#: pass would say nothing. Under half, since rows drop out one by one in a slow spell; a run
#: judged on most rows still says something.
MIN_JUDGED = 0.5
EXIT_OK, EXIT_REGRESSION, EXIT_BAD_INPUT, EXIT_UNJUDGED = 0, 1, 2, 3
REGRESSIONS = ("REGRESSION", *MORE.values(), "HUNGRIER")
#: Why a time row was not judged, by cause, as the summary says it.
UNJUDGED_BECAUSE = {
    "machine": "with no baseline run on this CPU",
    "load": "with a load at or above the core count recorded in every current run",
    "baseline-load": "with a load at or above the core count recorded in every baseline run",
    "drift": "with the batched step beyond --max-drift of the baseline runs' in every current run",
}
#: Shown for a figure there is none of (a row not judged, no test on the rounds).
NONE = "—"


@dataclass(frozen=True)
class Timing:
    """One method on one case in one run: its raw rounds (seconds), the batched step's rounds
    timed just before each of them where the run recorded them, and its counts per call."""

    case: str
    method: str
    rounds: tuple[float, ...]
    paired_batched: tuple[float, ...] = ()
    #: The memory figures it recorded (:data:`~harness.benchmarks.records.MEMORY_FIGURES`), bytes.
    memory: dict[str, int] = field(default_factory=dict, compare=False)
    load: float | None = None
    cpus: int | None = None
    counts: dict[str, int] = field(default_factory=dict, compare=False)

    @property
    def median(self) -> float:
        """The median round."""
        return statistics.median(self.rounds)

    @property
    def loaded(self) -> bool:
        """Recorded while the machine had more runnable work than cores."""
        return self.load is not None and self.cpus is not None and self.load >= self.cpus


TimedRun = dict[tuple[str, str], Timing]


def loaded_at(run: TimedRun) -> Timing | None:
    """The benchmark of ``run`` recorded at the highest load, if any was at or above the core
    count: then no time of the run is judged."""
    loaded = [timing for timing in run.values() if timing.loaded]
    return max(loaded, key=lambda timing: timing.load) if loaded else None


def _most_loaded(runs: Sequence[TimedRun]) -> Timing:
    """The benchmark recorded at the highest load among ``runs``, every one of them loaded."""
    return max((loaded_at(run) for run in runs), key=lambda timing: timing.load)


@dataclass(frozen=True)
class Run:
    """One pytest-benchmark file: where it came from, the machine it recorded, its timings."""

    path: Path
    machine: Machine
    timings: TimedRun


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
    """Copy runs (already read as valid) into ``folder`` where ``auto`` will find them, numbered
    after the runs stored there before."""
    target = folder / "stored"
    target.mkdir(parents=True, exist_ok=True)
    first = len(list(target.glob("*.json"))) + 1
    stored = []
    for number, run in enumerate(runs, start=first):
        stored.append(target / f"{number:04d}_baseline.json")
        stored[-1].write_bytes(run.read_bytes())
    return stored


def _figures(extra: dict, names: Sequence[str]) -> dict[str, int]:
    return {name: int(extra[name]) for name in names if extra.get(name) is not None}


def load(path: str | Path) -> Run:
    """Read a pytest-benchmark JSON file into timings keyed by (case, method)."""
    data = read_json(path)
    timings: TimedRun = {}
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
        timings[key] = Timing(
            *key,
            rounds=tuple(float(r) for r in rounds),
            paired_batched=tuple(float(r) for r in paired),
            memory=_figures(extra, MEMORY_FIGURES),
            load=extra.get("load"),
            cpus=data["machine_info"].get("cpus"),
            counts=_figures(extra, COUNTERS),
        )
    if not timings:
        raise BadInput(f"{path}: holds no benchmarks")
    return Run(Path(path), Machine.of(data["machine_info"]), timings)


@dataclass(frozen=True)
class TimingVerdict:
    """One line of the time table; ``current`` and ``p_value`` are None where there is none."""

    case: str
    method: str
    baseline: float | None
    current: float | None
    p_value: float | None
    verdict: str
    allowed: float | None = DEFAULT_THRESHOLD
    #: Why the row was not judged (a key of :data:`UNJUDGED_BECAUSE`), or None where it was.
    unjudged: str | None = None

    @property
    def change(self) -> float | None:
        """Current over baseline, minus one (+0.25 is 25% slower)."""
        return None if self.current is None or not self.baseline else self.current / self.baseline - 1.0


def _samples(run: TimedRun, key: tuple[str, str], absolute: bool) -> list[float]:
    timing = run[key]
    if absolute:
        return list(timing.rounds)
    batched = run.get((timing.case, BATCHED))
    ratios = overhead_ratios(timing.rounds, timing.paired_batched, batched.median if batched else None)
    if ratios is None:
        raise BadInput(f"case {timing.case!r} has no {BATCHED!r} timing to normalize by (or pass --absolute)")
    return ratios


def _shift_p(baseline: Sequence[float], current: Sequence[float], alternative: str) -> float:
    """The one-sided Mann-Whitney p-value that the current rounds are ``greater`` (slower) or
    ``less`` (faster) than the baseline's."""
    from scipy.stats import mannwhitneyu

    return float(mannwhitneyu(current, baseline, alternative=alternative).pvalue)


def common_keys(baselines: Sequence[TimedRun], currents: Sequence[TimedRun]) -> list[tuple[str, str]]:
    """Every (case, method) of all current runs that some baseline run has (a method added
    after some of the baseline runs were recorded is judged against the runs that have it)."""
    keys = sorted(set(currents[0]).intersection(*currents[1:]) & set().union(*baselines))
    if not keys:
        raise BadInput("the baseline and current runs have no case and method in common")
    return keys


def time_keys(baselines: Sequence[TimedRun], currents: Sequence[TimedRun], absolute: bool) -> list[tuple[str, str]]:
    """The keys judged by time: ``batched`` itself only with ``absolute``."""
    keys = [k for k in common_keys(baselines, currents) if absolute or k[1] != BATCHED]
    if not keys:
        raise BadInput(f"the runs have nothing in common but {BATCHED!r} (pass --absolute to compare it)")
    return keys


def _median_and_spread(figures: Sequence[float]) -> tuple[float, float]:
    """The median of the runs' figures, and the largest distance of one from it."""
    middle = statistics.median(figures)
    return middle, max(abs(f - middle) for f in figures)


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
    keys: Sequence[tuple[str, str]] | None = None,
) -> list[TimingVerdict]:
    """A row per key (default :func:`time_keys`); ``baselines`` are the runs comparable by time
    (the same machine), and a key none of them has is not judged.

    Runs taken under load (any of their benchmarks: :func:`loaded_at`), current or baseline, are
    left out of a row (a baseline file given by hand is not checked by the storage rule), and so
    are runs (current or baseline) whose batched step ran more than ``max_drift`` times slower or
    faster than the baseline runs' median (ratios only); a row with no current run left is not judged."""
    rows = []
    for key in time_keys(baselines, currents, absolute) if keys is None else keys:
        with_key = [run for run in baselines if key in run]
        if not with_key:
            rows.append(TimingVerdict(*key, None, None, None, "not judged: no baseline run on this CPU", None, "machine"))
            continue
        quiet_baselines = [run for run in with_key if loaded_at(run) is None]
        having = quiet_baselines or with_key  # the loaded ones only for the figure shown
        judged_baselines, quiet = having, [run for run in currents if loaded_at(run) is None]
        reference = None
        if not absolute:
            times = [t for t in (_batched_time(run, key) for run in having) if t is not None]
            reference = statistics.median(times) if times else None
            judged_baselines = _steady(having, key, reference, max_drift) or having
            steady = _steady(quiet, key, reference, max_drift)
        else:
            steady = quiet
        per_run = [_samples(run, key, absolute) for run in judged_baselines]
        b, spread = _median_and_spread([statistics.median(samples) for samples in per_run])
        allowed = max(threshold, NOISE_FACTOR * spread / b)
        if not quiet_baselines:
            loaded = _most_loaded(with_key)
            why = f"baseline recorded at load {loaded.load:.1f} on {loaded.cpus} cores"
            rows.append(TimingVerdict(*key, b, None, None, f"not judged: {why}", allowed, "baseline-load"))
            continue
        if not steady:
            if quiet:
                worst = max((_drift(run, key, reference) for run in quiet), key=lambda d: max(d, 1 / d))
                why, cause = f"batched step {worst:.2g}x the baseline's", "drift"
            else:
                loaded = _most_loaded(currents)
                why, cause = f"load {loaded.load:.1f} on {loaded.cpus} cores", "load"
            rows.append(TimingVerdict(*key, b, None, None, f"not judged: {why}", allowed, cause))
            continue
        cur_runs = [_samples(run, key, absolute) for run in steady]
        c = statistics.median([statistics.median(samples) for samples in cur_runs])
        base = [x for samples in per_run for x in samples]
        cur = [x for samples in cur_runs for x in samples]
        p: float | None = None
        if c > b * (1 + allowed):
            p = _shift_p(base, cur, "greater")
            verdict = "REGRESSION" if p < alpha else "slower, not significant"
        elif c < b / (1 + allowed):
            p = _shift_p(base, cur, "less")
            verdict = "improved" if p < alpha else "faster, not significant"
        else:
            verdict = "ok"
        rows.append(TimingVerdict(*key, b, c, p, verdict, allowed))
    return rows


@dataclass(frozen=True)
class CountVerdict:
    """One line of the count table: the median count per call of the baseline and current runs,
    and the increase allowed (in counts) before it is a regression."""

    case: str
    method: str
    counter: str
    baseline: float
    current: float
    allowed: float
    verdict: str

    @property
    def change(self) -> float:
        """Current over baseline, minus one."""
        if not self.baseline:
            return float("inf") if self.current else 0.0
        return self.current / self.baseline - 1.0


def _exact_allowance(base: Sequence[float], threshold: float, floor: float) -> tuple[float, float]:
    """The median of deterministic baseline figures and the change allowed: the largest of
    ``threshold`` of it, ``floor`` and :data:`NOISE_FACTOR` times the figures' spread around it."""
    b, spread = _median_and_spread(base)
    return b, max(threshold * b, floor, NOISE_FACTOR * spread)


def judge_counts(
    baselines: Sequence[TimedRun], currents: Sequence[TimedRun], counter: str, threshold: float | None = None
) -> list[CountVerdict]:
    """A row per (case, method) whose ``counter`` some current run and some baseline run recorded
    (the median of those that did: ``tox -e bench`` counts in the first of its three runs only;
    ``threshold``: :data:`COUNT_THRESHOLDS` by default, with the counter's :data:`COUNT_FLOORS`);
    ``batched`` included."""
    rows = []
    for key in sorted(set(currents[0]).intersection(*currents[1:])):
        cur = [run[key].counts[counter] for run in currents if counter in run[key].counts]
        base = [run[key].counts[counter] for run in baselines if key in run and counter in run[key].counts]
        if not cur or not base:
            continue
        b, allowed = _exact_allowance(base, count_threshold(key[1], counter, threshold), COUNT_FLOORS[counter])
        c = statistics.median(cur)
        verdict = MORE[counter] if c - b > allowed else LESS[counter] if b - c > allowed else "ok"
        rows.append(CountVerdict(*key, counter, b, c, allowed, verdict))
    return rows


def count_threshold(method: str, counter: str = "instructions", threshold: float | None = None) -> float:
    """The relative increase of ``method``'s ``counter`` that counts: ``threshold`` (default
    :data:`COUNT_THRESHOLDS`), at least :data:`COMPILED_COUNT_THRESHOLD` for a torch.compile'd
    call's instructions. Beyond it and the counter's :data:`COUNT_FLOORS` a change is one."""
    from harness.checking.trials import HEAVY_METHODS

    threshold = COUNT_THRESHOLDS[counter] if threshold is None else threshold
    return _compiled_threshold(counter, threshold) if method in HEAVY_METHODS else threshold


def _compiled_threshold(counter: str, threshold: float) -> float:
    """The relative allowance of a torch.compile'd call's ``counter`` where others get ``threshold``."""
    return max(threshold, COMPILED_COUNT_THRESHOLD) if counter == "instructions" else threshold


@dataclass(frozen=True)
class MemoryVerdict:
    """One line of the memory table: one figure's median bytes in the baseline and current runs,
    and the growth allowed before it counts."""

    case: str
    method: str
    figure: str
    baseline: int
    current: int
    allowed: int
    verdict: str

    @property
    def change(self) -> float | None:
        """Current over baseline, minus one (None where the baseline is 0 bytes: shown as ``—``)."""
        return self.current / self.baseline - 1.0 if self.baseline else None


def judge_memory(
    baselines: Sequence[TimedRun], currents: Sequence[TimedRun], threshold: float = DEFAULT_MEMORY_THRESHOLD
) -> list[MemoryVerdict]:
    """A row per (case, method) and memory figure that every current run and some baseline run
    recorded: the growth allowed is the largest of ``threshold`` of the baseline runs' median, the
    figure's :data:`MEMORY_FLOORS` and :data:`NOISE_FACTOR` times the range of their figures."""
    rows = []
    for key in common_keys(baselines, currents):
        for figure in MEMORY_FIGURES:
            base = [run[key].memory[figure] for run in baselines if key in run and figure in run[key].memory]
            if not base or any(figure not in run[key].memory for run in currents):
                continue
            b, c = int(statistics.median(base)), int(statistics.median([run[key].memory[figure] for run in currents]))
            allowed = int(max(threshold * b, MEMORY_FLOORS[figure], NOISE_FACTOR * (max(base) - min(base))))
            verdict = "HUNGRIER" if c - b > allowed else "leaner" if b - c > allowed else "ok"
            rows.append(MemoryVerdict(*key, figure, b, c, allowed, verdict))
    return rows


@dataclass(frozen=True)
class Comparison:
    """Every row of one comparison, and what it adds up to."""

    times: list[TimingVerdict]
    counts: list[CountVerdict]
    memory: list[MemoryVerdict]

    @property
    def regressions(self) -> list[TimingVerdict | CountVerdict | MemoryVerdict]:
        """The rows that fail the guard."""
        return [r for r in (*self.times, *self.counts, *self.memory) if r.verdict in REGRESSIONS]

    def coverage(self) -> tuple[int, int, Counter[str]]:
        """How many benchmarks (case and method) were judged, by time or by a count, of how many
        compared; and why the others were not (causes counted)."""
        compared = {(r.case, r.method) for r in (*self.times, *self.counts)}
        judged = {(r.case, r.method) for r in self.counts} | {(r.case, r.method) for r in self.times if not r.unjudged}
        causes = Counter(r.unjudged for r in self.times if r.unjudged and (r.case, r.method) not in judged)
        return len(judged), len(compared), causes

    @property
    def too_little_judged(self) -> bool:
        """Fewer than :data:`MIN_JUDGED` of the benchmarks compared were judged."""
        judged, compared, _ = self.coverage()
        return judged < MIN_JUDGED * compared


def _figure(value: float | None, spec: str) -> str:
    return NONE if value is None else format(value, spec)


def _markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    return "\n".join(markdown_table(header, rows))


def format_table(rows: Sequence[TimingVerdict], absolute: bool) -> str:
    """The time comparison as a Markdown table (``—`` where a row has no figure)."""
    unit = "median time (s)" if absolute else "overhead vs batched"
    return _markdown(
        ["case", "method", f"baseline {unit}", "current", "change", "allowed", "p", "verdict"],
        [
            [r.case, r.method, _figure(r.baseline, ".4g"), _figure(r.current, ".4g"), _figure(r.change, "+.1%"),
             _figure(r.allowed, ".0%"), _figure(r.p_value, ".2g"), r.verdict]
            for r in rows
        ],
    )


def format_count_table(rows: Sequence[CountVerdict]) -> str:
    """The count comparison (per call) as a Markdown table."""
    return _markdown(
        ["case", "method", "count per call", "baseline", "current", "change", "allowed", "verdict"],
        [
            [r.case, r.method, r.counter.replace("_", " "), f"{r.baseline:,.0f}", f"{r.current:,.0f}", f"{r.change:+.2%}",
             f"{r.allowed / r.baseline if r.baseline else 0.0:.2%}", r.verdict]
            for r in rows
        ],
    )


def _bytes(n: float) -> str:
    """``n`` bytes in the largest binary unit that keeps it at 1 or more (``8.7 KiB``)."""
    for unit in ("B", "KiB", "MiB"):
        if abs(n) < 1024:
            return f"{n:.0f} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def format_memory_table(rows: Sequence[MemoryVerdict]) -> str:
    """The memory comparison (one row per figure) as a Markdown table."""
    return _markdown(
        ["case", "method", "memory", "baseline", "current", "change", "allowed", "verdict"],
        [
            [r.case, r.method, r.figure.replace("_", " "), _bytes(r.baseline), _bytes(r.current), _figure(r.change, "+.1%"),
             _bytes(r.allowed), r.verdict]
            for r in rows
        ],
    )


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
        help=f"relative change of the median time that counts (default {DEFAULT_THRESHOLD})",
    )
    parser.add_argument(
        "--count-threshold", type=float, default=DEFAULT_COUNT_THRESHOLD,
        help=f"relative increase of an instruction count that counts, beyond {COUNT_FLOORS['instructions']:,} "
        f"instructions per call (default {DEFAULT_COUNT_THRESHOLD})",
    )
    parser.add_argument(
        "--alpha", type=float, default=DEFAULT_ALPHA,
        help=f"significance level of the Mann-Whitney U test on the raw rounds (default {DEFAULT_ALPHA})",
    )
    parser.add_argument(
        "--memory-threshold", type=float, default=DEFAULT_MEMORY_THRESHOLD,
        help=f"relative growth of a memory figure (the bytes one call allocates, its peak; CUDA's peak) "
        f"that counts (default {DEFAULT_MEMORY_THRESHOLD})",
    )
    parser.add_argument(
        "--max-drift", type=float, default=DEFAULT_MAX_DRIFT,
        help="leave out runs whose batched step took more than this many times the baseline runs' "
        f"(or less than its inverse); ratios only (default {DEFAULT_MAX_DRIFT})",
    )
    parser.add_argument(
        "--allow-unjudged", action="store_true",
        help=f"exit 0 even where fewer than {MIN_JUDGED * 100:.0f}%% of the benchmarks were judged (by time or count); "
        f"without it such a comparison exits {EXIT_UNJUDGED}",
    )
    parser.add_argument("--baselines", type=Path, default=Path("baselines"), help="where 'auto' looks (default baselines/)")
    parser.add_argument(
        "--if-missing", choices=("fail", "store"), default="fail",
        help="when 'auto' finds no stored run for this machine class: fail (exit 2, the default), "
        "or store the current run(s) there as its baseline and judge nothing; 'store' also stores them "
        "where the stored runs are of another CPU",
    )
    return parser


def _one_machine(currents: Sequence[Run]) -> Machine:
    machines = {run.machine for run in currents}
    if len(machines) > 1:
        raise BadInput("the current runs were recorded on different machines: " + "; ".join(sorted(map(str, machines))))
    return machines.pop()


def _store(currents: Sequence[Run], folder: Path) -> list[Path]:
    """Store the current runs as baselines, unless :func:`~harness.benchmarks.records.baseline_refusal` refuses one."""
    for run in currents:
        data = read_json(run.path)
        refusal = baseline_refusal(data["benchmarks"], data["machine_info"].get("cpus"))
        if refusal:
            raise BadInput(f"{run.path}: {refusal}")
    return store_as_baseline([run.path for run in currents], folder)


def compare(baselines: Sequence[Run], currents: Sequence[Run], args: argparse.Namespace) -> Comparison:
    """Judge the current runs: times against the baseline runs of the same machine, counts
    against those of the same code path (vendor and ISA), memory against all."""
    machine = _one_machine(currents)
    everything = [run.timings for run in baselines]
    now = [run.timings for run in currents]
    same_machine = [run.timings for run in baselines if run.machine == machine]
    same_code_path = [run.timings for run in baselines if run.machine.code_path == machine.code_path]
    return Comparison(
        judge_timings(
            same_machine, now, args.threshold, args.alpha, args.absolute, args.max_drift,
            keys=time_keys(everything, now, args.absolute),
        ),
        [row for counter in COUNTERS for row in judge_counts(same_code_path, now, counter, _count_threshold(counter, args))],
        judge_memory(everything, now, args.memory_threshold),
    )


def _count_threshold(counter: str, args: argparse.Namespace) -> float:
    return args.count_threshold if counter == "instructions" else COUNT_THRESHOLDS[counter]


def _machine_note(baselines: Sequence[Run], machine: Machine) -> str | None:
    """A line saying which baseline runs were of another machine, and what that leaves judged."""
    others = sorted({str(run.machine) for run in baselines if run.machine != machine})
    if not others:
        return None
    same = sum(run.machine == machine for run in baselines)
    same_code_path = sum(run.machine.code_path == machine.code_path for run in baselines)
    return (
        f"this run's machine: {machine}; {len(baselines) - same} of {len(baselines)} baseline run(s) were recorded "
        f"on another ({'; '.join(others)}): times are judged against the {same} of this CPU, counts (where recorded) "
        f"against the {same_code_path} of its vendor and ISA"
    )


def _summary(result: Comparison, baselines: int, currents: int, args: argparse.Namespace) -> list[str]:
    timed = [r for r in result.times if not r.unjudged]
    lines = [
        f"{sum(r.verdict == 'REGRESSION' for r in timed)} regression(s) in {len(timed)} time comparison(s) against "
        f"{baselines} baseline run(s) (threshold {args.threshold:.0%} or {NOISE_FACTOR:g}x the baseline runs' spread, "
        f"alpha {args.alpha}); {currents} current run(s)"
    ]
    for counter in COUNTERS:
        rows = [r for r in result.counts if r.counter == counter]
        if rows:
            floor = f"{COUNT_FLOORS[counter]:,} per call or " if COUNT_FLOORS[counter] else ""
            threshold = _count_threshold(counter, args)
            compiled = _compiled_threshold(counter, threshold)
            compiled = f" (torch.compile'd: {compiled:.1%})" if compiled != threshold else ""
            allowed = f"{threshold:.1%}{compiled} or {floor}" if threshold else "none beyond "
            lines.append(
                f"{sum(r.verdict == MORE[counter] for r in rows)} {MORE[counter]} in {len(rows)} "
                f"{counter.replace('_', ' ')} comparison(s) (allowed: {allowed}{NOISE_FACTOR:g}x the baseline runs' spread)"
            )
    if result.memory:
        hungrier = sum(r.verdict == "HUNGRIER" for r in result.memory)
        lines.append(
            f"{hungrier} HUNGRIER in {len(result.memory)} memory comparison(s) (allowed: {args.memory_threshold:.1%} or "
            f"{NOISE_FACTOR:g}x the baseline runs' range)"
        )
    unjudged = Counter(r.unjudged for r in result.times if r.unjudged)
    if unjudged:
        lines.append(
            f"{sum(unjudged.values())} time comparison(s) not judged: "
            + "; ".join(f"{n} {UNJUDGED_BECAUSE[cause]}" for cause, n in unjudged.items())
        )
    return lines


#: What to do about each cause of rows not judged.
REMEDIES = {
    "machine": "store a baseline of this CPU (compare auto --if-missing store)",
    "load": "rerun on a quiet machine",
    "baseline-load": "judge against runs recorded on a quiet machine (a loaded run is never stored as a baseline)",
    "drift": "rerun on a quiet machine",
}


def _unjudged_line(result: Comparison) -> str:
    judged, compared, causes = result.coverage()
    why = "; ".join(f"{n} {UNJUDGED_BECAUSE[cause]}" for cause, n in causes.items())
    remedies = ", ".join(dict.fromkeys(REMEDIES[cause] for cause in causes))
    return (
        f"UNJUDGED: {judged} of {compared} benchmark(s) judged by time or count, fewer than {MIN_JUDGED:.0%} ({why}); "
        f"a guard that judged this little does not pass: {remedies}, record instruction counts, or pass --allow-unjudged"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m harness compare``: print the tables, return the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.threshold <= 0 or args.memory_threshold <= 0 or args.count_threshold <= 0:
        parser.error("--threshold, --count-threshold and --memory-threshold must be positive")
    if not 0 < args.alpha < 1 or args.max_drift <= 1:
        parser.error("--alpha must be between 0 and 1, --max-drift above 1")
    given, current_paths = (args.runs, args.current) if args.current else (args.runs[:-1], args.runs[-1:])
    if not given:
        parser.error("give at least one baseline run and the current run")
    stored_note = None
    try:
        currents = [load(p) for p in current_paths]
        machine = _one_machine(currents)
        recorded = read_json(current_paths[0])["machine_info"]
        try:
            paths = [p for arg in given for p in (stored_baselines(args.baselines, recorded) if arg == "auto" else [Path(arg)])]
        except NoBaseline as missing:
            if args.if_missing == "fail":
                raise
            stored = _store(currents, missing.folder)
            print(f"{missing}: stored the current run(s) as its baseline, nothing judged: " + ", ".join(map(str, stored)))
            return EXIT_OK
        baselines = [load(p) for p in paths]
        if args.if_missing == "store" and "auto" in given and not any(run.machine == machine for run in baselines):
            stored = _store(currents, baseline_folder(args.baselines, recorded))
            stored_note = (
                f"no stored run of this CPU ({machine}): stored the current run(s) as its baseline, times not judged: "
                + ", ".join(map(str, stored))
            )
        result = compare(baselines, currents, args)
    except BadInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    tables = [format_table(result.times, args.absolute)]
    if result.counts:
        tables.append(format_count_table(result.counts))
    if result.memory:
        tables.append(format_memory_table(result.memory))
    note = _machine_note(baselines, machine)
    print("\n\n".join([note, *tables] if note else tables))
    baseline_keys = set().union(*(run.timings for run in baselines))
    current_keys = set().union(*(run.timings for run in currents))
    for label, only in (("baseline only", baseline_keys - current_keys), ("current only", current_keys - baseline_keys)):
        if only:
            print(f"\n{label} (not compared): " + ", ".join(f"{case}/{method}" for case, method in sorted(only)))
    print("\n" + "\n".join(_summary(result, len(baselines), len(currents), args)))
    if stored_note:
        print(stored_note)
    if result.regressions:
        return EXIT_REGRESSION
    if result.too_little_judged and not args.allow_unjudged and not stored_note:
        print(_unjudged_line(result))
        return EXIT_UNJUDGED
    return EXIT_OK
