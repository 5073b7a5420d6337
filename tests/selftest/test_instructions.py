"""The instruction-count tier (harness/benchmarks/instructions.py) and the CUDA kernel count.

The counts run one worker under callgrind for the module (about 25 s to start, then a few
seconds a count); they are skipped, with the reason, where valgrind is missing.
"""

from __future__ import annotations

import importlib
import sys

import pytest
import torch

from harness.benchmarks.instructions import CountFailed, InstructionCounter, valgrind_missing
from harness.benchmarks.timing import kernel_launches
from harness.methods import unregister_method

MISSING = valgrind_missing()
needs_valgrind = pytest.mark.skipif(MISSING is not None, reason=f"cannot count instructions: {MISSING}")

#: A third-party method that does a little more work than vmap: one copy of its result.
PLUGIN_MODULE = "psg_selftest_vmap_copy"
PLUGIN = '''
from harness import get_method, register_method

_vmap = get_method("vmap")


@register_method("selftest-vmap-copy")
def vmap_copy(case):
    return {name: grad.clone() for name, grad in _vmap(case).items()}
'''


@pytest.fixture(scope="module")
def counter(tmp_path_factory):
    """One worker for the module, which also imports a plugin module (registered here too)."""
    folder = str(tmp_path_factory.mktemp("plugins"))
    with open(f"{folder}/{PLUGIN_MODULE}.py", "w") as module:
        module.write(PLUGIN)
    sys.path.insert(0, folder)
    try:
        importlib.import_module(PLUGIN_MODULE)
        with InstructionCounter([PLUGIN_MODULE], rounds=2) as started:
            yield started
    finally:
        unregister_method("selftest-vmap-copy")
        sys.modules.pop(PLUGIN_MODULE, None)
        sys.path.remove(folder)


def test_valgrind_missing_says_why_in_one_line_or_nothing():
    assert MISSING is None or (MISSING and "\n" not in MISSING)


def test_bad_input_is_refused_before_a_worker_starts(method):
    with pytest.raises(ValueError, match="rounds >= 1"):
        InstructionCounter(rounds=0)
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


@needs_valgrind
def test_a_call_is_counted_and_counted_again_within_one_percent(counter):
    vmap = counter.measure("mlp", 8, "vmap")
    batched = counter.count("mlp", 8, "batched")
    again = counter.count("mlp", 8, "vmap", "grads")
    assert 0 < batched < vmap.per_call, (batched, vmap)
    assert abs(again - vmap.per_call) <= 0.01 * vmap.per_call, (vmap, again)


@needs_valgrind
def test_a_plugin_method_is_counted_and_its_extra_copy_seen(counter):
    vmap = counter.count("mlp", 8, "vmap")
    copy = counter.count("mlp", 8, "selftest-vmap-copy")
    assert copy > 1.005 * vmap, (vmap, copy)


@needs_valgrind
def test_a_failing_count_names_the_case_and_method_and_the_worker_goes_on(counter, method):
    method(lambda case: None, name="selftest-parent-only")
    with pytest.raises(CountFailed, match=r"^counting 'selftest-parent-only' on cpu-float32-mlp-B8: .*no method"):
        counter.count("mlp", 8, "selftest-parent-only")
    with pytest.raises(CountFailed, match=r"^counting 'batched' on cpu-float32-no_such_model-B8: KeyError"):
        counter.count("no_such_model", 8, "batched")
    assert counter.running


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
