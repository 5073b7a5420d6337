"""pytest-benchmark records as the harness writes and reads them, without torch: the names a
record carries, its ratios, and reading a run's JSON file (the report and the compare step read
runs on machines that may not have torch)."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

#: The plain batched forward+backward every benchmark group times beside the methods.
BATCHED = "batched"
#: Counts a record may carry per call (``extra_info``): CPU instructions (the instruction-count
#: tier, under callgrind) and CUDA kernel launches. Both are deterministic for the same code.
COUNTERS = ("instructions", "kernel_launches")
#: Memory figures a record may carry (``extra_info``, bytes), all counted rather than sampled, so
#: deterministic for the same code: CUDA's allocator peak over the benchmark (``peak_bytes``,
#: ``max_memory_allocated``), and, from the CPU allocator's events of one call, the most bytes it
#: held at once (``peak_alloc_bytes``) and every byte it allocated (``allocated_bytes``).
MEMORY_FIGURES = ("peak_bytes", "peak_alloc_bytes", "allocated_bytes")
#: Resident-memory growth over one call, which runs before the allocator's figures recorded (read,
#: shown, never judged: it depends on what the allocator kept from earlier calls).
LEGACY_PEAK = "peak_rss_bytes"


class BadInput(Exception):
    """A file that cannot be compared; the message says which and why."""


def case_and_method(bench: dict) -> tuple[str, str]:
    """A benchmark's case and method, from its ``extra_info`` or else its ``group`` and ``param``."""
    extra = bench.get("extra_info") or {}
    if "case" in extra and "method" in extra:
        return str(extra["case"]), str(extra["method"])
    group, param = bench.get("group"), bench.get("param")
    if group and param:
        return str(group), str(param)
    raise BadInput(f"benchmark {bench.get('fullname', bench.get('name'))!r} names no case and method")


def read_json(path: str | Path) -> dict:
    """Read a pytest-benchmark JSON file as it is; :class:`BadInput` if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"{path}: no such file")
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInput(f"{path}: not JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list) or not isinstance(data.get("machine_info"), dict):
        raise BadInput(f"{path}: not pytest-benchmark JSON (expected a 'machine_info' object and a 'benchmarks' list)")
    for number, bench in enumerate(data["benchmarks"], 1):
        problem = _malformed(bench)
        if problem:
            name = bench.get("fullname") or bench.get("name") if isinstance(bench, dict) else None
            raise BadInput(f"{path}: benchmark {name or f'number {number}'!r} is not as pytest-benchmark writes it: {problem}")
    return data


def _seconds(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _malformed(bench: object) -> str | None:
    """What is wrong with one benchmark record where the harness reads it, or None: its
    ``stats`` (``median`` and ``data``, the raw rounds, positive times), its ``extra_info``
    (an object; ``batched_rounds`` positive, counts and peaks non-negative numbers)."""
    if not isinstance(bench, dict):
        return f"{json.dumps(bench)[:40]} is not an object"
    stats, extra = bench.get("stats"), bench.get("extra_info")
    if not isinstance(stats, dict):
        return "no 'stats' object"
    if stats.get("median") is not None and not _seconds(stats["median"]):
        return f"stats.median is {stats['median']!r}, not a positive time"
    for where, rounds in (("stats.data", stats.get("data")), ("extra_info.batched_rounds", (extra or {}).get("batched_rounds"))):
        if rounds is not None and not (isinstance(rounds, list) and all(_seconds(r) for r in rounds)):
            return f"{where} is not a list of positive times"
    if extra is None:
        return None
    if not isinstance(extra, dict):
        return "extra_info is not an object"
    for name in (*COUNTERS, *MEMORY_FIGURES, LEGACY_PEAK):
        value = extra.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value < 0):
            return f"extra_info.{name} is {value!r}, not a count"
    return None


def overhead_ratios(rounds: Sequence[float], paired_batched: Sequence[float], batched_median: float | None) -> list[float] | None:
    """A method's rounds over the batched step: each round over the batched round timed just
    before it where the run paired them (drift between the two cancels), else over the
    ``batched`` benchmark's median; None where the run has neither."""
    if paired_batched and len(paired_batched) == len(rounds):
        return [r / b for r, b in zip(rounds, paired_batched, strict=True)]
    if batched_median:
        return [r / batched_median for r in rounds]
    return None


def overhead(rounds: Sequence[float], paired_batched: Sequence[float], batched_median: float | None) -> float | None:
    """The overhead figure of one run (method / batched; 1 is free): the median of
    :func:`overhead_ratios`. The report shows it and the compare step judges it."""
    ratios = overhead_ratios(rounds, paired_batched, batched_median)
    return statistics.median(ratios) if ratios else None


