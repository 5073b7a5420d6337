"""The instruction-count tier: the CPU instructions of one benchmark call, counted under callgrind.

Wall-clock time on a shared machine drifts by tens of percent; the instructions a call executes
hardly move. :class:`InstructionCounter` starts one worker process under valgrind's callgrind and
keeps it for every count, because starting is the slow part: importing torch under valgrind took
25 s here with the instrumentation off, 140-170 s with it on (as ``torch.utils.benchmark``'s
``collect_callgrind`` runs it, once per measurement). The worker

1. imports torch and the built-in methods with the instrumentation off (never a plugin), and runs
   every built-in method once on a small case (the pre-warm: the lazy imports of vmap and Opacus,
   ~1650 modules);
2. switches the instrumentation on (a client request; ``vgdb`` where the request is not
   available) and pre-warms again, so valgrind translates the shared code with the
   instrumentation once, not in every count; collection stays off;
3. forks a copy of itself for each count: every count starts from that same state, whatever was
   counted before (counted in one process, the batched step of mlp at B=8 read 1.035M or 1.047M
   instructions depending on what came before it), and a method that crashes valgrind's CPU
   takes only its copy down. A copy that counts a plugin's method, a built-in a plugin replaced, or
   a plugin's model imports the plugins (``-p``) first, in order, until the method and the model
   are the caller's; every other copy imports none, so a built-in method is counted from the same
   state with or without plugins. The copy builds the benchmark trial's case and its
   :func:`~harness.benchmarks.timing.workload` (one torch thread, float32, CPU), warms it up with
   exactly ``warmup_calls`` calls (CPython 3.11 quickens a function after 8 calls: mlp's vmap
   counted 1.5% more without warm-up; a number of calls, never a time, so a loaded machine warms
   up as far as a quiet one), collects garbage and counts ``rounds`` rounds of ``calls_per_round``
   calls (more for a small call: :data:`ROUND_BUDGET`), each between collection toggles and ended
   by a dump, less what an empty round counts. A small call's case is built :data:`LAYOUT_BUILDS`
   times over (each build kept, so the next lies elsewhere in the heap), each build warmed up
   and counted in turn.

What else could make two runs' processes differ is held fixed: the worker runs without
address-space randomization (:func:`_fixed_addresses`), its environment is a fixed list of
variables (:func:`_worker_environment`: a plugin's own variables, a CI job's ids or a longer
``PYTHONPATH`` move the initial stack and what malloc does, and a 1M-instruction call by up to
1%), its ``sys.path`` is the harness's folder, its arguments have the same length, and it draws
no entropy from the operating system (:func:`_fixed_entropy`: scipy.stats builds docstrings from
unseeded random samples at import, which moved Opacus' counts by up to 0.5% from run to run).

The per-call figure is the median over the builds of each build's smallest round: CPython's
adaptive interpreter re-specializes some instructions now and then and glibc's malloc consolidates
its free lists now and then, which adds up to 1% to one call and nothing to the next (the
smallest round leaves it out), and where a build's objects lie moves every call of that build by
about 0.1% (the median of three builds evens it out); work the method does on every call is in
every round. Counts are made on the code paths valgrind's CPU offers (it hides AVX-512, so oneDNN takes
its AVX2 kernels, and torch.compile is told to build for x86-64-v3): compare counts with counts
of the same machine class, valgrind and torch, never with a native run.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import mmap
import os
import platform
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.benchmarks.records import BATCHED

#: Calls before counting: CPython 3.11 quickens a function after 8 calls.
WARMUP_CALLS = 10
#: Rounds counted per build at least, each ending in a dump; a build's smallest round is its figure.
ROUNDS = 3
#: More rounds, up to :data:`MAX_ROUNDS`, until the rounds add up to this many instructions: one
#: round of a small call reads up to 1.5% above its floor, and the smallest of 3 rounds of
#: vmap-compiled on mlp B=8 (0.86M instructions) was 0.5% apart in two runs; the smallest of 12 was
#: 37 and 48 instructions apart in two pairs of workers (docs/calibration.md). With the
#: :data:`LAYOUT_BUILDS` each build gets its share: a call of 5M instructions or less 4 rounds a
#: build (12 in all), one of 20M or more one build of 3.
ROUND_BUDGET = 60_000_000
MAX_ROUNDS = 12
#: Builds of the case a count of a small call takes the median of, each build kept alive so the
#: next lands at other addresses: sets and dicts keyed by objects (autograd's, Opacus') and
#: CPython's type-attribute cache cost more or less with where a case's objects lie in the heap, and
#: the heap differs a little from process to process. One build's smallest round of opacus-ew on
#: smooth_cnn B=1 (4.19M instructions) moved by 0.23% between builds in one copy, as much as
#: between processes (docs/calibration.md, round 4). Each build gets its share of the rounds.
LAYOUT_BUILDS = 3
#: A call of this many instructions or more gets one build: the layout term (some thousands of
#: instructions) is under 0.1% of it.
ONE_BUILD_FROM = ROUND_BUDGET // ROUNDS
#: Calls that warm up a build after the first: the code is quickened and the kernels are built.
REWARM_CALLS = 3
#: Calls per round; a round's count is divided by them.
CALLS_PER_ROUND = 1
#: Seconds the worker may take to start (import torch, pre-warm the methods: 30-50 s here).
STARTUP_TIMEOUT_S = 300.0
#: Seconds one count may take: set-up, warm-up and the counted calls of one method on one case.
COUNT_TIMEOUT_S = 600.0
#: How the worker switches the instrumentation on and off: a client request (x86-64), or vgdb.
SWITCHES = ("client-request", "vgdb")

#: callgrind's client request codes (valgrind/callgrind.h, valgrind/valgrind.h).
_RUNNING_ON_VALGRIND = 0x1001
_CALLGRIND_BASE = (ord("C") << 24) | (ord("T") << 16)
_START_INSTRUMENTATION = _CALLGRIND_BASE + 4
_STOP_INSTRUMENTATION = _CALLGRIND_BASE + 5
#: ``uint64_t request(uint64_t args[6])`` for x86-64: valgrind.h's client-request sequence (rotate
#: rdi by 3, 13, 61 and 51 bits, a no-op; then ``xchg rbx, rbx`` with rax pointing at the arguments
#: and rdx holding the default result, 0). Natively it returns 0; under valgrind, the answer.
_AMD64_CLIENT_REQUEST = bytes.fromhex(
    "4889f8"  # mov rax, rdi
    "31d2"  # xor edx, edx
    "48c1c703"  # rol rdi, 3
    "48c1c70d"  # rol rdi, 13
    "48c1c73d"  # rol rdi, 61
    "48c1c733"  # rol rdi, 51
    "4887db"  # xchg rbx, rbx
    "4889d0"  # mov rax, rdx
    "c3"  # ret
)
_DUMP_PREFIX = "callgrind.out"
#: The folder, in the worker's, of a copy's own torch.compile caches: ``inductor.<pid>``.
_COMPILE_CACHE_PREFIX = "inductor."
#: The case every method runs once on before the worker forks its first count: (model, batch size).
_PREWARM_CASE = ("mlp", 2)


class CountFailed(Exception):
    """A count that could not be made; the one-line message names the case, the method and why."""


def _on_path(program: str) -> bool:
    return shutil.which(program) is not None


def _x86_64() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64")


def default_switch() -> str:
    """The instrumentation switch this machine uses: the client request on x86-64, else vgdb."""
    return "client-request" if _x86_64() else "vgdb"


def valgrind_version() -> str | None:
    """``valgrind --version`` (``valgrind-3.19.0``), or None where it does not run: counts are
    compared only between runs of the same valgrind, torch and machine class."""
    if not _on_path("valgrind"):
        return None
    try:
        version = subprocess.run(["valgrind", "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if version.returncode != 0 or not version.stdout.strip():
        return None
    return version.stdout.strip()


def valgrind_missing(switch: str | None = None) -> str | None:
    """Why instructions cannot be counted here, in one line; None where they can."""
    if sys.platform != "linux":
        return f"counting instructions needs valgrind on Linux, not {sys.platform}"
    if not _on_path("valgrind"):
        return "valgrind is not on PATH (install valgrind to count instructions)"
    if (switch or default_switch()) == "vgdb" and not _on_path("vgdb"):
        return "vgdb (valgrind's gdbserver client, which switches callgrind's instrumentation) is not on PATH"
    if valgrind_version() is None:
        return "valgrind is on PATH but `valgrind --version` fails"
    import torch

    if not torch._C._valgrind_supported_platform():
        return "this torch build has no callgrind client requests (torch._C._valgrind_supported_platform() is False)"
    return None


@dataclass(frozen=True)
class InstructionCount:
    """The counted rounds of one method on one case, each less the counting's own cost
    (``overhead``), per build of the case (:data:`LAYOUT_BUILDS`)."""

    #: Instructions per call in each counted round of each build.
    builds: tuple[tuple[int, ...], ...]
    calls_per_round: int
    overhead: int
    #: Calls made before counting.
    warmup_calls: int
    seconds: float
    #: Seconds of the count's phases in the worker: ``set_up`` and ``warm_up`` of the first build,
    #: then ``counting`` (the other builds' set-up and warm-up included).
    phases: dict[str, float] = field(default_factory=dict, compare=False)

    @property
    def rounds(self) -> tuple[int, ...]:
        """Every counted round, build after build."""
        return tuple(n for build in self.builds for n in build)

    @property
    def per_call(self) -> int:
        """The call's figure: the median over the builds of each build's smallest round (interpreter
        re-specialization adds to some calls only; where the objects lie, to every call of a build)."""
        return round(statistics.median(min(build) for build in self.builds))


def _case_label(model: str, batch_size: int, method: str) -> str:
    from harness.core.case import case_id

    return f"{method!r} on {case_id('cpu', 'float32', model, batch_size)}"


def _qualified_name(fn: object) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', type(fn).__qualname__)}"


def _timed_function(method: str, quantity: str) -> str:
    """Which function a benchmark of ``method`` times for ``quantity``, as ``module.qualname``."""
    from harness.methods import get_method, own_method

    if method == BATCHED:
        return BATCHED
    return _qualified_name(own_method(method, quantity) or get_method(method))


def _model_builder(model: str) -> str | None:
    """What builds ``model`` here, as ``module.qualname`` (None: no such model is registered)."""
    from harness.problems.zoo import MODELS

    spec = MODELS.get(model)
    return None if spec is None else _qualified_name(spec.build)


def _built_in(name: str | None) -> bool:
    """Whether a function named by :func:`_qualified_name` is the harness's own (or is no function)."""
    return name is None or name == BATCHED or name.startswith("harness.")


