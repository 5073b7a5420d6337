"""pytest-benchmark records as the harness writes and reads them, without torch: the names a
record carries, its ratios, and reading a run's JSON file (the report and the compare step read
runs on machines that may not have torch)."""

from __future__ import annotations

import json
from pathlib import Path

#: The plain batched forward+backward every benchmark group times beside the methods.
BATCHED = "batched"


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
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list) or "machine_info" not in data:
        raise BadInput(f"{path}: not pytest-benchmark JSON (expected 'machine_info' and a 'benchmarks' list)")
    return data


def add_ratios(benchmarks: list[dict]) -> None:
    """Write ``overhead`` (median / batched median) and ``speedup`` (loop / median) into each
    benchmark's ``extra_info``, per group, where the group has those timings."""
    groups: dict[str, dict[str, float]] = {}
    for bench in benchmarks:
        info = bench.get("extra_info", {})
        if "case" in info and "method" in info:
            groups.setdefault(info["case"], {})[info["method"]] = bench["stats"]["median"]
    for bench in benchmarks:
        info = bench.get("extra_info", {})
        medians = groups.get(info.get("case"), {})
        median = bench["stats"]["median"]
        if BATCHED in medians:
            info["overhead"] = median / medians[BATCHED]
        if "loop" in medians:
            info["speedup"] = medians["loop"] / median


def storage_name(machine_info: dict) -> str:
    """The folder under ``baselines/`` for the machine class and torch version a run recorded."""
    try:
        return f"{machine_info['machine_class']}-torch-{str(machine_info['torch']).replace('+', '-')}"
    except (KeyError, TypeError):
        raise BadInput("the run's machine_info names no machine_class and torch (not recorded by the harness?)") from None
