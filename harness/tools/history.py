"""The release history: what every release combination did on the suite, stored, shown and checked.

    python -m harness history run [--series torch|opacus|backpack] [--only ENV...] [--force]
    python -m harness history show [--out docs]
    python -m harness history check
    python -m harness history new

``run`` runs the default suite in each release environment of tox.ini (``torch2_N``: a torch
minor release with the newest Opacus and BackPACK that import with it; ``opacus1_X_Y`` and
``backpack1_X_Y``: one library release on torch 2.14, that library's methods only) with the
support matrix off (``--psg-raw``: a cell records what the library did) under pytest-xdist (a
crash is a verdict; workers are replaced without limit), and stores each combination's compact
result in ``baselines/history/ENV.json.gz``: every test's outcome class (pass, wrong values,
error, crash, unavailable), its first message line and worst relative error, the trial's fields,
with the versions, the harness commit, the CPU and the run's time. A stored combination is not run
again unless ``--force``; the CUDA cells (skipped on a CPU machine) are not stored.

``show`` writes ``docs/history.md`` and its plots from the stored results: per series (torch
releases; Opacus releases; BackPACK releases) a row per check, method and model or drawn layer
across the releases, the transitions (the first release where a test's class changed, grouped by
what changed) and a plot of the classes per release.

``check`` compares the stored history with today's support matrix, cell by cell, for the zoo
trials: a cell that fails where no row covers it, or passes where a row says it fails, is a
disagreement (exit 1). It is what each release's default run would say, without running it.

``new`` lists the releases on the package index (``pip index versions``) newer than the newest
environment of each library (for torch, a new minor release): the nightly job fails on one, since
a new release is a new column that needs its constraints file and environment.

Exit status: 0 done, 1 a combination's run gave no results or ``check`` found disagreements,
2 bad input.
"""

from __future__ import annotations

import argparse
import fnmatch
import gzip
import json
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.benchmarks.records import BadInput
from harness.checking.support import CHECKS, DRAWN_MATRIX, expected_failure
from harness.core.hardware import recorded_cpu_flags
from harness.core.markdown import markdown_table
from harness.core.releases import Versions
from harness.tools.bisect import PINNED, Release, releases
from harness.tools.report import Outcome, read_junit

STORE = Path("baselines/history")
#: The series, each a library whose releases are the columns.
SERIES = tuple(PINNED)
#: Outcome classes, most severe first, and the one-letter mark a table cell shows.
CLASSES = {"crash": "C", "wrong": "W", "error": "E", "xfail": "x", "pass": ".", "unavailable": "-"}
LEGEND = "`.` pass, `W` wrong values, `E` error, `C` crash (killed by a signal), `-` unavailable (skipped with a reason), `x` an xfail of the test's own, blank: not in that run"
#: The library methods that the library's own series runs (``--psg-methods``); torch's runs all.
SERIES_METHODS = {
    "opacus": "opacus-hooks,opacus-functorch,opacus-ew,opacus-ghost,opacus-dpoptimizer",
    "backpack": "backpack",
}
#: The pytest arguments of every history run (``-p no:randomly``: the suite's order, as stored).
RUN_ARGS = ("-p", "no:randomly", "-q", "--psg-raw", "--max-worker-restart", "100000")
MESSAGE_LIMIT = 400
#: The property suite's strategy that stacks the other layer kinds.
STACK = "stack"
#: The benchmark cases whose instructions per call the torch series counts (``history run
#: --instructions``): one batch size of each counted model, every method, since callgrind takes
#: about a minute per case and method set on 2 cores.
COUNTED_SELECTION = "cpu and (mlp-B8- or smooth_cnn-B8-)"


def classify(outcome: Outcome) -> str:
    """The class of one test's outcome (a key of :data:`CLASSES`)."""
    if outcome.status in ("passed", "xpassed"):
        return "pass"
    if outcome.status == "skipped":
        return "unavailable"
    if outcome.status == "xfailed":
        return "xfail"
    if "crashed while running" in outcome.message:
        return "crash"
    return "wrong" if "ToleranceError" in outcome.message.split(":", 1)[0] else "error"