class InstructionCounter:
    """One worker process under callgrind, kept for many counts (a context manager).

    ``plugins`` names the modules (those given to pytest with ``-p``) that a count's copy imports
    where the method or the model it counts is not the harness's own here, so third-party methods,
    replaced built-ins and a plugin's models are counted as this process runs them; a method whose
    function differs between here and the copy is refused, naming the module. The worker itself
    imports no plugin. ``warmup_calls``, ``rounds`` (the least per build: a small call gets more,
    see :func:`counted_rounds`), ``calls_per_round`` and ``builds`` (of a small call's case; one
    for a heavy method) are per count (see the module's notes); ``timeout_s`` bounds one count and
    ``startup_timeout_s`` the worker's start. ``switch`` picks how the instrumentation is switched
    (:data:`SWITCHES`; default: :func:`default_switch`). Not for use from several threads at once.
    """

    def __init__(
        self,
        plugins: Sequence[str] = (),
        *,
        warmup_calls: int = WARMUP_CALLS,
        rounds: int = ROUNDS,
        calls_per_round: int = CALLS_PER_ROUND,
        builds: int = LAYOUT_BUILDS,
        timeout_s: float = COUNT_TIMEOUT_S,
        startup_timeout_s: float = STARTUP_TIMEOUT_S,
        switch: str | None = None,
    ) -> None:
        if isinstance(plugins, str):
            raise TypeError(f"plugins must be a sequence of module names, got the string {plugins!r}")
        if warmup_calls < 0 or rounds < 1 or calls_per_round < 1 or builds < 1:
            raise ValueError(
                "need warmup_calls >= 0, rounds >= 1, calls_per_round >= 1 and builds >= 1, "
                f"got {warmup_calls}, {rounds}, {calls_per_round}, {builds}"
            )
        self.switch = switch or default_switch()
        if self.switch not in SWITCHES:
            raise ValueError(f"switch must be one of {', '.join(SWITCHES)}, got {self.switch!r}")
        self.plugins = tuple(plugins)
        self.warmup_calls = warmup_calls
        self.rounds = rounds
        self.calls_per_round = calls_per_round
        self.builds = builds
        self.timeout_s = timeout_s
        self.startup_timeout_s = startup_timeout_s
        self._process: subprocess.Popen | None = None
        self._requests: int | None = None
        self._replies: int | None = None
        self._buffer = b""
        self._workdir: Path | None = None
        self._finalizer: weakref.finalize | None = None
        #: The method -> quantity table of the worker, without plugins (what its benchmarks would time).
        self.worker_methods: dict[str, str] = {}
        #: Seconds the last worker took to start.
        self.startup_seconds: float | None = None

    def __enter__(self) -> InstructionCounter:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def running(self) -> bool:
        """Whether a worker is up (a count starts one where none is)."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the worker and wait until it has imported torch and the built-in methods."""
        if self.running:
            return
        self.close()
        reason = valgrind_missing(self.switch)
        if reason is not None:
            raise CountFailed(f"cannot count instructions: {reason}")
        started = time.monotonic()
        self._workdir = Path(tempfile.mkdtemp(prefix="psg-callgrind-"))
        requests_read, self._requests = os.pipe()
        self._replies, replies_write = os.pipe()
        command = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            "--collect-atstart=no",
            f"--callgrind-out-file={self._workdir / _DUMP_PREFIX}.%p",
            f"--log-file={self._workdir / 'valgrind.log'}",
            *([f"--vgdb-prefix={self._workdir / 'vgdb'}"] if self.switch == "vgdb" else ["--vgdb=no"]),
            sys.executable,
            "-m",
            "harness.benchmarks.instructions",
            f"--requests={requests_read:05d}",
            f"--replies={replies_write:05d}",
            f"--workdir={self._workdir}",
            f"--switch={self.switch:>14}",
        ]
        log = open(self._workdir / "worker.log", "wb")
        try:
            self._process = subprocess.Popen(
                command,
                cwd=self._workdir,
                env=_worker_environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=(requests_read, replies_write),
                start_new_session=True,
                preexec_fn=_fixed_addresses,
            )
        finally:
            log.close()
            os.close(requests_read)
            os.close(replies_write)
        self._finalizer = weakref.finalize(
            self, _stop_worker, self._process, self._requests, self._replies, self._workdir
        )
        ready = self._receive(self.startup_timeout_s, "starting the callgrind worker")
        if "error" in ready:
            self.close()
            raise CountFailed(f"the callgrind worker could not start: {ready['error']}")
        self.worker_methods = ready["methods"]
        self.startup_seconds = time.monotonic() - started

    def measure(self, model: str, batch_size: int, method: str, quantity: str | None = None) -> InstructionCount:
        """Count ``method`` (or ``batched``) on the float32 CPU case ``model`` at ``batch_size``.

        ``quantity`` is the one its benchmark times (checked against the worker's, if given).
        Raises :class:`CountFailed` (one line, naming the case and the method) if the method fails
        there, the worker dies or the count takes longer than ``timeout_s``.
        """
        label = _case_label(model, batch_size, method)
        request = self.request(model, batch_size, method, quantity)
        self.start()
        self._send(request, label)
        reply = self._receive(self.timeout_s, f"counting {label}")
        if "error" in reply:
            raise CountFailed(f"counting {label}: {reply['error']}")
        return InstructionCount(
            tuple(tuple(build) for build in reply["builds"]),
            self.calls_per_round,
            reply["overhead"],
            reply["warmup_calls"],
            reply["seconds"],
            reply["phases"],
        )

    def request(self, model: str, batch_size: int, method: str, quantity: str | None = None) -> dict:
        """What the worker is sent to count ``method`` on ``model`` at ``batch_size``: the function and
        the model builder as this process has them, and, only where either is not the harness's own,
        the plugins, ``sys.path`` and environment its copy needs to have them too."""
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        from harness.methods import timed_methods

        timed = quantity or timed_methods().get(method)
        if method != BATCHED and timed is None:
            raise CountFailed(f"counting {_case_label(model, batch_size, method)}: no method {method!r} is registered in this process")
        function = None if method == BATCHED else _timed_function(method, timed)
        builder = _model_builder(model)
        request = {
            "model": model,
            "batch_size": batch_size,
            "method": method,
            "quantity": quantity,
            "function": function,
            "builder": builder,
            "warmup_calls": self.warmup_calls,
            "rounds": self.rounds,
            "calls_per_round": self.calls_per_round,
            "builds": self.builds,
        }
        if self.plugins and not (_built_in(function) and _built_in(builder)):
            request["plugins"] = {
                "modules": list(self.plugins),
                "path": [os.path.abspath(p or os.curdir) for p in sys.path],
                "environment": _caller_environment(),
            }
        return request

    def count(self, model: str, batch_size: int, method: str, quantity: str | None = None) -> int:
        """Instructions of one call of ``method`` on the float32 CPU case (see :meth:`measure`)."""
        return self.measure(model, batch_size, method, quantity).per_call

    def close(self) -> None:
        """Stop the worker (and a count under way) and remove its files."""
        if self._finalizer is not None:
            self._finalizer()
        self._finalizer = None
        self._process = self._requests = self._replies = self._workdir = None
        self._buffer = b""

    def _send(self, message: dict, label: str) -> None:
        try:
            os.write(self._requests, (json.dumps(message) + "\n").encode())
        except OSError:
            raise CountFailed(f"counting {label}: {self._died()}") from None

    def _receive(self, timeout_s: float, doing: str) -> dict:
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            readable = select.select([self._replies], [], [], max(left, 0))[0] if left > 0 else []
            if not readable:
                self.close()
                raise CountFailed(f"{doing} took longer than {timeout_s:.0f} s under callgrind; the worker was stopped")
            chunk = os.read(self._replies, 1 << 16)
            if not chunk:
                raise CountFailed(f"{doing}: {self._died()}")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def _died(self) -> str:
        """Why the worker is gone, in one line (its last words), and clean up after it."""
        process, workdir = self._process, self._workdir
        status = process.wait(timeout=60) if process is not None else None
        last = (
            (_valgrind_complaint(workdir / "valgrind.log") or _last_line(workdir / "worker.log")) if workdir else None
        )
        self.close()
        how = "exit status unknown" if status is None else _ended(status)
        return f"the callgrind worker died ({how})" + (f": {last}" if last else "")


