"""Scorecard of one or more test runs: a Markdown table per check, and plots of the benchmarks against batch size.

    python -m harness report RESULTS... [--out results/report]

RESULTS are JUnit XML files (``pytest --junitxml``), pytest-benchmark JSON files
(``--benchmark-json``) and folders holding them (``results/<env>/`` as tox writes them; a folder
is searched, subfolders included, for ``*.xml`` and ``*.json``). The files of one folder and
torch version make one run; runs stand side by side, oldest torch first, labelled by the torch
version the files record (and the folder's name where two runs share one).

Writes ``scorecard.md`` (also printed) into ``--out``, and where there are benchmarks, plots
against the batch size, a panel per device and model and a colour per method: ``speedup.png``,
``time_per_sample.png`` and, where the runs counted them, ``instructions_per_sample.png`` (log-log).
The scorecard holds, per run, the versions and the counts of passed, xfailed, failed and skipped
tests; per check, device and precision, a row per model and method with its outcome (pass, xfail
with the support matrix's reason, FAIL with the message) and the worst relative error against the
reference that the tests record (``max_rel_err``); per benchmark case and method, the speedup over
the loop, the overhead over the batched step (the figure ``python -m harness compare`` judges,
from :func:`~harness.benchmarks.records.overhead`), peak memory and the counts per call
(instructions, CUDA kernel launches) where recorded; the seeds' element-wise claims as each run's
machine measured them (``seed_max_abs_diff``). Skipped tests (no CUDA here) are counted, not
shown as cells.

Exit status: 0 written, 2 bad input (a missing file, a file that is neither JUnit XML nor
pytest-benchmark JSON, no results at all) or an output folder that cannot be written.
"""

from __future__ import annotations

import argparse
import re
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from packaging.version import InvalidVersion, Version

from harness.benchmarks.records import (
    BATCHED,
    COUNTERS,
    LEGACY_PEAK,
    MEMORY_FIGURES,
    BadInput,
    add_ratios,
    case_and_method,
    read_json,
)
from harness.core.markdown import markdown_table

#: Memory figures a benchmark may carry: CUDA's allocator peak, the CPU allocator's peak and bytes
#: allocated per call, and older runs' resident-memory growth.
PEAKS = (*MEMORY_FIGURES, LEGACY_PEAK)
#: What the report reads of each benchmark: its ratios, peaks and counts per call (``extra_info``),
#: and its median time in seconds (``stats``, as ``median``).
FIGURES = ("speedup", "overhead", *PEAKS, *COUNTERS)
DEFAULT_OUT = Path("results/report")
#: Where a benchmark case sits in the plots: (device, model, batch size).
Place = tuple[str, str, int]

@dataclass(frozen=True)
class Section:
    """A test function that the scorecard shows as models x methods."""

    title: str
    subject: str = "model"


#: The test functions shown as tables, in this order; the failures of any other test are listed.
SECTIONS = {
    "test_matches_oracle": Section("Per-sample gradients against the float64 oracle"),
    "test_sum_equals_batch_gradient": Section("Sum of the per-sample gradients against the batch gradient"),
    "test_norms_match_oracle": Section("Per-sample gradient norms against the float64 oracle's"),
    "test_clipped_step_matches_oracle": Section("The clipped, summed step against the float64 oracle's"),
    "test_property": Section("Drawn layers (property suite) against the float64 oracle", "layer"),
}

#: Outcomes, most severe first: a cell shows them in this order.
STATUSES = ("failed", "xpassed", "xfailed", "passed", "skipped")
_LABELS = {"failed": "**FAIL**", "xpassed": "**XPASS**", "xfailed": "xfail", "passed": "pass", "skipped": "skipped"}
_XPASS_STRICT = "[XPASS(strict)]"
_XPASS = "xfail-marked test passes unexpectedly"
#: The relative error a ToleranceError message names (``... (relative 4.193e+00, ...)``).
_RELATIVE = re.compile(r"\(relative ([^,)\s]+)")
#: How many failures a section lists before it says how many more there are.
MAX_LISTED = 10


@dataclass(frozen=True)
class Outcome:
    """One test in one run: its status, message (failure or xfail reason) and recorded error."""

    status: str
    message: str = ""
    max_rel_err: float | None = None
    #: Everything the test recorded with ``record_property`` (the seeds' element-wise outcomes, say).
    recorded: dict[str, str] = field(default_factory=dict, compare=False)