def add_ratios(benchmarks: list[dict]) -> None:
    """Write ``overhead`` (:func:`overhead`) and ``speedup`` (the loop's overhead over the
    method's; of their medians where the case has no batched step) into each benchmark's
    ``extra_info``, per group, where the group has those timings. A record without raw rounds
    (``stats.data``) counts as its median, unpaired."""
    medians: dict[str, dict[str, float]] = {}
    for bench in benchmarks:
        info = bench.get("extra_info", {})
        if "case" in info and "method" in info:
            medians.setdefault(info["case"], {})[info["method"]] = bench["stats"]["median"]
    overheads: dict[tuple[str, str], float] = {}
    for bench in benchmarks:
        info = bench.get("extra_info", {})
        if "case" not in info or "method" not in info:
            continue
        stats = bench["stats"]
        rounds = stats.get("data")
        paired = (info.get("batched_rounds") or ()) if rounds else ()
        figure = overhead(rounds or [stats["median"]], paired, medians[info["case"]].get(BATCHED))
        if figure is not None:
            overheads[info["case"], info["method"]] = info["overhead"] = figure
    for bench in benchmarks:
        info = bench.get("extra_info", {})
        case, method = info.get("case"), info.get("method")
        if (case, "loop") in overheads and (case, method) in overheads:
            info["speedup"] = overheads[case, "loop"] / overheads[case, method]
        elif "loop" in medians.get(case, {}):
            info["speedup"] = medians[case]["loop"] / bench["stats"]["median"]


def baseline_refusal(benchmarks: Sequence[dict], cpus: object) -> str | None:
    """Why a run cannot be stored as a baseline, in one line, or None where it can: the one rule of
    ``--benchmark-save``, ``--benchmark-autosave`` and ``compare --if-missing store``.

    A run is refused where it holds no benchmark, or where a benchmark recorded a 1-minute load at
    or above the core count (``cpus``): its times are then another process's as much as its own,
    and every later run would be judged against them.
    """
    if not benchmarks:
        return "not stored as a baseline: the run holds no benchmark"
    loaded = [
        "/".join(case_and_method(bench))
        for bench in benchmarks
        if isinstance(cpus, int) and (bench.get("extra_info") or {}).get("load", 0) >= cpus
    ]
    if not loaded:
        return None
    shown = ", ".join(loaded[:3]) + (f" and {len(loaded) - 3} more" if len(loaded) > 3 else "")
    return (
        f"not stored as a baseline: {len(loaded)} of {len(benchmarks)} benchmark(s) recorded at a load at or above "
        f"the {cpus} cores ({shown}); store a run of a quiet machine"
    )


def hold_back_unfit_baseline(session: object, cpus: int | None) -> str | None:
    """Before pytest-benchmark's ``session`` stores its run (``--benchmark-save``,
    ``--benchmark-autosave``): where :func:`baseline_refusal` refuses the run, turn storing off
    (``--benchmark-json`` is still written) and return its line; None where it stores, or does not."""
    if not (getattr(session, "save", None) or getattr(session, "autosave", None)):
        return None
    benchmarks = [
        {"extra_info": bench.extra_info, "group": bench.group, "param": bench.param, "name": bench.name}
        for bench in session.benchmarks
    ]
    refusal = baseline_refusal(benchmarks, cpus)
    if refusal:
        session.save = session.autosave = False
    return refusal


def storage_name(machine_info: dict) -> str:
    """The folder under ``baselines/`` for the machine class and torch version a run recorded."""
    try:
        return f"{machine_info['machine_class']}-torch-{str(machine_info['torch']).replace('+', '-')}"
    except (KeyError, TypeError):
        raise BadInput("the run's machine_info names no machine_class and torch (not recorded by the harness?)") from None


#: CPU flags that name SIMD extensions: what torch, oneDNN and MKL choose their kernels by, and
#: so what decides the instructions a call executes.
SIMD_FLAG_PREFIXES = ("sse", "ssse", "avx", "amx", "fma", "f16c", "asimd", "sve", "neon")


@dataclass(frozen=True)
class Machine:
    """The CPU a run recorded (pytest-benchmark's ``machine_info["cpu"]``, from py-cpuinfo), its
    vendor and its SIMD extensions. Times compare only between runs of the same machine;
    instruction counts between runs of the same :attr:`code_path`, whatever the CPU's speed."""

    cpu: str
    isa: frozenset[str]
    vendor: str = ""

    @classmethod
    def of(cls, machine_info: dict) -> Machine:
        """The machine a run's ``machine_info`` describes (``unknown CPU`` where it names none)."""
        cpu = machine_info.get("cpu") if isinstance(machine_info, dict) else None
        if not isinstance(cpu, dict) or not cpu.get("brand_raw"):
            return cls("unknown CPU", frozenset())
        model = ", ".join(f"{field} {cpu[field]}" for field in ("family", "model", "stepping") if field in cpu)
        flags = {str(flag).replace("_", "") for flag in cpu.get("flags") or ()}
        return cls(
            f"{cpu['brand_raw']} ({model})" if model else str(cpu["brand_raw"]),
            frozenset(flag for flag in flags if flag.startswith(SIMD_FLAG_PREFIXES)),
            str(cpu.get("vendor_id_raw") or ""),
        )

    @property
    def code_path(self) -> tuple[str, frozenset[str]]:
        """What chooses the kernels a call runs, and so its instructions: the SIMD extensions,
        and the vendor (MKL dispatches on it; the same flags on Intel and AMD may take other code)."""
        return self.vendor, self.isa

    @property
    def isa_name(self) -> str:
        """The widest extension: ``AMX``, ``AVX512``, ``AVX2``, ``AVX``, ``SVE``, ``NEON``, else ``SSE`` or ``unknown ISA``."""
        for name, flag in (("AMX", "amxtile"), ("AVX512", "avx512f"), ("AVX2", "avx2"), ("AVX", "avx"), ("SVE", "sve"), ("NEON", "asimd")):
            if flag in self.isa:
                return name
        return "SSE" if self.isa else "unknown ISA"

    def __str__(self) -> str:
        return f"{self.cpu}, {self.isa_name}"
