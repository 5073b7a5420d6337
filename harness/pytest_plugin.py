"""pytest plugin: markers, options, parametrization over the harness's grids, selection, xdist,
warning filters, Hypothesis profiles, global state, and how failures are reported (a harness
error by its message, one line per failing harness test at the end, ``--psg-summary``).

Loaded through the ``pytest11`` entry point wherever the package is installed (``-p
no:psg_harness`` turns it off). It acts on *harness items* only (:func:`is_harness_item`: the
installed suite's tests and any test parametrized over the harness's trials), so a project's
own tests keep their RNG, warnings, Hypothesis profile, ``slow`` marker and tracebacks as they were. Test
modules parametrize with :func:`parametrize` when they are collected, after plugins given with
``-p`` have registered their methods, so those run through every grid.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO

import pytest
import torch

from harness.benchmarks.cases import BenchmarkTrial
from harness.benchmarks.records import BATCHED
from harness.checking.checks import checks_of
from harness.checking.conversions import Conversion
from harness.checking.crashes import FaultReports, write_fault_report
from harness.checking.entry_points import EntryPointTrial
from harness.checking.profiles import use_profile
from harness.checking.run_summary import TestOutcome, failure_lines, first_line, markdown_summary
from harness.checking.support import ExpectedFailure, apply_support_matrix
from harness.checking.trials import GRIDS, PropertyTrial, Trial
from harness.core.errors import SELF_EXPLAINING, EveryExampleExpected, HarnessError, MethodUnavailable
from harness.core.hardware import instruction_sets
from harness.core.precision import set_tf32, tf32_flags
from harness.core.releases import installed_version
from harness.methods import registered

MARKERS = {
    "cuda": "runs on a CUDA device (skipped with a reason where there is none)",
    "slow": "heavy case (big model or batch); left out unless -m selects slow",
    "psg": "a harness test: the harness's warning filters and fresh torch state apply to it",
    "integration": "a harness test that starts other processes (pytest in a subprocess, valgrind, a new virtual "
    "environment); left out unless -m names it",
    "distributed": "a DP step on a torch.distributed process group (gloo, or NCCL over several GPUs); left out "
    "unless -m names it (the default run keeps one small case)",
}
#: Markers whose harness items run only when the ``-m`` expression names them (``benchmark`` is
#: pytest-benchmark's own marker: the timing suite wants a quiet machine, not the default run;
#: ``integration``: the self-tests that start other processes, which .ci/run runs after the default run;
#: ``distributed``: the process-group trials but one, and their self-tests).
OPT_IN = ("slow", "benchmark", "integration", "distributed")
#: Methods every ``--psg-methods`` selection keeps: the references a method's figures are read
#: against (the loop of the seeds; the benchmarks' plain batched step).
REFERENCES = ("loop", BATCHED)
#: Warnings the libraries under test give on every call, ignored in harness items only.
WARNING_FILTERS = (
    "ignore:Full backward hook is firing when gradients are computed with respect to module outputs:UserWarning",
    "ignore:.*functorch.*deprecated:UserWarning",
    "ignore:.*make_functional.*:FutureWarning",
    # vmap's slow-path fallbacks are reported by test_vmap_has_batching_rules, which turns them into errors
    "ignore:There is a performance drop because we have not yet implemented the batching rule:UserWarning",
    # Opacus' functorch mode enters CPU autocast for float32/float64, which torch declines with this notice
    "ignore:In CPU autocast, but the target dtype is not supported:UserWarning",
    # BackPACK warns for every module it has no extension for (containers included); a parameter it
    # left without a result is reported by the harness as "returned no gradient for ..."
    "ignore:Extension saving to .* does not have an extension for Module:UserWarning",
    # make_private without secure_mode, as the entry-point checks call it (noise 0: no RNG to secure)
    "ignore:Secure RNG turned off:UserWarning",
)


def pytest_addoption(parser: pytest.Parser) -> None:
    """The harness's options: --psg-methods, --psg-summary, --baselines, --instructions."""
    group = parser.getgroup("psg-harness", "per-sample-gradient harness")
    group.addoption(
        "--psg-methods",
        metavar="NAMES",
        help="comma-separated methods to run the harness's checks and benchmarks on (the references "
        f"{', '.join(REFERENCES)} always run); default: every registered method",
    )
    group.addoption(
        "--psg-raw",
        action="store_true",
        help="record what each method did: no support-matrix row turns a failure into an expected one "
        "(the release history, python -m harness bisect)",
    )
    group.addoption(
        "--instructions",
        action="store_true",
        help="with -m benchmark: also count the CPU instructions of one call of every counted CPU benchmark "
        "under valgrind's callgrind (one worker process for the run), into the JSON's extra_info",
    )
    group.addoption(
        "--psg-summary",
        metavar="FILE",
        help="write a Markdown summary of the run to FILE, to paste into a pull request: the counts per "
        "outcome, a table of the failures (test, method, case, message), the xfails and skips by reason",
    )
    group.addoption(
        "--baselines",
        metavar="DIR",
        help="where benchmark runs are stored (--benchmark-autosave, --benchmark-compare) and found: "
        "DIR/<machine class>-torch-<version>/; default: baselines/ under the rootdir",
    )