@dataclass
class ResultRun:
    """The results of one folder and torch version: tests by ``classname::name``, and benchmark
    figures (:data:`FIGURES` and ``median``) by (case, method)."""

    folder: Path
    torch: str
    properties: dict[str, str] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    tests: dict[str, Outcome] = field(default_factory=dict)
    benchmarks: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)
    #: Each benchmark case's (device, model, batch size), where the benchmarks recorded them.
    places: dict[str, Place] = field(default_factory=dict)
    label: str = ""


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _outcome(testcase: ET.Element) -> Outcome:
    recorded = {p.get("name", ""): p.get("value", "") for p in testcase.iterfind("properties/property")}
    err = _float(recorded.get("max_rel_err"))
    for tag in ("failure", "error"):
        node = testcase.find(tag)
        if node is not None:
            message = node.get("message") or (node.text or "")
            if message.startswith(_XPASS_STRICT):
                return Outcome("xpassed", message.removeprefix(_XPASS_STRICT).strip(), err, recorded)
            match = _RELATIVE.search(message)
            return Outcome("failed", message, _float(match.group(1)) if match else err, recorded)
    node = testcase.find("skipped")
    if node is None:
        return Outcome("passed", max_rel_err=err, recorded=recorded)
    message = node.get("message", "")
    if message == _XPASS:
        return Outcome("xpassed", message, recorded=recorded)
    return Outcome("xfailed" if node.get("type") == "pytest.xfail" else "skipped", message, recorded=recorded)


def read_junit(path: Path) -> tuple[dict[str, str], dict[str, Outcome]]:
    """The suite properties (torch, torchvision, opacus, backpack, machine_class) and every test's outcome."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise BadInput(f"{path}: not well-formed XML ({exc})") from None
    if root.tag not in ("testsuites", "testsuite"):
        raise BadInput(f"{path}: XML, but not JUnit (root element <{root.tag}>, expected <testsuites> or <testsuite>)")
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    properties = {p.get("name", ""): p.get("value", "") for s in suites for p in s.iterfind("properties/property")}
    tests = {
        f"{case.get('classname', '')}::{case.get('name', '')}": _outcome(case)
        for s in suites
        for case in s.iter("testcase")
    }
    return properties, tests


def read_benchmarks(path: Path) -> tuple[dict[str, str], dict[tuple[str, str], dict[str, float]], dict[str, Place]]:
    """The machine info (torch, machine_class), each benchmark's :data:`FIGURES` and median time,
    and each case's device, model and batch size (as the benchmarks recorded them in ``extra_info``)."""

    data = read_json(path)
    try:
        add_ratios(data["benchmarks"])
        figures = {
            case_and_method(bench): {
                "median": float(bench["stats"]["median"]),
                **{name: float(value) for name, value in (bench.get("extra_info") or {}).items() if name in FIGURES and value is not None},
            }
            for bench in data["benchmarks"]
        }
        places = {
            case_and_method(bench)[0]: (str(extra["device"]), str(extra["model"]), int(extra["batch_size"]))
            for bench in data["benchmarks"]
            if {"device", "model", "batch_size"} <= set(extra := bench.get("extra_info") or {})
        }
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BadInput(f"{path}: a benchmark record is not as pytest-benchmark writes it ({exc!r})") from None
    info = data["machine_info"] if isinstance(data["machine_info"], dict) else {}
    return {k: str(info[k]) for k in ("torch", "machine_class") if k in info}, figures, places


def _result_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix in (".xml", ".json") and p.is_file())
        if not files:
            raise BadInput(f"{path}: holds no *.xml or *.json result files")
        return files
    if not path.is_file():
        raise BadInput(f"{path}: no such file or directory")
    return [path]


def _read(
    path: Path,
) -> tuple[dict[str, str], dict[str, Outcome], dict[tuple[str, str], dict[str, float]], dict[str, Place]]:
    try:
        with path.open("rb") as f:
            head = f.read(512).lstrip(b"\xef\xbb\xbf \t\r\n")
    except OSError as exc:
        raise BadInput(f"{path}: cannot be read ({exc.strerror})") from None
    if head.startswith(b"<"):
        return (*read_junit(path), {}, {})
    if head.startswith(b"{"):
        properties, figures, places = read_benchmarks(path)
        return properties, {}, figures, places
    raise BadInput(f"{path}: neither JUnit XML nor pytest-benchmark JSON")


