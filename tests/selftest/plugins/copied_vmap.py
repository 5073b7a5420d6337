"""``vmap`` with one extra copy of its output: about 1% more work on smooth_cnn at B=16, to
calibrate the instruction-count and memory guards (docs/calibration.md).

    PYTHONPATH=tests/selftest/plugins python -m pytest -p copied_vmap -m benchmark --instructions ...

replaces the built-in ``vmap`` (``replace=True``) with one that returns a copy of the per-sample
gradients it computed: the same result, one more copy of it per call.
"""

from harness import get_method, register_method

_vmap = get_method("vmap")


def copied_vmap(case):
    return {name: grad.clone() for name, grad in _vmap(case).items()}


register_method("vmap", copied_vmap, replace=True)