def first_line(message: str) -> str:
    """A message's first line, at most :data:`MESSAGE_LIMIT` characters."""
    line = message.strip().splitlines()[0] if message.strip() else ""
    return line if len(line) <= MESSAGE_LIMIT else line[: MESSAGE_LIMIT - 1] + "…"


@dataclass(frozen=True)
class Cell:
    """One test in one combination."""

    outcome: str
    message: str = ""
    max_rel_err: float | None = None
    fields: tuple[tuple[str, str], ...] = ()

    def field(self, name: str) -> str:
        return dict(self.fields).get(name, "")


@dataclass
class Combination:
    """What one release combination did: its versions and every stored test's cell."""

    env: str
    series: str
    versions: dict[str, str]
    meta: dict[str, object]
    cells: dict[str, Cell]

    @property
    def release(self) -> str:
        """The release of the series' library this combination stands for."""
        return self.versions.get(self.series, "?").split("+")[0]

    def as_versions(self) -> Versions:
        """The releases it ran, and the CPU flags its run recorded (``instruction_sets``)."""
        flags = recorded_cpu_flags(str(self.meta.get("instruction_sets", "")))
        return Versions(self.versions.get("torch"), self.versions.get("opacus"), self.versions.get("backpack"), flags)


def compact(env: str, series: str, properties: dict[str, str], outcomes: dict[str, Outcome], meta: dict[str, object]) -> dict:
    """The stored form: messages listed once, cells by test (CUDA skips left out)."""
    messages: list[str] = []
    index: dict[str, int] = {}
    tests = {}
    for test, outcome in sorted(outcomes.items()):
        if outcome.status == "skipped" and "CUDA" in outcome.message:
            continue
        fields = {k.removeprefix("trial_"): v for k, v in outcome.recorded.items() if k.startswith("trial_")}
        line = first_line(outcome.message) if outcome.status != "passed" else ""
        if line and line not in index:
            index[line] = len(messages)
            messages.append(line)
        tests[test] = [classify(outcome), index[line] if line else None, outcome.max_rel_err, fields or None]
    versions = {name: properties.get(name, "") for name in ("torch", "torchvision", *SERIES[1:])}
    return {"env": env, "series": series, "versions": versions, "meta": meta, "messages": messages, "tests": tests}


def load(path: Path) -> Combination:
    """A stored combination."""
    try:
        data = json.loads(gzip.decompress(path.read_bytes()))
        messages = data["messages"]
        cells = {
            test: Cell(outcome, messages[m] if m is not None else "", err, tuple(sorted((fields or {}).items())))
            for test, (outcome, m, err, fields) in data["tests"].items()
        }
        return Combination(data["env"], data["series"], data["versions"], data["meta"], cells)
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise BadInput(f"{path}: not a stored history combination ({exc!r})") from None


def load_all(store: Path) -> list[Combination]:
    """Every stored combination."""
    return [load(path) for path in sorted(store.glob("*.json.gz"))]


def _counts_path(store: Path, env: str) -> Path:
    return store / "instructions" / f"{env}.json"


def load_counts(store: Path) -> dict[str, dict[str, dict[str, float]]]:
    """Stored instruction counts per call: environment -> case -> method -> instructions."""
    return {path.stem: json.loads(path.read_text())["instructions"] for path in sorted((store / "instructions").glob("*.json"))}


def _commit() -> str:
    found = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False)
    return found.stdout.strip() or "unknown"


def _cpu() -> str:
    from harness.benchmarks.timing import cpu_model

    return cpu_model()