def _trial(item: pytest.Item) -> Trial | PropertyTrial | None:
    callspec = getattr(item, "callspec", None)
    trial = callspec.params.get("trial") if callspec is not None else None
    return trial if isinstance(trial, Trial | PropertyTrial) else None


def _method(item: pytest.Item) -> str | None:
    """The method a harness item checks: its trial's (vmap for the batching-rule trials), a
    ``make_private`` trial's mode's, a conversion's (``opacus-hooks``); None for the others."""
    trial = _trial(item)
    if trial is not None:
        return trial.method or "vmap"
    callspec = getattr(item, "callspec", None)
    params = callspec.params.values() if callspec is not None else ()
    return next((param.method for param in params if isinstance(param, EntryPointTrial | Conversion)), None)


def is_harness_item(item: pytest.Item) -> bool:
    """A test of the installed suite, one parametrized over the harness's trials, or one marked ``psg``."""
    module = getattr(getattr(item, "module", None), "__name__", "")
    return module.startswith("harness.") or _trial(item) is not None or item.get_closest_marker("psg") is not None


def selects_benchmarks(expression: str) -> bool:
    """Whether a ``-m`` expression lets a benchmark item through (they may also be slow or cuda)."""
    from _pytest.mark.expression import Expression

    if not re.search(r"\bbenchmark\b", expression):
        return False
    try:
        compiled = Expression.compile(expression)
    except SyntaxError:  # pytest's ParseError; pytest itself reports it in one line
        return False
    marks = [{"benchmark"}, {"benchmark", "slow"}, {"benchmark", "cuda"}, {"benchmark", "slow", "cuda"}]
    return any(compiled.evaluate(lambda name, m=m, **_: name in m) for m in marks)


def _xdist_workers(config: pytest.Config) -> int:
    """How many pytest-xdist workers this run uses (0: none, the tests run in this process)."""
    if config.getoption("dist", "no") == "no":
        return 0
    return int(config.getoption("numprocesses", 0) or 0)


