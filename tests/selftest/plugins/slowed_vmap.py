"""A deliberately slowed ``vmap``, to calibrate the benchmark compare step.

    PYTHONPATH=tests/selftest/plugins PSG_SLOWDOWN=0.25 python -m pytest -p slowed_vmap -m benchmark ...

replaces the built-in ``vmap`` (DESIGN.md's ``replace=True``) with one that, after computing the
right result, keeps the core busy for ``PSG_SLOWDOWN`` times the time it took: a slowdown of that
fraction. It spins rather than sleeps: ``time.sleep`` overshot by about 0.09 ms here, +4% on
mlp's 2.3 ms call, and a sleeping process leaves the core to others as slower code would not.
"""

import os
import time

from harness import get_method, register_method

_vmap = get_method("vmap")
_SLOWDOWN = float(os.environ.get("PSG_SLOWDOWN", "0.25"))


def slowed_vmap(case):
    start = time.perf_counter()
    result = _vmap(case)
    until = time.perf_counter() + _SLOWDOWN * (time.perf_counter() - start)
    while time.perf_counter() < until:
        pass
    return result


register_method("vmap", slowed_vmap, replace=True)