#: The variables of this process's environment the worker gets (names, and name prefixes ending
#: in ``_``): what finds programs and libraries, the locale, and what tells torch, its kernels and
#: its compiler what to do, and whether Python writes bytecode (a worker that writes the ``.pyc``
#: its caller would not compiles the changed module itself in its first run only, and that run's
#: heap differs from the next ones'). No other: a variable set for one run only (a plugin's, a CI
#: job's) would start the worker from another state.
WORKER_VARIABLES = (
    "PATH", "HOME", "USER", "LOGNAME", "TMPDIR", "LANG", "LC_", "LD_LIBRARY_PATH", "VIRTUAL_ENV", "CC", "CXX",
    "XDG_CACHE_HOME", "TORCH_", "TORCHINDUCTOR_", "PYTORCH_", "ATEN_", "ONEDNN_", "DNNL_", "MKL_", "OMP_", "KMP_",
    "TRITON_", "VALGRIND_LIB", "PYTHONDONTWRITEBYTECODE",
)


def _caller_environment() -> dict[str, str]:
    """This process's environment without pytest's variables (which name the running test): what a
    copy that counts a plugin's method sets before importing the plugins."""
    return {name: value for name, value in os.environ.items() if not name.startswith("PYTEST_")}


def _worker_environment() -> dict[str, str]:
    """The worker's environment: the :data:`WORKER_VARIABLES` of this one, the folder the harness
    is imported from as its ``PYTHONPATH``, one thread everywhere, fixed string hashing (the same
    dict layouts in every worker) and no GPU."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name in WORKER_VARIABLES or name.startswith(tuple(v for v in WORKER_VARIABLES if v.endswith("_")))
    }
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    if _x86_64():
        # valgrind runs AVX2 but not AVX-512: compiled kernels (torch.compile) must not ask for more
        env.setdefault("TORCHINDUCTOR_CPP_MARCH", "x86-64-v3")
    env.update(
        # glibc raises its mmap and trim thresholds as blocks are freed: the same allocation then
        # takes another path in a later call (a call's rounds read 5,612k, 5,592k and 5,612k); fixed
        # thresholds (glibc's initial ones) keep every call on one path
        MALLOC_MMAP_THRESHOLD_="131072",
        MALLOC_TRIM_THRESHOLD_="131072",
        PYTHONHASHSEED="0",
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        CUDA_VISIBLE_DEVICES="",
        TORCHINDUCTOR_COMPILE_THREADS="1",
    )
    return env


#: Linux's personality flag that turns address-space randomization off for a process.
_ADDR_NO_RANDOMIZE = 0x0040000


def _fixed_addresses() -> None:
    """In the worker's process before valgrind starts: the same addresses in every run (Linux; left
    as it is where the kernel refuses). Objects without their own hash hash by address, so dicts and
    sets keyed by modules and tensors (Opacus' hooks, autograd's) probe differently from one layout
    to the next: runs of unchanged code counted Opacus' methods 0.4-0.7% apart."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        current = libc.personality(0xFFFFFFFF)
        if current != -1:
            libc.personality(current | _ADDR_NO_RANDOMIZE)