def _share_the_machine_with_the_other_workers() -> None:
    """In a pytest-xdist worker: use this worker's share of the cores, and its own GPU.

    Every worker would otherwise run as many torch threads as there are cores, and two workers
    on two cores ran 2.3x slower than one process. On a box with several GPUs, worker ``gwN``
    takes GPU ``N mod count`` (``cuda`` then means that one).
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is None:
        return
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(min(torch.get_num_threads(), max(1, cores // workers)))
    if torch.cuda.is_available() and torch.cuda.device_count() > 1:
        torch.cuda.set_device(int(worker.removeprefix("gw")) % torch.cuda.device_count())


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Stop at once on a broken torch/torchvision pair, benchmarks under -n, an unknown Hypothesis
    profile or --instructions without valgrind; register the markers and the Hypothesis profile;
    set up the benchmarks' storage."""
    from harness.core.environment import BrokenEnvironment, check_torch_pair

    try:
        check_torch_pair()
    except BrokenEnvironment as exc:
        raise pytest.UsageError(f"broken environment: {exc}") from None
    if _xdist_workers(config) and selects_benchmarks(config.getoption("markexpr") or ""):
        raise pytest.UsageError(
            "benchmarks time one process on a quiet machine: run -m benchmark without -n (pytest-xdist)"
        )
    _share_the_machine_with_the_other_workers()
    apply_support_matrix(not config.getoption("psg_raw"))
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    try:  # before Hypothesis' own plugin, which ends an unknown name in an INTERNALERROR
        use_profile(config.getoption("hypothesis_profile", None))
    except ValueError as exc:
        raise pytest.UsageError(f"--hypothesis-profile: {exc}") from None
    if not hasattr(config, "workerinput"):  # the controller of a pytest-xdist run sees every report
        config.pluginmanager.register(RunRecord(config), "psg-run-record")
        if _xdist_workers(config):
            config.pluginmanager.register(FaultReports(), "psg-fault-reports")
    if config.getoption("instructions"):
        from harness.benchmarks.instructions import valgrind_missing

        reason = valgrind_missing()
        if reason is not None:
            raise pytest.UsageError(f"--instructions: {reason}")
    if hasattr(config.option, "benchmark_save_data"):
        # before pytest-benchmark reads its options: keep raw rounds (the compare step tests
        # them), and store runs per machine class and torch version under baselines/ (its
        # machine id tells neither apart), so --benchmark-compare finds the committed baselines
        config.option.benchmark_save_data = True
        if config.option.benchmark_storage == "file://./.benchmarks":
            from harness.benchmarks.timing import storage_name

            folder = Path(config.getoption("baselines") or config.rootpath / "baselines") / storage_name()
            config.option.benchmark_storage = f"file://{folder.resolve()}"
            # pytest-benchmark creates its storage folder in every run; one that stays empty is removed
            config.stash[_NEW_FOLDERS] = _missing_parents(folder)
        if config.option.benchmark_json is not None:
            # pytest-benchmark opens it only after the last benchmark: a missing folder would
            # lose the whole run to a FileNotFoundError at the end
            try:
                config.option.benchmark_json.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise pytest.UsageError(f"--benchmark-json: cannot make its folder {exc.filename} ({exc.strerror})") from None


_NEW_FOLDERS = pytest.StashKey[list[Path]]()
_FAULT_REPORT = pytest.StashKey[IO[str] | None]()


def _missing_parents(folder: Path) -> list[Path]:
    """``folder`` and those of its parents that do not exist yet, deepest first."""
    missing = []
    for path in (folder, *folder.parents):
        if path.exists():
            break
        missing.append(path)
    return missing


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the storage folders this run created and left empty (a run without benchmarks);
    close a worker's fault report."""
    stream = config.stash.get(_FAULT_REPORT, None)
    if stream is not None:
        faulthandler.disable()
        stream.close()
    for folder in config.stash.get(_NEW_FOLDERS, []):
        with contextlib.suppress(OSError):
            folder.rmdir()


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> Iterator[None]:
    """Before pytest-benchmark stores the run as a baseline: the compare step's rule on what may be one."""
    from harness.benchmarks.records import hold_back_unfit_baseline

    refusal = hold_back_unfit_baseline(getattr(session.config, "_benchmarksession", None), os.cpu_count())
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if refusal and reporter is not None:
        reporter.write_line("\n" + refusal)  # after the progress line, which is not ended yet
    yield


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    from harness.benchmarks.timing import machine_info as extra

    machine_info.update(extra())


def pytest_benchmark_update_json(config: pytest.Config, benchmarks: list, output_json: dict) -> None:
    from harness.benchmarks.records import add_ratios

    add_ratios(output_json["benchmarks"])