def run_combination(release: Release, series: str, store: Path, workers: str, log: Path) -> Path:
    """Run the suite in the release's tox environment and store its compact result."""
    args = [*RUN_ARGS, "-n", workers]
    if series in SERIES_METHODS:
        args += ["--psg-methods", SERIES_METHODS[series]]
    with tempfile.TemporaryDirectory(prefix="psg-history-") as workdir:
        junit = Path(workdir) / "junit.xml"
        start = time.monotonic()
        with log.open("w") as out:
            command = [sys.executable, "-m", "tox", "-e", release.env, "--", *args, f"--junitxml={junit}"]
            subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=False)
        seconds = round(time.monotonic() - start)
        if not junit.exists():
            raise BadInput(f"{release}: the run wrote no results (see {log})")
        properties, outcomes = read_junit(junit)
    meta = {
        "commit": _commit(),
        "cpu": properties.get("cpu") or _cpu(),
        "instruction_sets": properties.get("instruction_sets", ""),
        "python": platform.python_version(),
        "seconds": seconds,
        "pytest_args": args,
    }
    record = compact(release.env, series, properties, outcomes, meta)
    store.mkdir(parents=True, exist_ok=True)
    path = store / f"{release.env}.json.gz"
    path.write_bytes(gzip.compress(json.dumps(record, sort_keys=True).encode(), mtime=0))
    return path


def run_counts(release: Release, store: Path, log: Path) -> Path:
    """Count the instructions per call of :data:`COUNTED_SELECTION` in the release's environment
    (``-m benchmark --instructions``, valgrind's callgrind) and store them. ``-n 0``: tox's command
    runs under pytest-xdist, which the benchmarks refuse."""
    from harness.tools.report import read_benchmarks

    with tempfile.TemporaryDirectory(prefix="psg-history-") as workdir:
        bench = Path(workdir) / "bench.json"
        start = time.monotonic()
        command = [sys.executable, "-m", "tox", "-e", release.env, "--", "-p", "no:randomly", "-q", "-n", "0",
                   "-m", "benchmark", "--instructions", "-k", COUNTED_SELECTION, f"--benchmark-json={bench}"]
        with log.open("a") as out:
            subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=False)
        if not bench.exists():
            raise BadInput(f"{release}: the counting run wrote no benchmark JSON (see {log})")
        _, figures, _ = read_benchmarks(bench)
    counts: dict[str, dict[str, float]] = defaultdict(dict)
    for (case, method), values in sorted(figures.items()):
        if "instructions" in values:
            counts[case][method] = values["instructions"]
    path = _counts_path(store, release.env)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"env": release.env, "commit": _commit(), "seconds": round(time.monotonic() - start), "instructions": counts}
    path.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    return path


def run(args: argparse.Namespace) -> int:
    """``history run``."""
    if not args.tox_ini.is_file():
        raise BadInput(f"{args.tox_ini}: no such file (run from the repository, or give --tox-ini)")
    todo: list[tuple[str, Release]] = []
    for series in args.series or SERIES:
        todo += [(series, release) for release in releases(series, args.tox_ini)]
    if args.only:
        known = {release.env for _, release in todo}
        unknown = sorted(set(args.only) - known)
        if unknown:
            raise BadInput(f"--only {' '.join(unknown)}: no such release environment; known: {', '.join(sorted(known))}")
        todo = [(s, r) for s, r in todo if r.env in args.only]
    args.logs.mkdir(parents=True, exist_ok=True)
    failed = 0
    for series, release in todo:
        stored = args.store / f"{release.env}.json.gz"
        counting = args.instructions and series == "torch" and not _counts_path(args.store, release.env).exists()
        if stored.exists() and not args.force and not counting:
            print(f"{release.env}: stored ({stored}); --force runs it again", flush=True)
            continue
        log = args.logs / f"{release.env}.log"
        try:
            if not stored.exists() or args.force:
                path = run_combination(release, series, args.store, args.workers, log)
                combination = load(path)
                classes = Counter(cell.outcome for cell in combination.cells.values())
                print(f"{release.env}: {dict(classes)} in {combination.meta['seconds']} s -> {path}", flush=True)
            counted = _counts_path(args.store, release.env)
            if args.instructions and series == "torch" and (args.force or not counted.exists()):
                run_counts(release, args.store, log)
                print(f"{release.env}: instructions per call counted -> {counted}", flush=True)
        except BadInput as exc:
            print(f"{release.env}: {exc}", flush=True)
            failed += 1
        finally:
            shutil.rmtree(Path(".tox") / release.env, ignore_errors=True)
    return 1 if failed else 0