def _version_key(run: ResultRun) -> tuple:
    try:
        return (0, Version(run.torch), str(run.folder))
    except InvalidVersion:
        return (1, Version("0"), str(run.folder))


def _label(runs: list[ResultRun]) -> None:
    """``torch 2.14.0``; with the folder's name, or its path, where that alone is not unique."""
    styles = (
        lambda r: f"torch {r.torch}",
        lambda r: f"torch {r.torch} ({r.folder.resolve().name})",
        lambda r: f"torch {r.torch} ({r.folder})",
    )
    for style in styles:
        labels = [style(r) for r in runs]
        if len(set(labels)) == len(labels):
            break
    for run, label in zip(runs, labels, strict=True):
        run.label = label


def load_runs(paths: Sequence[Path]) -> list[ResultRun]:
    """Read every result file under ``paths``, one run per folder and torch version, oldest torch first."""
    runs: dict[tuple[Path, str], ResultRun] = {}
    for path in paths:
        for file in _result_files(path):
            properties, tests, figures, places = _read(file)
            torch = properties.get("torch", "unknown")
            run = runs.setdefault((file.parent.resolve(), torch), ResultRun(file.parent, torch))
            run.properties.update(properties)
            if file.name not in run.files:
                run.files.append(file.name)
            run.tests.update(tests)
            for key, figures_of_key in figures.items():  # bench-2.json keeps bench-1.json's counts
                run.benchmarks.setdefault(key, {}).update(figures_of_key)
            run.places.update(places)
    if not any(run.tests or run.benchmarks for run in runs.values()):
        raise BadInput(f"no test results or benchmarks in {', '.join(map(str, paths))}")
    ordered = sorted(runs.values(), key=_version_key)
    _label(ordered)
    return ordered


@dataclass(frozen=True)
class ScorecardRow:
    """Where a test goes in the scorecard: its section (test function), device, precision, model and method."""

    section: str
    device: str
    precision: str
    model: str
    method: str


def row_of(test: str, outcome: Outcome) -> ScorecardRow | None:
    """The scorecard row of a test (``classname::function[param]``) from the trial fields it recorded
    (``trial_device``, ...), or None for a test that is no section's or recorded no trial."""
    function = test.split("[", 1)[0].split("::")[-1]
    fields = {name.removeprefix("trial_"): value for name, value in outcome.recorded.items() if name.startswith("trial_")}
    if function not in SECTIONS or not fields.get("method") or not {"device", "precision", "model"} <= set(fields):
        return None
    return ScorecardRow(function, fields["device"], fields["precision"], fields["model"], fields["method"])