def _marks(trial: Trial | PropertyTrial) -> list[pytest.MarkDecorator]:
    """A trial's ``cuda``/``slow``/``benchmark`` markers and its support-matrix row as a strict xfail
    (a skip where the row says the failure kills the process: an xfail cannot outlive it)."""
    marks = []
    if trial.device == "cuda":
        marks += [
            pytest.mark.cuda,
            pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available on this machine"),
        ]
    if isinstance(trial, BenchmarkTrial):
        marks.append(pytest.mark.benchmark)
    return marks + expected_marks(trial.expected, trial.slow)


def expected_marks(row: ExpectedFailure | None, slow: bool = False) -> list[pytest.MarkDecorator]:
    """``slow`` where asked, and a support-matrix row as a strict xfail (a skip where the row says the
    failure kills the process: an xfail cannot outlive it)."""
    marks = [pytest.mark.slow] if slow else []
    if row is not None and row.crash:
        marks.append(pytest.mark.skip(reason=f"crashes the process ({row.crash}): {row.describe()}"))
    elif row is not None:
        marks.append(pytest.mark.xfail(strict=True, raises=HarnessError, reason=row.describe()))
    return marks


def _grid(name: str) -> Iterable[Trial | PropertyTrial]:
    if name == "benchmark":
        from harness.benchmarks.cases import benchmark_trials

        return benchmark_trials()
    if name not in GRIDS:
        raise ValueError(f"unknown grid {name!r}; known: {', '.join([*GRIDS, 'benchmark'])}")
    return GRIDS[name]()


def parametrize(grid: str, methods: Iterable[str] | None = None) -> pytest.MarkDecorator:
    """Parametrize a test's ``trial`` argument over a grid of the harness (``oracle``, ``sum``,
    ``batching-rule``, ``norms``, ``clipped``, ``property``, ``benchmark``), with every
    registered method (third-party ones included) or only ``methods``::

        @parametrize("oracle")
        def test_matches_oracle(trial): ...
    """
    chosen = None if methods is None else set(methods)
    trials = [trial for trial in _grid(grid) if chosen is None or trial.method in chosen]
    return pytest.mark.parametrize("trial", [pytest.param(trial, id=trial.id, marks=_marks(trial)) for trial in trials])


def parametrize_with_checks(methods: Iterable[str], grids: Iterable[str] | None = None) -> pytest.MarkDecorator:
    """Parametrize a test in a project's own test file over every check of the harness for its
    methods (registered before the decorator runs), with the support matrix's expected failures
    as strict xfails; the test calls ``check(trial)``::

        register_method("my-method", my_method)

        @parametrize_with_checks(["my-method"])
        def test_my_method(trial, check):
            check(trial)
    """
    selected = list(checks_of(methods=set(methods), grids=None if grids is None else set(grids)))
    if not selected:
        raise ValueError(f"no harness checks for methods {sorted(methods)}: are they registered?")
    return pytest.mark.parametrize(
        ("trial", "check"),
        [pytest.param(trial, check, id=f"{grid}-{trial.id}", marks=_marks(trial)) for grid, trial, check in selected],
    )


@pytest.fixture(scope="session")
def psg_instruction_counter(pytestconfig: pytest.Config) -> Iterator[object | None]:
    """With ``--instructions``: one callgrind worker for the whole run, which imports the modules
    given with ``-p`` (a plugin's methods are counted as they run here); None otherwise."""
    if not pytestconfig.getoption("instructions"):
        yield None
        return
    import sys

    from harness.benchmarks.instructions import InstructionCounter

    plugins = [name for name in pytestconfig.option.plugins or () if not name.startswith("no:") and name in sys.modules]
    with InstructionCounter(plugins=plugins) as counter:
        yield counter


@pytest.fixture
def psg_record(request: pytest.FixtureRequest) -> Callable[[str, object], None]:
    """``psg_record(name, value)``: a property of the test into the JUnit XML, as ``record_property``
    does, without its warning under a project's ``junit_family = xunit2``."""

    def record(name: str, value: object) -> None:
        request.node.user_properties.append((name, value))

    return record