# ---- show ----------------------------------------------------------------------------------


def _function(test: str) -> str:
    return test.split("::")[-1].split("[")[0]


def row_key(test: str, cell: Cell) -> tuple[str, str, str]:
    """Where a test sits in the history's tables: (test function, method, model or layer)."""
    return (_function(test), cell.field("method") or "", cell.field("model") or test.split("[")[0].rsplit("::", 1)[-1])


def _worst(outcomes: Iterable[str]) -> str:
    order = list(CLASSES)
    return min(outcomes, key=order.index)


def series_of(combinations: list[Combination], series: str) -> list[Combination]:
    """The series' combinations, oldest release first."""
    from packaging.version import Version

    return sorted((c for c in combinations if c.series == series), key=lambda c: Version(c.release))


@dataclass(frozen=True)
class Transition:
    """Tests whose class changed between two consecutive releases of a series, grouped by what changed."""

    series: str
    before: str
    after: str
    function: str
    method: str
    change: str
    message: str
    tests: tuple[str, ...]
    models: tuple[str, ...] = ()


#: What a message says about one case (``on cpu-float64-mlp-B7-sum (clipped step)``) and its numbers:
#: left out where transitions are grouped, so one change over several cases is one transition.
_CASE = re.compile(r" on (cpu|cuda)-[\w.]+-[\w.]+-B\d+(-sum)?( \([^)]*\))?")
_NUMBER = re.compile(r"\d+(\.\d+)?(e[-+]\d+)?")


def message_kind(message: str) -> str:
    """A message without its case and numbers, at most 160 characters: what a transition groups by."""
    return _NUMBER.sub("N", _CASE.sub("", message))[:160]


def transitions(columns: list[Combination]) -> list[Transition]:
    """Between each two consecutive releases, the tests whose class changed, grouped by test
    function, method, change and message (without its case and numbers)."""
    found = []
    for old, new in zip(columns, columns[1:], strict=False):
        groups: dict[tuple[str, str, str, str], list[str]] = defaultdict(list)
        for test in sorted(set(old.cells) & set(new.cells)):
            a, b = old.cells[test], new.cells[test]
            if a.outcome != b.outcome:
                shown = b if b.outcome != "pass" else a
                groups[(_function(test), b.field("method"), f"{a.outcome} -> {b.outcome}", message_kind(shown.message))].append(test)
        found += [
            Transition(
                new.series, old.release, new.release, function, method, change, message, tuple(tests),
                tuple(sorted({new.cells[t].field("model") for t in tests} - {""})),
            )
            for (function, method, change, message), tests in sorted(groups.items())
        ]
    return found


def grid(columns: list[Combination]) -> tuple[list[list[str]], int]:
    """The series' table rows (check, method, model, then a mark per release) that are not all
    passes, and how many all-pass rows were left out."""
    marks: dict[tuple[str, str, str], dict[int, list[str]]] = defaultdict(lambda: defaultdict(list))
    for i, combination in enumerate(columns):
        for test, cell in combination.cells.items():
            marks[row_key(test, cell)][i].append(cell.outcome)
    rows, clean = [], 0
    for key in sorted(marks):
        worst = {i: _worst(outcomes) for i, outcomes in marks[key].items()}
        if all(w == "pass" for w in worst.values()):
            clean += 1
            continue
        rows.append([*key, *(CLASSES[worst[i]] if i in worst else " " for i in range(len(columns)))])
    return rows, clean