def _grouped(keys: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Pairs in order of first appearance, those with the same first part (model, case) together."""
    keys = list(dict.fromkeys(keys))
    order = {first: i for i, first in enumerate(dict.fromkeys(first for first, _ in keys))}
    return sorted(keys, key=lambda key: order[key[0]])


def _format_err(err: float) -> str:
    return "0" if err == 0 else f"{err:.1e}"


class Notes:
    """The xfail reasons, numbered once for the whole scorecard."""

    def __init__(self) -> None:
        self.reasons: dict[str, int] = {}

    def ref(self, reason: str) -> str:
        """``[n]`` for this reason."""
        return f"[{self.reasons.setdefault(reason, len(self.reasons) + 1)}]"


def _cell(outcomes: list[Outcome], notes: Notes) -> str:
    if not outcomes:
        return "—"
    counts = Counter(o.status for o in outcomes)
    parts = []
    for status in STATUSES:
        if status not in counts:
            continue
        text = _LABELS[status]
        if status == "xfailed":
            text += " " + "".join(sorted({notes.ref(o.message) for o in outcomes if o.status == status}))
        if len(counts) > 1:
            text += f" {counts[status]}/{len(outcomes)}"
        parts.append(text)
    errors = [o.max_rel_err for o in outcomes if o.max_rel_err is not None]
    worst = f" ({_format_err(max(errors))})" if errors else ""
    return ", ".join(parts) + worst


def _counts_table(runs: Sequence[ResultRun]) -> list[str]:
    rows = []
    for run in runs:
        counts = Counter(o.status for o in run.tests.values())
        p = run.properties
        machine = p.get("machine_class", "?") + (f" ({p['cpu']})" if p.get("cpu") else "")
        rows.append([
            run.label, p.get("torchvision", "?"), p.get("opacus", "?"), p.get("backpack", "?"), machine, str(counts["passed"]),
            str(counts["xfailed"]), str(counts["failed"] + counts["xpassed"]), str(counts["skipped"]),
            str(len(run.benchmarks)), f"{run.folder}/: {', '.join(run.files)}",
        ])
    header = ["run", "torchvision", "opacus", "backpack", "machine", "passed", "xfailed", "failed", "skipped", "benchmarks", "files"]
    return markdown_table(header, rows)


def _failure_lines(failures: list[tuple[str, str, Outcome]]) -> list[str]:
    lines = [f"- `{test}` ({label}): {_one_line(o.message)}" for label, test, o in failures[:MAX_LISTED]]
    if len(failures) > MAX_LISTED:
        lines.append(f"- … and {len(failures) - MAX_LISTED} more")
    return lines


def _correctness(runs: Sequence[ResultRun], notes: Notes) -> list[str]:
    sections: dict[tuple[str, str, str], dict[tuple[str, str], list[list[Outcome]]]] = {}
    failures: dict[tuple[str, str, str], list[tuple[str, str, Outcome]]] = {}
    for i, run in enumerate(runs):
        for test, outcome in run.tests.items():
            row = row_of(test, outcome)
            if row is None:
                continue
            key = (row.section, row.device, row.precision)
            cells = sections.setdefault(key, {}).setdefault((row.model, row.method), [[] for _ in runs])
            cells[i].append(outcome)
            if outcome.status in ("failed", "xpassed"):
                failures.setdefault(key, []).append((run.label, test.split("::")[-1], outcome))
    lines = []
    for section in SECTIONS:
        for (name, device, precision), cells in sections.items():
            shown = {k: v for k, v in cells.items() if any(o.status != "skipped" for c in v for o in c)}
            if name != section or not shown:
                continue
            subject = SECTIONS[section].subject
            lines += [
                f"## {SECTIONS[section].title}: {device}, {precision}",
                "",
                *markdown_table(
                    [subject, "method", *(r.label for r in runs)],
                    ([model, method, *(_cell(c, notes) for c in shown[(model, method)])] for model, method in _grouped(shown)),
                ),
                "",
            ]
            if (name, device, precision) in failures:
                lines += ["Failures:", "", *_failure_lines(failures[(name, device, precision)]), ""]
    return lines


def _other_failures(runs: Sequence[ResultRun]) -> list[str]:
    failures = [
        (run.label, test.split("::")[-1], o)
        for run in runs
        for test, o in run.tests.items()
        if o.status in ("failed", "xpassed") and row_of(test, o) is None
    ]
    if not failures:
        return []
    return ["## Other failures", "", *_failure_lines(failures), ""]


def _seed_claims(runs: Sequence[ResultRun]) -> list[str]:
    """The seeds' element-wise claims as each run measured them (recorded, not asserted)."""
    rows = [
        (run.label, test.split("::")[-1], o.recorded)
        for run in runs
        for test, o in run.tests.items()
        if "seed_max_abs_diff" in o.recorded
    ]
    if not rows:
        return []
    return [
        "## The seeds' element-wise claims, on the machine of each run",
        "",
        "Recorded, not asserted: which float32 ReLU/max-pool kinks take the other branch depends on the "
        "CPU's kernels. What every run asserts is that both sides are within the float32 bound of the "
        "float64 oracle.",
        "",
        *markdown_table(
            ["run", "test", "worst element difference", "the seed's allclose"],
            (
                [label, f"`{test}`", f"{_float(recorded['seed_max_abs_diff']) or 0:.2e}", _holds(recorded)]
                for label, test, recorded in rows
            ),
        ),
        "",
    ]


def _holds(recorded: dict[str, str]) -> str:
    return {"true": "holds", "false": "does not hold"}.get(recorded.get("seed_claim_holds", "").lower(), "?")


def _ratio(figures: dict[str, float] | None, name: str) -> str:
    if not figures or name not in figures:
        return "—"
    return f"{figures[name]:#.3g}x"


def _mib(figures: dict[str, float] | None, name: str) -> str:
    return f"{figures[name] / 2**20:.1f} MiB" if figures and name in figures else "—"


def _count(figures: dict[str, float] | None, name: str) -> str:
    return f"{figures[name]:,.0f}" if figures and name in figures else "—"


def _benchmarks(runs: Sequence[ResultRun], plots: Sequence[tuple[str, str]]) -> list[str]:
    keys = _grouped(key for run in runs for key in run.benchmarks)
    if not keys:
        return []
    columns: list[tuple[str, Callable[[dict[str, float] | None, str], str]]] = [("speedup", _ratio), ("overhead", _ratio)]
    recorded = {name for run in runs for figures in run.benchmarks.values() for name in figures}
    columns += [(name, _mib) for name in PEAKS if name in recorded]
    columns += [(name, _count) for name in COUNTERS if name in recorded]
    header = [f"{name.replace('_', ' ')}, {run.label}" for name, _ in columns for run in runs]
    lines = [
        "## Speed",
        "",
        "Overhead: the method's time over the plain batched forward+backward's (1 is free), round by round "
        "against the batched step timed just before each round where the run paired them (the figure "
        "`python -m harness compare` judges); speedup: the loop's overhead over the method's (higher is "
        "faster). Both from the same run. Instructions and kernel launches: per call, where the run counted them.",
        "",
        *markdown_table(
            ["case", "method", *header],
            (
                [case, method, *(fmt(run.benchmarks.get((case, method)), name) for name, fmt in columns for run in runs)]
                for case, method in keys
            ),
        ),
    ]
    if plots:
        lines += ["", *(f"![{caption}]({file})" for caption, file in plots)]
    return [*lines, ""]


def scorecard(runs: Sequence[ResultRun], plots: Sequence[tuple[str, str]] = ()) -> str:
    """The Markdown scorecard; ``plots`` are the (caption, path relative to it) of the plots drawn."""
    notes = Notes()
    lines = ["# Per-sample-gradient scorecard", "", *_counts_table(runs), ""]
    correctness = _correctness(runs, notes)
    if correctness:
        lines += [
            "Each cell covers the model's batch sizes (and the sum-reduced loss) in that device and precision: "
            "the outcomes (with counts where they differ), then in parentheses the worst relative error "
            "||g - g*|| / ||g*|| over parameters and samples against the reference, where the tests recorded it. "
            "Skipped tests (no CUDA here, say) are only counted above.",
            "",
            *correctness,
        ]
    if notes.reasons:
        lines += ["## Expected failures (strict xfail, from the support matrix)", ""]
        lines += [f"{n}. {reason}" for reason, n in notes.reasons.items()] + [""]
    lines += _seed_claims(runs) + _other_failures(runs) + _benchmarks(runs, plots)
    return "\n".join(lines).rstrip() + "\n"


def method_colors(methods: Sequence[str]) -> dict[str, tuple[float, ...]]:
    """A colour per method, no two alike: matplotlib's tab10, tab20 past ten methods, and evenly
    spaced hues past twenty (a plugin's method must not share ``vmap``'s colour)."""
    from matplotlib import colormaps

    n = len(methods)
    if n <= 10:
        palette = [colormaps["tab10"](i) for i in range(n)]
    elif n <= 20:
        palette = [colormaps["tab20"](i) for i in range(n)]
    else:
        palette = [colormaps["hsv"](i / n) for i in range(n)]
    return dict(zip(methods, palette, strict=True))


def _in_order(methods: Iterable[str]) -> list[str]:
    """The batched step, the loop, then the methods by name: the same colours whatever order the benchmarks ran in."""
    return sorted(methods, key=lambda method: (method != BATCHED, method != "loop", method))


def _per_sample(name: str) -> Callable[[dict[str, float], int], float | None]:
    return lambda figures, batch_size: figures[name] / batch_size if name in figures else None


@dataclass(frozen=True)
class Plot:
    """One figure of the report: a figure of each benchmark against its case's batch size, log-log."""

    file: str
    caption: str
    ylabel: str
    value: Callable[[dict[str, float], int], float | None]
    #: Methods the figure says nothing about (the loop's speedup over itself).
    leave_out: tuple[str, ...] = ()
    #: A horizontal line to read the figures against (speedup 1: the loop).
    reference: float | None = None


PLOTS = (
    Plot(
        "speedup.png", "speedup vs batch size", "speedup vs loop (1 = the loop)",
        lambda figures, _: figures.get("speedup"), leave_out=("loop",), reference=1.0,
    ),
    Plot("time_per_sample.png", "time per sample vs batch size", "median time per sample (s)", _per_sample("median")),
    Plot(
        "instructions_per_sample.png", "instructions per sample vs batch size",
        "CPU instructions per sample (one call / B)", _per_sample("instructions"),
    ),
)


def plot_against_batch_size(runs: Sequence[ResultRun], plot: Plot, path: Path) -> bool:
    """``plot``'s figure against batch size, a panel per device and model, a line per method (and
    run), each method in its colour of :func:`method_colors` over every method of the runs.

    Returns False, writing nothing, where no benchmark has the figure.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import NullLocator

    panels: dict[tuple[str, str], dict[tuple[str, str], list[tuple[int, float]]]] = {}
    for run in runs:
        for (case, method), figures in run.benchmarks.items():
            place = run.places.get(case)
            if place is None or method in plot.leave_out:
                continue
            device, model, batch_size = place
            value = plot.value(figures, batch_size)
            if value is not None:
                panels.setdefault((device, model), {}).setdefault((method, run.label), []).append((batch_size, value))
    if not panels:
        return False
    colors = method_colors(_in_order({method for run in runs for _, method in run.benchmarks}))
    methods = _in_order({m for lines in panels.values() for m, _ in lines})
    styles = {run.label: (("-", "o"), ("--", "s"), (":", "^"), ("-.", "D"))[i % 4] for i, run in enumerate(runs)}
    fig = Figure(figsize=(4.5 * len(panels), 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, ((device, model), lines) in zip(axes, panels.items(), strict=True):
        for (method, label), points in lines.items():
            xs, ys = zip(*sorted(points), strict=True)
            linestyle, marker = styles[label]
            ax.plot(xs, ys, marker=marker, color=colors[method], linestyle=linestyle, alpha=0.8)
        if plot.reference is not None:
            ax.axhline(plot.reference, color="gray", linewidth=0.8)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        batches = sorted({x for points in lines.values() for x, _ in points})
        ax.set_xticks(batches, [str(b) for b in batches])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_title(f"{model} ({device})")
        ax.set_xlabel("batch size")
    axes[0].set_ylabel(plot.ylabel)
    handles = [Line2D([], [], color=colors[m], linewidth=4, label=m) for m in methods]
    if len(runs) > 1:
        handles += [Line2D([], [], color="black", linestyle=styles[r.label][0], marker=styles[r.label][1], label=r.label) for r in runs]
    fig.legend(handles=handles, loc="outside right upper")
    fig.savefig(path, format="png", dpi=100)
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m harness report``: write the scorecard and plot, print the scorecard."""
    parser = argparse.ArgumentParser(prog="python -m harness report", description=__doc__.splitlines()[0])
    parser.add_argument(
        "results", nargs="*", metavar="RESULTS",
        help="JUnit XML files, pytest-benchmark JSON files, or folders holding them (results/<env>/)",
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT,
        help=f"folder for scorecard.md and the plots (default {DEFAULT_OUT}/)",
    )
    args = parser.parse_args(argv)
    try:
        if not args.results:
            raise BadInput("no results given: name JUnit XML or pytest-benchmark JSON files, or results/<env>/ folders")
        runs = load_runs([Path(p) for p in args.results])
    except BadInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        drawn = []
        for plot in PLOTS:
            (args.out / plot.file).unlink(missing_ok=True)
            if plot_against_batch_size(runs, plot, args.out / plot.file):
                drawn.append(plot)
        text = scorecard(runs, [(plot.caption, plot.file) for plot in drawn])
        (args.out / "scorecard.md").write_text(text)
    except OSError as exc:
        print(f"error: cannot write to {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(text, end="")
    print(f"wrote {', '.join(str(args.out / name) for name in ['scorecard.md', *(plot.file for plot in drawn)])}", file=sys.stderr)
    return 0
