"""A case the CPU cannot run is skipped, naming the missing instruction set; the same error where the
instruction set is there is a failure. Run under a cap (``ONEDNN_MAX_CPU_ISA``), as ``tox -e modes`` does."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import pytest

from harness.checking.checks import check_against_oracle
from harness.checking.trials import Trial
from harness.core import hardware
from harness.core.errors import MethodFailed
from harness.core.hardware import MISSING_ISA, HardwareLimit

ONEDNN_REFUSES = "could not create a primitive descriptor for the LSTM forward propagation primitive. Run workload"


@pytest.mark.integration  # starts pytest or Python in another process
def test_a_bf16_lstm_below_avx512_is_skipped_naming_the_instruction_set():
    """The real thing, on any CPU: oneDNN capped at AVX2, as on an AMD EPYC of family 25."""
    script = (
        "from harness.checking.checks import check_against_oracle\n"
        "from harness.checking.trials import Trial\n"
        "try:\n"
        "    check_against_oracle(Trial('lstm_text', 7, 'bf16', 'cpu', 'loop'))\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120).stdout
    assert out.startswith(f"HardwareLimit {MISSING_ISA}: oneDNN's bfloat16 kernels need AVX-512"), out
    assert "(ONEDNN_MAX_CPU_ISA=AVX2 caps it here)" in out and "method 'loop' on cpu-bf16-lstm_text-B7" in out, out


@pytest.fixture
def onednn_bf16(monkeypatch):
    """Set whether oneDNN computes in bfloat16 here, as the limits see it."""

    def set_to(available: bool) -> None:
        limits = tuple(dataclasses.replace(limit, available=lambda: available) for limit in hardware.LIMITS)
        monkeypatch.setattr(hardware, "LIMITS", limits)
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)

    return set_to


def refuses_in_bf16(case):
    raise RuntimeError(ONEDNN_REFUSES)


def test_without_the_instruction_set_the_case_is_skipped(method, onednn_bf16):
    onednn_bf16(False)
    method(refuses_in_bf16)
    with pytest.raises(HardwareLimit, match=rf"^{MISSING_ISA}: .*\(this CPU has none of them\).*primitive\. \(method"):
        check_against_oracle(Trial("mlp", 7, "bf16", "cpu", "selftest"))


@pytest.mark.parametrize("precision", ["bf16", "float32"])
def test_the_same_error_is_a_failure_where_it_is_not_the_hardware(method, onednn_bf16, precision):
    """With oneDNN's bfloat16 there, or in float32 (which every CPU runs), the error is the method's."""
    onednn_bf16(precision == "bf16")
    method(refuses_in_bf16)
    with pytest.raises(MethodFailed, match="raised RuntimeError: could not create a primitive descriptor"):
        check_against_oracle(Trial("mlp", 7, precision, "cpu", "selftest"))


def test_the_run_header_names_the_instruction_sets_and_their_caps(monkeypatch):
    for name in hardware.ISA_CAPS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MKL_ENABLE_INSTRUCTIONS", "AVX2")
    line = hardware.instruction_sets()
    assert line.startswith("ATen ") and "oneDNN bfloat16 " in line, line
    assert "(MKL_ENABLE_INSTRUCTIONS=AVX2)" in line and "CPU flags: " in line, line
