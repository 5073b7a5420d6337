"""A method that kills its process is that test's failure, naming the signal, and the run goes on.

Old releases segfault in places. Under pytest-xdist a worker that dies is replaced and the test
it was running is reported as failed ("worker 'gw0' crashed while running ..."); this module says
what killed it. Each worker writes Python's fault report (:mod:`faulthandler`: the signal and the
innermost frames) to a file of its own, and the controller puts it into the crashed test's
report. A serial run cannot outlive its own process: run with ``-n 1`` (or more) where a crash
is possible; tox's release environments do.
"""

from __future__ import annotations

import faulthandler
import re
import signal
import tempfile
from pathlib import Path
from typing import IO, Any

import pytest

#: faulthandler's words for the signals it catches.
_FAULTS = {
    "Segmentation fault": signal.SIGSEGV,
    "Aborted": signal.SIGABRT,
    "Floating-point exception": signal.SIGFPE,
    "Floating point exception": signal.SIGFPE,
    "Bus error": signal.SIGBUS,
    "Illegal instruction": signal.SIGILL,
}
_WORKER_INPUT_KEY = "psg_fault_reports"
#: How many of the innermost frames a crash report quotes.
FRAMES = 4


def describe_fault(report: str) -> str:
    """What a faulthandler report says killed the process, with the innermost frames."""
    match = re.search(r"Fatal Python error: (.+)", report)
    if match is None:
        return (
            "it died without a fault report: killed by a signal Python cannot catch (SIGKILL, which the "
            "out-of-memory killer sends) or ended by os._exit"
        )
    words = match.group(1).strip()
    number = _FAULTS.get(words)
    name = f"{number.name} ({words})" if number is not None else words
    frames = [line.strip() for line in report.splitlines() if line.strip().startswith("File ")][:FRAMES]
    where = "; innermost frames: " + " <- ".join(frames) if frames else ""
    return f"killed by {name}{where}"


class FaultReports:
    """Registered in the controller of a pytest-xdist run: hands each worker a file for its fault
    report and puts what the file says into the report of the test a crashed worker was running."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="psg-faults-"))

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput[_WORKER_INPUT_KEY] = str(self.folder)

    @pytest.hookimpl(optionalhook=True)
    def pytest_handlecrashitem(self, crashitem: str, report: pytest.TestReport, sched: Any) -> None:
        worker = report.node.gateway.id  # type: ignore[attr-defined]
        path = self.folder / f"{worker}.txt"
        text = path.read_text(errors="replace") if path.exists() else ""
        report.longrepr = f"{report.longrepr}: {describe_fault(text)}"

    def pytest_unconfigure(self) -> None:
        for path in self.folder.glob("*.txt"):
            path.unlink()
        self.folder.rmdir()


def write_fault_report(config: pytest.Config) -> IO[str] | None:
    """In a pytest-xdist worker: send this process's fault report to the file the controller reads
    (replacing pytest's own faulthandler output on stderr); returns the open file, or None elsewhere."""
    folder = getattr(config, "workerinput", {}).get(_WORKER_INPUT_KEY)
    if folder is None:
        return None
    stream = open(Path(folder) / f"{config.workerinput['workerid']}.txt", "w")  # noqa: SIM115 (open for the process's life)
    faulthandler.enable(file=stream, all_threads=False)
    return stream
