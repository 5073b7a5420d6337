"""Property suite: Hypothesis draws layers and shapes; every method is checked against the oracle.

Profiles (``--hypothesis-profile``, registered in ``conftest.py``): ``ci`` (the default: the same
draws on every run and machine), ``dev`` (fresh draws) and ``nightly``. A falsifying example is printed
as a ``Problem(...)``; ``check_drawn(Problem(...), method, precision)`` reproduces it.
"""

import pytest

from harness.checks import check_property
from harness.errors import MethodUnavailable


def test_property(property_cell):
    try:
        outcomes = check_property(property_cell)
    except MethodUnavailable as exc:
        pytest.skip(f"method {property_cell.method!r} is unavailable here: {exc}")
    if outcomes and None not in outcomes:
        reasons = "; ".join(sorted({row.describe() for row in outcomes}))
        pytest.xfail(f"every drawn example failed as the support matrix expects: {reasons}")
