"""A deliberately slowed ``vmap``, to calibrate the benchmark compare step.

    PYTHONPATH=tests/plugins PSG_SLOWDOWN=0.25 python -m pytest -p slowed_vmap -m benchmark ...

replaces the built-in ``vmap`` (DESIGN.md's ``replace=True``) with one that, after computing the
right result, sleeps for ``PSG_SLOWDOWN`` times the time it took: a slowdown of that fraction.
"""

import os
import time

from harness import get_method, register_method

_vmap = get_method("vmap")
_SLOWDOWN = float(os.environ.get("PSG_SLOWDOWN", "0.25"))


def slowed_vmap(case):
    start = time.perf_counter()
    result = _vmap(case)
    time.sleep(_SLOWDOWN * (time.perf_counter() - start))
    return result


register_method("vmap", slowed_vmap, replace=True)