@pytest.fixture(autouse=True)
def _record_trial(request: pytest.FixtureRequest) -> None:
    """A parametrized trial's fields into the JUnit XML (``trial_model``, ...): the scorecard reads them."""
    trial = _trial(request.node)
    if trial is not None:
        for name, value in trial.fields().items():
            request.node.user_properties.append((f"trial_{name}", value))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """A method that cannot run here (``MethodUnavailable``) skips its test, with the reason; a
    property test whose every drawn example failed as the support matrix expects is an XFAIL."""
    try:
        return (yield)
    except MethodUnavailable as exc:
        pytest.skip(str(exc))
    except EveryExampleExpected as exc:
        pytest.xfail(str(exc))


#: The traceback styles under which a harness test that failed with a harness error shows its
#: message only (pytest's default, and the repository's); --tb=long or native shows the traceback.
_MESSAGE_ONLY_STYLES = ("auto", "short")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    """Mark a harness item's reports with its trial's method and case (``psg_harness``, for the
    end-of-run lines and ``--psg-summary``, under pytest-xdist too), and report a harness error
    by its message alone: the message names the method, the case, the parameter, the sample and
    the bound, and the traceback through the harness and the library under test (thousands of
    lines over a run) adds nothing to it."""
    report = yield
    if not is_harness_item(item):
        return report
    trial = _trial(item)
    report.psg_harness = {"method": (trial.method or "vmap") if trial else "", "case": trial.case if trial else ""}
    excinfo = call.excinfo
    if (
        report.failed
        and excinfo is not None
        and excinfo.errisinstance(SELF_EXPLAINING)
        and item.config.option.tbstyle in _MESSAGE_ONLY_STYLES
    ):
        report.longrepr = _message_only(excinfo)
    return report


def _message_only(excinfo: pytest.ExceptionInfo[BaseException]) -> object:
    """The exception's report without its traceback or causes: its type and message, then its
    notes (Hypothesis' falsifying example); where it was raised stays for the summary lines."""
    longrepr = excinfo.getrepr(style="value", chain=False)
    error = excinfo.value
    entry = longrepr.reprtraceback.reprentries[-1]
    entry.lines = [*f"{type(error).__name__}: {error}".splitlines(), *getattr(error, "__notes__", ())]
    longrepr.reprtraceback.extraline = None
    return longrepr


def _outcome(report: pytest.TestReport | pytest.CollectReport, status: str) -> TestOutcome:
    """A report as the summaries read it: the failure's message, or the skip or xfail reason."""
    longrepr = report.longrepr
    if hasattr(report, "wasxfail"):
        message = report.wasxfail
    elif report.skipped and isinstance(longrepr, tuple):
        message = longrepr[2].removeprefix("Skipped: ")
    else:
        crash = getattr(longrepr, "reprcrash", None)
        message = crash.message if crash is not None else str(longrepr or "")
    trial = getattr(report, "psg_harness", None)
    return TestOutcome(report.nodeid, status, first_line(message), trial is not None, **(trial or {}))