def plot(columns: list[Combination], path: Path) -> None:
    """Stacked bars: how many stored tests of each class per release."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [c.release for c in columns]
    fig, ax = plt.subplots(figsize=(max(6, len(columns) * 0.6), 3.5))
    bottom = [0] * len(columns)
    colours = {"pass": "#4c9a2a", "unavailable": "#bbbbbb", "xfail": "#88aadd", "error": "#e69f00", "wrong": "#d62728", "crash": "#000000"}
    for outcome in reversed(CLASSES):
        heights = [sum(1 for cell in c.cells.values() if cell.outcome == outcome) for c in columns]
        if any(heights):
            ax.bar(labels, heights, bottom=bottom, label=outcome, color=colours[outcome])
            bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    ax.set_ylabel("tests")
    ax.set_xlabel(f"{columns[0].series} release")
    ax.tick_params(axis="x", rotation=60)
    ax.legend(fontsize=7, ncols=3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _release_pair(old: Combination, new: Combination) -> str:
    """``2.3.1 → 2.4.1``, with the other libraries that changed between the two environments."""
    others = [
        f"{name} {old.versions.get(key)} → {new.versions.get(key)}"
        for key, name in (("opacus", "Opacus"), ("backpack", "BackPACK"))
        if old.versions.get(key) != new.versions.get(key)
    ]
    return f"{old.release} → {new.release}" + (f" ({', '.join(others)})" if others else "")


def speed_transitions(columns: list[Combination], counts: dict[str, dict[str, dict[str, float]]]) -> list[list[str]]:
    """Between consecutive torch releases with counts, per case, the methods whose instructions per
    call changed beyond the compare step's count threshold (its relative threshold and absolute
    floor): a row per release pair and case, more work and less work each by the size of the change."""
    from harness.benchmarks.judge import COUNT_FLOORS, count_threshold

    counted = [c for c in columns if c.env in counts]
    rows = []
    for old, new in zip(counted, counted[1:], strict=False):
        for case, methods in sorted(counts[new.env].items()):
            changes = []
            for method, after in methods.items():
                before = counts[old.env].get(case, {}).get(method)
                if before and abs(after - before) > max(count_threshold(method) * before, COUNT_FLOORS["instructions"]):
                    changes.append((after / before - 1, method))
            if changes:
                more = ", ".join(f"{m} {c:+.1%}" for c, m in sorted(changes, reverse=True) if c > 0)
                less = ", ".join(f"{m} {c:+.1%}" for c, m in sorted(changes) if c < 0)
                rows.append([_release_pair(old, new), case, more, less])
    return rows


def plot_counts(columns: list[Combination], counts: dict[str, dict[str, dict[str, float]]], out: Path) -> list[Path]:
    """A plot per counted case: instructions per call of each method across the torch releases, and
    the same relative to the oldest counted release."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counted = [c for c in columns if c.env in counts]
    cases = sorted({case for c in counted for case in counts[c.env]})
    colors, markers = plt.get_cmap("tab20").colors, "os^vD<>pPXh*"
    written = []
    for case in cases:
        fig, (absolute, relative) = plt.subplots(1, 2, figsize=(max(10, len(counted) * 1.0), 4.5))
        methods = sorted({m for c in counted for m in counts[c.env].get(case, {})})
        for i, method in enumerate(methods):
            points = [(c.release, counts[c.env][case][method]) for c in counted if method in counts[c.env].get(case, {})]
            style = dict(marker=markers[i % len(markers)], color=colors[i % len(colors)], label=method)
            absolute.plot([p[0] for p in points], [p[1] for p in points], **style)
            relative.plot([p[0] for p in points], [p[1] / points[0][1] for p in points], **style)
        absolute.set_yscale("log")
        absolute.set_ylabel("instructions per call")
        relative.set_ylabel("relative to its first counted release")
        for ax in (absolute, relative):
            ax.set_xlabel("torch release")
            ax.tick_params(axis="x", rotation=60)
        relative.axhline(1.0, color="grey", linewidth=0.5)
        fig.suptitle(case)
        relative.legend(fontsize=6, ncols=2, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        fig.tight_layout()
        path = out / f"instructions-{case}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def _versions_line(c: Combination) -> str:
    v = c.versions
    return f"| `{c.env}` | {v.get('torch')} | {v.get('opacus')} | {v.get('backpack')} | {len(c.cells)} | {c.meta.get('seconds')} | {c.meta.get('commit')} |"


def render(combinations: list[Combination], out: Path, counts: dict[str, dict[str, dict[str, float]]] | None = None) -> str:
    """docs/history.md's text (plots written beside it, into ``out/history/``)."""
    lines = [
        "# Release history",
        "",
        "Generated by `python -m harness history show` from `baselines/history/` (written by `python -m",
        "harness history run`): the default suite with the support matrix off, in each release",
        "environment of tox.ini. Left out, as from the default run: slow cases, benchmarks (but the",
        "instruction counts below), the self-tests that start other processes, CUDA; the Opacus and",
        "BackPACK series run their own library's methods only. Do not edit by hand.",
        "",
        "| environment | torch | Opacus | BackPACK | tests | s | harness |",
        "|---|---|---|---|---|---|---|",
        *(_versions_line(c) for series in SERIES for c in series_of(combinations, series)),
        "",
        f"Cells: {LEGEND}. A row is a check (test function), a method and a model (or drawn layer); its",
        "mark is the worst outcome of its tests (batch sizes, precisions, reductions). Rows that pass on",
        "every release are counted, not shown.",
    ]
    (out / "history").mkdir(parents=True, exist_ok=True)
    for series in SERIES:
        columns = series_of(combinations, series)
        if not columns:
            continue
        rows, clean = grid(columns)
        lines += ["", f"## {series} releases", ""]
        if series != "torch":
            lines.append(f"On torch {columns[-1].versions.get('torch')}, {series}'s own methods only.")
            lines.append("")
        picture = out / "history" / f"{series}.png"
        plot(columns, picture)
        lines += [f"![outcomes per {series} release](history/{picture.name})", ""]
        headers = ["check", "method", "model or layer", *(c.release for c in columns)]
        lines += [*markdown_table(headers, rows), "", f"{clean} rows pass on every release."]
        found = transitions(columns)
        lines += ["", f"### Transitions ({len(found)})", ""]
        if found:
            lines += markdown_table(
                ["release", "check", "method", "change", "tests", "models or layers", "message (the failing side)"],
                [
                    [f"{t.before} → {t.after}", t.function, t.method, t.change, str(len(t.tests)), ", ".join(t.models), t.message.replace("|", "\\|")]
                    for t in found
                ],
            )
        else:
            lines.append("None: every stored test has the same class on every release.")
        if series == "torch" and counts:
            lines += _counts_section(columns, counts, out)
    return "\n".join(lines) + "\n"


def _counts_section(columns: list[Combination], counts: dict[str, dict[str, dict[str, float]]], out: Path) -> list[str]:
    from harness.benchmarks.judge import COMPILED_COUNT_THRESHOLD, COUNT_FLOORS, DEFAULT_COUNT_THRESHOLD

    lines = ["", "### Instructions per call across torch releases", ""]
    lines += [f"Counted by `history run --instructions` (callgrind) on the benchmark cases `{COUNTED_SELECTION}`."]
    lines += [f"![{p.stem}](history/{p.name})" for p in plot_counts(columns, counts, out / "history")]
    rows = speed_transitions(columns, counts)
    lines += [
        "",
        f"Speed transitions: a change beyond {DEFAULT_COUNT_THRESHOLD:.1%} (torch.compile'd calls: "
        f"{COMPILED_COUNT_THRESHOLD:.0%}) and {COUNT_FLOORS['instructions']:,} instructions "
        f"(the compare step's count threshold) between consecutive counted releases, per case ({len(rows)}).",
        "",
    ]
    if rows:
        lines += markdown_table(["release", "case", "more instructions", "fewer instructions"], rows)
    return lines


def show(args: argparse.Namespace) -> int:
    """``history show``."""
    combinations = load_all(args.store)
    if not combinations:
        raise BadInput(f"{args.store}: no stored combination (python -m harness history run)")
    text = render(combinations, args.out, load_counts(args.store))
    (args.out / "history.md").write_text(text)
    print(f"wrote {args.out / 'history.md'} and {args.out / 'history'}/*.png: {len(combinations)} combinations")
    return 0


# ---- new releases --------------------------------------------------------------------------


def available_releases(distribution: str) -> list[str]:
    """The releases the package index has of ``distribution`` (``pip index versions``), or BadInput."""
    found = subprocess.run(
        [sys.executable, "-m", "pip", "index", "versions", distribution], capture_output=True, text=True, check=False
    )
    match = re.search(r"^Available versions: (.+)$", found.stdout, re.MULTILINE)
    if match is None:
        raise BadInput(f"pip index versions {distribution} listed no releases: {first_line(found.stderr) or found.stdout.strip()}")
    return [v.strip() for v in match.group(1).split(",")]


def newer_releases(series: str, known: list[Release], available: list[str]) -> list[str]:
    """The library's releases newer than its newest environment's: for torch a new minor release
    (patch releases of a minor that has an environment are that environment's business), for
    Opacus and BackPACK every release. Pre-releases and local builds (``+cpu``) are left out."""
    from packaging.version import InvalidVersion, Version

    newest = max(Version(release.version) for release in known)
    found = set()
    for text in available:
        try:
            version = Version(text)
        except InvalidVersion:
            continue
        if version.is_prerelease or version.local or version <= newest:
            continue
        if series == "torch" and version.release[:2] <= newest.release[:2]:
            continue
        found.add(version)
    return [str(v) for v in sorted(found)]


def new(args: argparse.Namespace) -> int:
    """``history new``: the releases the index has that no environment stands for yet."""
    missing = 0
    for series in SERIES:
        known = releases(series, args.tox_ini)
        newer = newer_releases(series, known, available_releases(PINNED[series]))
        missing += len(newer)
        for version in newer:
            print(f"{series} {version}: no release environment; add constraints/ and tox.ini's environment for it, then history run")
        if not newer:
            print(f"{series}: every release up to {known[-1].version} has an environment")
    return 1 if missing else 0


# ---- check ---------------------------------------------------------------------------------


def _drawn_disagreement(cell: Cell, versions: Versions) -> str | None:
    """A property test's cell against the drawn rows for its layer kind: a failure no row could
    cover, or a pass where a row covers every configuration of the kind (its ``when`` is None). A
    drawn stack is made of the other kinds, so any row for the method may cover it."""
    method, kind, check = cell.field("method"), cell.field("model"), cell.field("check") or "grads"
    rows = [
        row for row in DRAWN_MATRIX
        if check in row.checks
        and (kind == STACK or any(fnmatch.fnmatchcase(kind, pattern) for pattern in row.layers))
        and row._covers(method, cell.field("precision"), cell.field("device"), versions)
    ]
    if cell.outcome in ("wrong", "error", "crash") and not rows:
        return f"{cell.outcome} ({cell.message[:200]}), but no drawn-layer row covers {method} on {kind}"
    if cell.outcome == "pass" and kind != STACK and any(row.when is None for row in rows):
        return f"passes, but a drawn-layer row covers every {kind} for {method} (/{rows[0].error}/)"
    return None


def disagreements(combination: Combination) -> list[str]:
    """Where the stored cells and today's support matrix disagree: for the zoo trials (those that
    recorded their check), a failure no row covers, a pass or crash where a row says otherwise, a
    failure whose message the row's error does not match; for the property tests, a failure no
    drawn-layer row could cover, or a pass where a row covers every configuration of the kind."""
    versions = combination.as_versions()
    found = []
    for test, cell in sorted(combination.cells.items()):
        check = cell.field("check")
        if cell.outcome in ("unavailable", "xfail"):
            continue
        if _function(test) == "test_property":
            said = _drawn_disagreement(cell, versions)
            if said:
                found.append(f"{combination.env}: {test}: {said}")
            continue
        if check not in CHECKS:
            continue
        batch = cell.field("batch_size")
        if batch == "0" and not check.startswith("empty-"):
            check = f"empty-{check}"
        row = expected_failure(cell.field("method") or "vmap", cell.field("model"), cell.field("precision"), cell.field("device"), check, versions)
        fails = cell.outcome in ("wrong", "error", "crash")
        where = f"{combination.env}: {test}"
        if row is None and fails:
            found.append(f"{where}: {cell.outcome} ({cell.message[:200]}), but no support-matrix row covers it")
        elif row is not None and not fails:
            found.append(f"{where}: passes, but the row /{row.error}/ ({row.reason[:80]}) says it fails")
        elif row is not None and bool(row.crash) != (cell.outcome == "crash"):
            found.append(f"{where}: {cell.outcome}, but the row says {'it crashes' if row.crash else 'it raises'} (/{row.error}/)")
        elif row is not None and not row.crash and not re.search(row.error, cell.message) and len(cell.message) < MESSAGE_LIMIT - 1:
            found.append(f"{where}: fails with {cell.message[:200]!r}, which the row's /{row.error}/ does not match")
    return found


def check(args: argparse.Namespace) -> int:
    """``history check``."""
    combinations = load_all(args.store)
    if not combinations:
        raise BadInput(f"{args.store}: no stored combination (python -m harness history run)")
    total = 0
    for combination in combinations:
        found = disagreements(combination)
        total += len(found)
        for line in found[: args.max_listed]:
            print(line)
        if len(found) > args.max_listed:
            print(f"{combination.env}: ... and {len(found) - args.max_listed} more")
    print(f"{len(combinations)} combinations, {sum(len(c.cells) for c in combinations)} cells: {total} disagreements with the support matrix")
    return 1 if total else 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m harness history run|show|check``."""
    parser = argparse.ArgumentParser(prog="python -m harness history", description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=STORE, help=f"where combinations are stored (default {STORE})")
    sub = parser.add_subparsers(dest="command", required=True)
    run_parser = sub.add_parser("run", help="run the suite on each release combination not stored yet")
    run_parser.add_argument("--series", action="append", choices=SERIES, help="only this library's releases (repeatable)")
    run_parser.add_argument("--only", nargs="+", metavar="ENV", help="only these tox environments")
    run_parser.add_argument("--force", action="store_true", help="run stored combinations again")
    run_parser.add_argument(
        "--instructions", action="store_true",
        help=f"in the torch series, also count instructions per call of the benchmark cases {COUNTED_SELECTION!r} (valgrind)",
    )
    run_parser.add_argument("--workers", default="2", help="pytest-xdist workers (-n), default 2")
    run_parser.add_argument("--tox-ini", type=Path, default=Path("tox.ini"))
    run_parser.add_argument("--logs", type=Path, default=Path("results/history"), help="each run's output (default results/history)")
    show_parser = sub.add_parser("show", help="write docs/history.md and its plots")
    show_parser.add_argument("--out", type=Path, default=Path("docs"))
    check_parser = sub.add_parser("check", help="compare the stored history with the support matrix")
    check_parser.add_argument("--max-listed", type=int, default=20)
    new_parser = sub.add_parser("new", help="list releases on the package index that have no environment yet (exit 1 if any)")
    new_parser.add_argument("--tox-ini", type=Path, default=Path("tox.ini"))
    args = parser.parse_args(argv)
    try:
        return {"run": run, "show": show, "check": check, "new": new}[args.command](args)
    except BadInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
