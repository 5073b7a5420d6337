"""The instruction-count tier (harness/benchmarks/instructions.py) and the CUDA kernel count.

The counts under callgrind share one worker, in one test (so that ``-n 2`` starts one, not two):
about 33 s to start it (torch's import and the pre-warm under valgrind), a second or two a count,
about 40 s in all on 2 cores. It is skipped, with the reason, where valgrind is missing.
"""

from __future__ import annotations

import importlib
import sys

import pytest
import torch

from harness.benchmarks.instructions import (
    MAX_ROUNDS,
    ROUND_BUDGET,
    CountFailed,
    InstructionCount,
    InstructionCounter,
    counted_rounds,
    valgrind_missing,
)
from harness.benchmarks.timing import kernel_launches
from harness.methods import unregister_method

MISSING = valgrind_missing()

#: Third-party methods: one does a little more work than vmap (one copy of its result), the other
#: crashes its process at B=8.
PLUGIN_MODULE = "psg_selftest_plugin"
PLUGIN = '''
import os
import signal

from harness import get_method, register_method

_vmap = get_method("vmap")


@register_method("selftest-vmap-copy")
def vmap_copy(case):
    return {name: grad.clone() for name, grad in _vmap(case).items()}


@register_method("selftest-crash")
def crash(case):
    if case.batch_size == 8:
        os.kill(os.getpid(), signal.SIGSEGV)
    return _vmap(case)
'''


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """The plugin module, importable (the worker gets this process's sys.path) and imported here."""
    (tmp_path / f"{PLUGIN_MODULE}.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module(PLUGIN_MODULE)
    yield PLUGIN_MODULE
    unregister_method("selftest-vmap-copy")
    unregister_method("selftest-crash")
    sys.modules.pop(PLUGIN_MODULE, None)


def test_valgrind_missing_says_why_in_one_line_or_nothing():
    assert MISSING is None or (MISSING and "\n" not in MISSING)


@pytest.mark.parametrize(
    "per_call, calls_per_round, expected",
    [(1_000_000, 1, MAX_ROUNDS), (ROUND_BUDGET / 6, 1, 6), (ROUND_BUDGET / 6, 2, 3), (ROUND_BUDGET, 1, 3), (10 * ROUND_BUDGET, 1, 3)],
)
def test_a_small_call_is_counted_over_more_rounds(per_call, calls_per_round, expected):
    """The smallest of 3 rounds of a small call moved by 0.5% between runs: it gets up to 12, until
    the rounds' calls add up to the budget; a large call keeps the 3."""
    assert len(counted_rounds(lambda: per_call, 3, calls_per_round)) == expected


def test_one_builds_share_of_the_rounds_and_the_budget():
    """Three builds of a 1M-instruction call: four rounds each (twelve in all, as one build had)."""
    assert len(counted_rounds(lambda: 1_000_000, 3, most=MAX_ROUNDS // 3, budget=ROUND_BUDGET / 3)) == 4
    assert len(counted_rounds(lambda: ROUND_BUDGET, 3, most=MAX_ROUNDS // 3, budget=ROUND_BUDGET / 3)) == 3


def test_the_figure_is_the_median_of_the_builds_smallest_rounds():
    """A round that re-specializes counts high once (the smallest round leaves it out); a build whose
    objects lie where they collide counts high on every call (the median of the builds leaves it out)."""
    count = InstructionCount(((1_010, 1_000, 1_004), (1_030, 1_026), (1_002, 1_003)), 1, 0, 10, 1.0)
    assert count.per_call == 1_002
    assert count.rounds == (1_010, 1_000, 1_004, 1_030, 1_026, 1_002, 1_003)
    assert InstructionCount(((7, 5, 6),), 1, 0, 10, 1.0).per_call == 5


def test_bad_input_is_refused_before_a_worker_starts():
    with pytest.raises(ValueError, match="rounds >= 1"):
        InstructionCounter(rounds=0)
    with pytest.raises(ValueError, match="builds >= 1"):
        InstructionCounter(builds=0)
    with pytest.raises(TypeError, match="sequence of module names"):
        InstructionCounter(plugins="my_plugin")
    with pytest.raises(ValueError, match="switch must be one of"):
        InstructionCounter(switch="gdb")
    idle = InstructionCounter()
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        idle.count("mlp", 0, "vmap")
    with pytest.raises(CountFailed, match=r"^counting 'no-such-method' on cpu-float32-mlp-B8: no method"):
        idle.count("mlp", 8, "no-such-method")
    assert not idle.running


def test_only_a_count_of_a_plugins_method_carries_the_plugins_and_the_callers_setting(plugin, tmp_path, monkeypatch):
    """A built-in is counted from the same request, worker environment and state with or without
    plugins; a copy counting the plugin's method gets the plugin, sys.path and environment."""
    from harness.benchmarks.instructions import _worker_environment

    without = InstructionCounter().request("mlp", 8, "vmap")
    monkeypatch.setenv("PSG_SELFTEST_SETTING", "only-this-run")
    with_plugin = InstructionCounter([plugin])
    assert with_plugin.request("mlp", 8, "vmap") == without
    assert "plugins" not in with_plugin.request("smooth_cnn", 16, "batched")
    carried = with_plugin.request("mlp", 8, "selftest-vmap-copy")["plugins"]
    assert carried["modules"] == [plugin]
    assert carried["environment"]["PSG_SELFTEST_SETTING"] == "only-this-run" and str(tmp_path) in carried["path"]
    environment = _worker_environment()
    assert "PSG_SELFTEST_SETTING" not in environment and str(tmp_path) not in environment["PYTHONPATH"]


def test_the_worker_draws_the_same_random_numbers_in_every_process():
    """scipy.stats writes unseeded random samples into its docstrings at import (Opacus imports
    it): with the worker's fixed entropy two processes build the same strings, so the same heap."""
    import subprocess

    script = (
        "import hashlib, os\n"
        "from harness.benchmarks.instructions import _fixed_entropy\n"
        "_fixed_entropy()\n"
        "import numpy, scipy.stats\n"
        "docs = ''.join(str(getattr(scipy.stats, name).__doc__) for name in ('Normal', 'Uniform'))\n"
        "print(os.urandom(8).hex(), numpy.random.default_rng().integers(1 << 30), hashlib.sha1(docs.encode()).hexdigest())\n"
    )
    runs = [subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout for _ in range(2)]
    assert runs[0] == runs[1] and runs[0].strip(), runs


@pytest.mark.integration  # a callgrind worker: about 45 s, left out of the default run (.ci/run runs it)
@pytest.mark.skipif(MISSING is not None, reason=f"cannot count instructions: {MISSING}")
def test_counts_under_callgrind(plugin, method):
    with InstructionCounter([plugin], rounds=2) as counter:
        vmap = counter.measure("mlp", 8, "vmap")
        batched = counter.count("mlp", 8, "batched")
        again = counter.count("mlp", 8, "vmap", "grads")
        assert 0 < batched < vmap.per_call, (batched, vmap)
        assert abs(again - vmap.per_call) <= 0.01 * vmap.per_call, "the same call counted twice differs by over 1%"

        # a plugin's method, doing one copy more than vmap: +2.0% at B=32, the same in every worker
        vmap_32 = counter.count("mlp", 32, "vmap")
        copy_32 = counter.count("mlp", 32, "selftest-vmap-copy")
        assert copy_32 > 1.01 * vmap_32, (vmap_32, copy_32)

        method(lambda case: None, name="selftest-parent-only")
        with pytest.raises(CountFailed, match=r"^counting 'selftest-parent-only' on cpu-float32-mlp-B8: .*no method"):
            counter.count("mlp", 8, "selftest-parent-only")
        with pytest.raises(CountFailed, match=r"^counting 'batched' on cpu-float32-no_such_model-B8: KeyError"):
            counter.count("no_such_model", 8, "batched")
        with pytest.raises(CountFailed, match=r"^counting 'selftest-crash' on cpu-float32-mlp-B8: .*killed by SIGSEGV"):
            counter.count("mlp", 8, "selftest-crash")
        assert counter.running, "a count's crash took the worker down"
        assert counter.count("mlp", 8, "batched") == pytest.approx(batched, rel=0.01)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available")
def test_kernel_launches_needs_cuda():
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        kernel_launches(lambda: None)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_kernel_launches_counts_the_kernels_of_one_call():
    x = torch.ones(1024, device="cuda")
    x.add_(1)
    assert kernel_launches(lambda: None) == 0
    assert kernel_launches(lambda: x.add_(1)) == 1
    assert kernel_launches(lambda: (x.add_(1), x.mul_(2))) == 2


@pytest.mark.integration  # starts pytest or Python in another process
def test_instructions_without_valgrind_stop_at_once_with_the_reason(subprocess_env, tmp_path):
    """``--instructions`` where valgrind is missing: one line, exit 4, before any benchmark runs."""
    import subprocess

    env = {**subprocess_env, "PATH": str(tmp_path)}  # no valgrind on it
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:randomly", "-m", "benchmark", "--instructions", "-k", "mlp-B8"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert "ERROR: --instructions: valgrind is not on PATH (install valgrind to count instructions)" in proc.stderr
