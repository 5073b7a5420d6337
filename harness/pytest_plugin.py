"""pytest plugin: markers, parametrization over the harness's grids, selection, xdist and global state.

Loaded by the top-level ``conftest.py``. Test modules parametrize with :func:`parametrize` when
they are collected, after plugins given with ``-p`` have registered their methods, so those run
through every grid.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable, Iterator

import pytest
import torch
from _pytest.mark.structures import ParameterSet

from harness.benchmarks.cases import BenchmarkTrial
from harness.checking.trials import GRIDS, PropertyTrial, Trial
from harness.core.errors import HarnessError, MethodUnavailable
from harness.core.precision import set_tf32, tf32_flags

MARKERS = {
    "cuda": "runs on a CUDA device (skipped with a reason where there is none)",
    "slow": "heavy case (big model or batch); left out unless -m selects slow",
}
#: Markers whose items run only when the ``-m`` expression names them (``benchmark`` is
#: pytest-benchmark's own marker: the timing suite wants a quiet machine, not the default run).
OPT_IN = ("slow", "benchmark")


def selects_benchmarks(expression: str) -> bool:
    """Whether a ``-m`` expression lets a benchmark item through (they may also be slow or cuda)."""
    from _pytest.mark.expression import Expression

    if not re.search(r"\bbenchmark\b", expression):
        return False
    compiled = Expression.compile(expression)
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
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    if hasattr(config.option, "benchmark_save_data"):
        # before pytest-benchmark reads its options: keep raw rounds (the compare step tests
        # them), and store runs per machine class and torch version under baselines/ (its
        # machine id tells neither apart), so --benchmark-compare finds the committed baselines
        config.option.benchmark_save_data = True
        if config.option.benchmark_storage == "file://./.benchmarks":
            from harness.benchmarks.timing import storage_name

            config.option.benchmark_storage = f"file://{config.rootpath / 'baselines' / storage_name()}"
        if config.option.benchmark_json is not None:
            # pytest-benchmark opens it only after the last benchmark: a missing folder would
            # lose the whole run to a FileNotFoundError at the end
            config.option.benchmark_json.parent.mkdir(parents=True, exist_ok=True)


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    from harness.benchmarks.timing import machine_info as extra

    machine_info.update(extra())


def pytest_benchmark_update_json(config: pytest.Config, benchmarks: list, output_json: dict) -> None:
    from harness.benchmarks.records import add_ratios

    add_ratios(output_json["benchmarks"])


def _param(trial: Trial | PropertyTrial) -> ParameterSet:
    """A trial as a ``pytest.param``: its id, ``cuda``/``slow``/``benchmark`` markers and its
    support-matrix row as a strict xfail."""
    marks = []
    if trial.device == "cuda":
        marks += [
            pytest.mark.cuda,
            pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available on this machine"),
        ]
    if trial.slow:
        marks.append(pytest.mark.slow)
    if isinstance(trial, BenchmarkTrial):
        marks.append(pytest.mark.benchmark)
    row = trial.expected
    if row is not None:
        marks.append(pytest.mark.xfail(strict=True, raises=HarnessError, reason=row.describe()))
    return pytest.param(trial, id=trial.id, marks=marks)


def _grid(name: str) -> Iterable[Trial | PropertyTrial]:
    if name == "benchmark":
        from harness.benchmarks.cases import benchmark_trials

        return benchmark_trials()
    if name not in GRIDS:
        raise ValueError(f"unknown grid {name!r}; known: {', '.join([*GRIDS, 'benchmark'])}")
    return GRIDS[name]()


def parametrize(grid: str) -> pytest.MarkDecorator:
    """Parametrize a test's ``trial`` argument over a grid of the harness (``oracle``, ``sum``,
    ``batching-rule``, ``norms``, ``clipped``, ``property``, ``benchmark``), with every
    registered method, third-party ones included::

        @parametrize("oracle")
        def test_matches_oracle(trial): ...
    """
    return pytest.mark.parametrize("trial", [_param(trial) for trial in _grid(grid)])


@pytest.fixture(autouse=True)
def _record_trial(request: pytest.FixtureRequest) -> None:
    """A parametrized trial's fields into the JUnit XML (``trial_model``, ...): the scorecard reads them."""
    callspec = getattr(request.node, "callspec", None)
    trial = callspec.params.get("trial") if callspec is not None else None
    if isinstance(trial, Trial | PropertyTrial):
        for name, value in trial.fields().items():
            request.node.user_properties.append((f"trial_{name}", value))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """A method that cannot run here (``MethodUnavailable``) skips its test, with the reason."""
    try:
        return (yield)
    except MethodUnavailable as exc:
        pytest.skip(str(exc))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave ``slow`` and ``benchmark`` items out unless the ``-m`` expression names them."""
    expression = config.getoption("markexpr") or ""
    left_out = [name for name in OPT_IN if not re.search(rf"\b{name}\b", expression)]
    dropped = [item for item in items if any(item.get_closest_marker(name) for name in left_out)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if item not in dropped]


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
    harness report`` reads them), by the process that writes the XML (the controller under xdist)."""
    from importlib.metadata import version

    from _pytest.junitxml import xml_key

    from harness.benchmarks.timing import cpu_model, machine_class

    xml = session.config.stash.get(xml_key, None)
    if xml is None:
        return
    xml.add_global_property("torch", torch.__version__)
    for package in ("torchvision", "opacus"):
        xml.add_global_property(package, version(package))
    xml.add_global_property("machine_class", machine_class())
    xml.add_global_property("cpu", cpu_model())


@pytest.fixture(autouse=True)
def _global_torch_state() -> Iterator[None]:
    """Every test starts from seed 0 and leaves torch's global state as it found it."""
    with restored_global_state():
        yield