class RunRecord:
    """Every test's outcome in this run (the controller's, under pytest-xdist): one line per
    failing harness test at the end of the run, whatever the project's options, and the Markdown
    summary of ``--psg-summary FILE``."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.outcomes: list[TestOutcome] = []
        option = config.getoption("psg_summary")
        self.summary = None if option is None else Path(config.invocation_params.dir, option)
        if self.summary is not None:
            try:  # now, not after the run: a missing folder would lose the summary at the end
                self.summary.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise pytest.UsageError(f"--psg-summary: cannot make its folder {exc.filename} ({exc.strerror})") from None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        status = self.config.hook.pytest_report_teststatus(report=report, config=self.config)[0]
        if status:
            self.outcomes.append(_outcome(report, status))

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.outcomes.append(_outcome(report, "error"))

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        lines = failure_lines(self.outcomes)
        if lines:
            terminalreporter.write_sep("=", f"psg-harness: {len(lines)} failing harness tests (--tb=long shows their tracebacks)")
            for line in lines:
                terminalreporter.write_line(line)

    def pytest_sessionfinish(self) -> None:
        if self.summary is None:
            return
        import platform

        from harness.benchmarks.timing import cpu_model

        environment = f"Python {platform.python_version()}, torch {torch.__version__}, opacus {installed_version('opacus')}; {cpu_model()}"
        self.summary.write_text(markdown_summary(self.outcomes, environment))


def _selected_methods(config: pytest.Config) -> set[str] | None:
    """The methods ``--psg-methods`` names, checked against the registry (a plugin's included)."""
    option = config.getoption("psg_methods")
    if option is None:
        return None
    names = {name.strip() for name in option.split(",") if name.strip()}
    unknown = sorted(names - set(registered()) - set(REFERENCES))
    if unknown or not names:
        raise pytest.UsageError(
            f"--psg-methods: unknown methods {unknown or option!r}; registered: {', '.join(registered())} "
            "(a plugin's methods need -p MODULE)"
        )
    return names | set(REFERENCES)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Give harness items their warning filters; leave out ``slow``, ``benchmark``, ``integration``
    and ``distributed`` harness items unless the ``-m`` expression names them, and under ``--psg-methods`` every harness item but
    those of the named methods and the references (the batching-rule trials are vmap's, a
    ``make_private`` trial its mode's method's, a conversion ``opacus-hooks``'; the seeds' claims,
    about built-in methods, are left out)."""
    expression = config.getoption("markexpr") or ""
    left_out = [name for name in OPT_IN if not re.search(rf"\b{name}\b", expression)]
    methods = _selected_methods(config)
    dropped = []
    for item in items:
        if not is_harness_item(item):
            continue
        method = _method(item)
        if any(item.get_closest_marker(name) for name in left_out) or (
            methods is not None and (method is None or method not in methods)
        ):
            dropped.append(item)
        for line in WARNING_FILTERS:
            item.add_marker(pytest.mark.filterwarnings(line), append=False)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if item not in set(dropped)]


@contextlib.contextmanager
def restored_global_state(seed: int = 0) -> Iterator[None]:
    """Seed the RNGs, and afterwards restore everything a test may change in torch's globals."""
    dtype = torch.get_default_dtype()
    tf32 = tf32_flags()
    matmul_precision = torch.get_float32_matmul_precision()
    deterministic = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    threads = torch.get_num_threads()
    rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.set_default_dtype(dtype)
        set_tf32(*tf32)
        torch.set_float32_matmul_precision(matmul_precision)
        torch.use_deterministic_algorithms(deterministic[0], warn_only=deterministic[1])
        torch.set_num_threads(threads)
        torch.set_rng_state(rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Versions, machine class and CPU model into the JUnit XML's suite properties (``python -m
    harness report`` reads them), by the process that writes the XML (the controller under xdist).
    A pytest-xdist worker sends its fault report where the controller reads it (harness.checking.crashes)."""
    session.config.stash[_FAULT_REPORT] = write_fault_report(session.config)
    from importlib.metadata import version

    from _pytest.junitxml import xml_key

    from harness.benchmarks.timing import cpu_model, machine_class

    xml = session.config.stash.get(xml_key, None)
    if xml is None:
        return
    xml.add_global_property("torch", torch.__version__)
    xml.add_global_property("torchvision", version("torchvision"))
    for library in ("opacus", "backpack"):
        xml.add_global_property(library, installed_version(library) or "not installed")
    xml.add_global_property("machine_class", machine_class())
    xml.add_global_property("cpu", cpu_model())
    xml.add_global_property("instruction_sets", instruction_sets())


def pytest_report_header(config: pytest.Config) -> str:
    """The instruction sets this run's kernels use: what a bf16 case can run depends on them."""
    return f"psg-harness: {instruction_sets()}"


@pytest.fixture(autouse=True)
def _global_torch_state(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every harness item starts from seed 0 and leaves torch's global state as it found it."""
    if not is_harness_item(request.node):
        yield
        return
    with restored_global_state():
        yield