def _valgrind_complaint(path: Path, pid: int | None = None) -> str | None:
    """valgrind's own reason for a crash of process ``pid`` (any, if None): an instruction it
    cannot run, or the fatal signal."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return None
    if pid is not None:
        lines = [line for line in lines if line.startswith(f"=={pid}==")]
    for marker in ("unhandled instruction bytes", "Unrecognised instruction", "Process terminating"):
        for line in lines:
            if marker in line:
                return line.split("== ", 1)[-1].strip()
    return None


def _last_line(path: Path) -> str | None:
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return None
    return lines[-1] if lines else None


def _stop_worker(process: subprocess.Popen, requests: int, replies: int, workdir: Path) -> None:
    """Kill the worker's process group (the worker and a count's copy; it has nothing to save: a
    graceful exit only writes callgrind's final dump, 4 s) and remove its files."""
    for fd in (requests, replies):
        with contextlib.suppress(OSError):
            os.close(fd)
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    shutil.rmtree(workdir, ignore_errors=True)


# The worker: runs under callgrind, answers one JSON line per request line.


class _Instrumentation:
    """Switches callgrind's instrumentation from inside the worker."""

    def __init__(self, switch: str, workdir: Path) -> None:
        self.switch = switch
        self.workdir = workdir
        if switch == "client-request":
            self._page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
            self._page.write(_AMD64_CLIENT_REQUEST)
            import ctypes

            address = ctypes.addressof(ctypes.c_char.from_buffer(self._page))
            self._args = (ctypes.c_uint64 * 6)()
            self._request = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.POINTER(ctypes.c_uint64))(address)
            if self._client_request(_RUNNING_ON_VALGRIND) == 0:
                raise RuntimeError("not running under valgrind (the client request went unanswered)")

    def _client_request(self, code: int) -> int:
        self._args[0] = code
        return self._request(self._args)

    def _vgdb(self, state: str) -> None:
        """``vgdb instrumentation on|off`` for this process; it spins meanwhile, so valgrind polls
        for vgdb's command without vgdb having to ptrace it out of a blocking system call."""
        command = ["vgdb", f"--vgdb-prefix={self.workdir / 'vgdb'}", f"--pid={os.getpid()}", "instrumentation", state]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while process.poll() is None:
            if time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"vgdb took over 120 s to switch the instrumentation {state}")
        output = process.stdout.read().decode(errors="replace").strip()
        if process.returncode != 0:
            raise RuntimeError(f"vgdb could not switch the instrumentation {state}: {output.splitlines()[-1:]}")

    def turn(self, on: bool) -> None:
        """Instrument from now on, or stop (valgrind then retranslates the code it runs)."""
        if self.switch == "client-request":
            self._client_request(_START_INSTRUMENTATION if on else _STOP_INSTRUMENTATION)
        else:
            self._vgdb("on" if on else "off")


