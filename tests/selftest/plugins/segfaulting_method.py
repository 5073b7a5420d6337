"""A method that kills its process on purpose (SIGSEGV), on one model only, to test that a crash
is that test's failure naming the signal and that the run goes on:

    PYTHONPATH=tests/selftest/plugins python -m pytest -p segfaulting_method -n 1 --psg-methods segfault ...
"""

import ctypes

from harness import get_method, register_method

_loop = get_method("loop")


def segfault(case):
    if case.model_name == "conv1d":
        ctypes.string_at(0)  # reads address 0: SIGSEGV
    return _loop(case)


register_method("segfault", segfault)