def _counted(call: Callable[[], object], calls: int, workdir: Path) -> int:
    """Instructions of ``calls`` calls between two collection toggles, from callgrind's dump.

    The dump's ``totals:`` line is read: its ``summary:`` line is garbage in the first dump after
    the instrumentation is switched on again (valgrind 3.19).
    """
    import torch

    torch._C._valgrind_toggle()
    for _ in range(calls):
        call()
    torch._C._valgrind_toggle_and_dump_stats()
    dumps = list(workdir.glob(f"{_DUMP_PREFIX}.{os.getpid()}.*"))
    if len(dumps) != 1:
        raise RuntimeError(f"expected one callgrind dump in {workdir}, found {len(dumps)}")
    try:
        with open(dumps[0], "rb") as dump:
            dump.seek(max(0, dump.seek(0, os.SEEK_END) - 4096))
            totals = [line for line in dump.read().splitlines() if line.startswith(b"totals:")]
    finally:
        dumps[0].unlink()
    if not totals:
        raise RuntimeError(f"callgrind dump {dumps[0].name} has no totals line")
    return int(totals[-1].split()[1])


def _import_plugins(request: dict) -> None:
    """In a copy counting a plugin's method or model: the caller's ``sys.path`` and environment,
    then its plugins, in order, until the method and the model are the caller's."""
    import importlib

    plugins = request.get("plugins")
    if not plugins:
        return
    sys.path[:0] = [p for p in plugins["path"] if p not in sys.path]
    os.environ.update(plugins["environment"])
    for name in plugins["modules"]:
        if _current(request) == (request["function"], request["builder"]):
            return
        importlib.import_module(name)


def _current(request: dict) -> tuple[str | None, str | None]:
    """The function and the model builder a request's method and model have in this process."""
    from harness.methods import timed_methods

    method = request["method"]
    quantity = timed_methods().get(method)
    function = None if method == BATCHED or quantity is None else _timed_function(method, quantity)
    return function, _model_builder(request["model"])


def counted_rounds(
    count_round: Callable[[], float],
    least: int,
    calls_per_round: int = 1,
    most: int = MAX_ROUNDS,
    budget: float = ROUND_BUDGET,
) -> list[float]:
    """Per-call counts of ``least`` rounds (``count_round`` counts one), and more, up to ``most``,
    until the rounds' calls add up to ``budget`` instructions (one build's share of them)."""
    rounds: list[float] = []
    while len(rounds) < least or (len(rounds) < most and sum(rounds) * calls_per_round < budget):
        rounds.append(count_round())
    return rounds


def _count(request: dict, instrumentation: _Instrumentation) -> dict:
    """Build the request's case and workload, warm it up, and count its calls (in a forked
    copy of the worker, which exits afterwards).

    The garbage collector runs before each build's counted rounds and not during them (as
    ``timeit`` does): where a collection falls would make the counts differ. A build after the
    first is warmed up with :data:`REWARM_CALLS` calls; a call of :data:`ONE_BUILD_FROM`
    instructions or more stops after its first build. A heavy method (torch.compile)
    is set up and warmed up with the instrumentation off: compiling under it took 56-205 s a case,
    13-15 s without. Not with ``vgdb``: valgrind 3.19 opens no vgdb channel for a forked process.
    """
    import torch

    from harness.benchmarks.cases import BenchmarkTrial
    from harness.benchmarks.timing import THREADS, workload
    from harness.checking.trials import HEAVY_METHODS
    from harness.methods import timed_methods

    _import_plugins(request)
    method = request["method"]
    if method != BATCHED:
        if method not in timed_methods():
            raise RuntimeError(f"the worker has no method {method!r} (a plugin module not passed to the counter?)")
        quantity = timed_methods()[method]
        if request["quantity"] not in (None, quantity):
            raise RuntimeError(f"the worker times {method!r} for {quantity}, not {request['quantity']}")
        here = _timed_function(method, quantity)
        if here != request["function"]:
            raise RuntimeError(
                f"the worker's {method!r} is {here}, the caller's is {request['function']} "
                f"(pass the module that registers it to the counter's plugins)"
            )
    started = time.monotonic()
    # torch.compile's on-disk caches (graphs and kernels that earlier runs left) change the path a
    # compile takes and with it the heap the counted call runs in: vmap-compiled read 0.6-1.3% more
    # in every run after other runs had added entries (docs/calibration.md, round 5). Each copy
    # compiles into an empty folder of its own, whatever the user's cache holds.
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(instrumentation.workdir / f"{_COMPILE_CACHE_PREFIX}{os.getpid()}")
    heavy = method in HEAVY_METHODS and instrumentation.switch == "client-request"
    torch.set_num_threads(THREADS)
    workdir, calls = instrumentation.workdir, request["calls_per_round"]
    planned = 1 if method in HEAVY_METHODS else request["builds"]
    kept = []  # every build stays alive: the next one lands at other addresses
    builds: list[list[float]] = []
    overhead = set_up = warm = None
    while len(builds) < planned:
        if heavy:
            instrumentation.turn(on=False)
        torch.manual_seed(0)
        case = BenchmarkTrial(request["model"], request["batch_size"], "float32", "cpu", method).build()
        call = workload(method, case)
        kept.append((case, call))
        set_up = set_up or time.monotonic()
        for _ in range(REWARM_CALLS if builds else request["warmup_calls"]):
            call()
        if heavy:
            instrumentation.turn(on=True)
            call()  # uncounted: valgrind translates the call's code anew, with the instrumentation
        warm = warm or time.monotonic()
        gc.collect()
        gc.disable()
        if overhead is None:
            overhead = min(_counted(lambda: None, 1, workdir) for _ in range(3))
        rounds = counted_rounds(
            lambda call=call, overhead=overhead: (_counted(call, calls, workdir) - overhead) / calls,
            request["rounds"],
            calls,
            most=max(request["rounds"], MAX_ROUNDS // planned),
            budget=ROUND_BUDGET / planned,
        )
        gc.enable()
        builds.append(rounds)
        if min(rounds) >= ONE_BUILD_FROM:
            break
    if not 0 < min(min(build) for build in builds) < 2**62:
        raise RuntimeError(f"callgrind counted {min(builds[0])} instructions per call: the instrumentation is not on")
    done = time.monotonic()
    phases = {
        "set_up": set_up - started,
        "warm_up": warm - set_up,
        "counting": done - warm,
    }
    return {
        "builds": [[round(n) for n in build] for build in builds],
        "overhead": overhead,
        "warmup_calls": request["warmup_calls"],
        "seconds": done - started,
        "phases": phases,
    }


def _prewarm() -> None:
    """Run the built-in methods (but the heavy ones) once on a small case: run before the
    instrumentation is on, it imports what they import lazily (vmap and Opacus' hooks: about 900
    and 750 modules) at the uninstrumented speed; run after, it has valgrind translate the code
    they share with the instrumentation, once for every count. The worker has imported no plugin:
    one that crashes must not take the worker down, and loading one must not move the others' counts."""
    from harness.benchmarks.cases import BenchmarkTrial
    from harness.benchmarks.timing import THREADS, workload
    from harness.checking.trials import HEAVY_METHODS
    from harness.methods import timed_methods

    torch = sys.modules["torch"]
    torch.set_num_threads(THREADS)
    for method in (BATCHED, *timed_methods()):
        if method in HEAVY_METHODS:
            continue
        with contextlib.suppress(Exception):
            workload(method, BenchmarkTrial(*_PREWARM_CASE, "float32", "cpu", method).build())()


def _ended(returncode: int) -> str:
    """How a process ended, in words, from its return code as ``subprocess`` gives it (minus the
    signal's number where one killed it; ``os.waitstatus_to_exitcode`` gives the same)."""
    if returncode >= 0:
        return f"exit status {returncode}"
    number = -returncode
    return f"killed by {signal.Signals(number).name if number in signal.valid_signals() else f'signal {number}'}"


def _count_in_a_child(request: dict, instrumentation: _Instrumentation, reply: Callable[[dict], None]) -> None:
    """Count in a forked copy of the worker, so every count starts from the same state (the
    worker's, after its imports and the pre-warm) whatever was counted before, and a method that
    crashes takes only the copy down."""
    child = os.fork()
    if child == 0:
        try:
            answer = _count(request, instrumentation)
        except BaseException as exc:
            answer = {"error": _one_line(exc)}
        try:
            reply(answer)
        finally:
            os._exit(0)
    status = os.waitpid(child, 0)[1]
    for leftover in instrumentation.workdir.glob(f"{_DUMP_PREFIX}.{child}*"):
        if leftover.name == f"{_DUMP_PREFIX}.{child}" or leftover.name.startswith(f"{_DUMP_PREFIX}.{child}."):
            leftover.unlink()
    shutil.rmtree(instrumentation.workdir / f"{_COMPILE_CACHE_PREFIX}{child}", ignore_errors=True)
    if status != 0:
        complaint = _valgrind_complaint(instrumentation.workdir / "valgrind.log", child)
        reply({"error": f"its process died ({_ended(os.waitstatus_to_exitcode(status))})" + (f": {complaint}" if complaint else "")})


#: The seed of the worker's stand-in for the operating system's entropy (:func:`_fixed_entropy`).
ENTROPY_SEED = 0


def _fixed_entropy() -> None:
    """In the worker, before any import: ``os.urandom`` (and with it ``secrets``, ``uuid`` and
    numpy's ``default_rng()`` without a seed) returns a fixed sequence, and ``random`` is seeded.

    scipy.stats (from 1.15.0) builds its distributions' docstrings at import from unseeded random samples
    (their ``repr``, "may vary"), and Opacus imports it: the strings' lengths, and so the heap every
    later object lands in, differed from process to process. Natively, two starts held a few dozen
    blocks apart after the pre-warm; under callgrind, Opacus' methods counted 0.2-0.5% apart on
    every case between runs (docs/calibration.md, round 6). With a fixed entropy four starts built
    the same heap, block for block.
    """
    import random

    stand_in = random.Random(ENTROPY_SEED)
    os.urandom = random._urandom = stand_in.randbytes
    random.seed(ENTROPY_SEED)


def _serve(requests: int, replies: int, workdir: Path, switch: str) -> None:
    """The worker's loop: import, pre-warm, switch the instrumentation on, pre-warm again, say
    ready, then count each request in a forked copy of itself until the request pipe closes."""

    def reply(message: dict) -> None:
        os.write(replies, (json.dumps(message) + "\n").encode())

    try:
        instrumentation = _Instrumentation(switch, workdir)
        _fixed_entropy()
        import torch

        from harness.methods import timed_methods

        if not torch._C._valgrind_supported_platform():
            raise RuntimeError("this torch build has no callgrind client requests")
        _prewarm()
        instrumentation.turn(on=True)
        _prewarm()
        gc.collect()
        gc.freeze()  # the counts' collections then leave these objects, and their shared pages, alone
    except Exception as exc:
        reply({"error": _one_line(exc)})
        return
    reply({"methods": timed_methods(), "pid": os.getpid()})
    with os.fdopen(requests, "rb") as lines:
        for line in lines:
            _count_in_a_child(json.loads(line), instrumentation, reply)
    # the pipe closed without the counter killing the worker first: the counter's process died
    shutil.rmtree(workdir, ignore_errors=True)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="The callgrind worker of InstructionCounter (not run by hand).")
    parser.add_argument("--requests", type=int, required=True)
    parser.add_argument("--replies", type=int, required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--switch", type=str.strip, choices=SWITCHES, required=True)
    args = parser.parse_args(argv)
    _serve(args.requests, args.replies, args.workdir, args.switch)


if __name__ == "__main__":
    _main()
