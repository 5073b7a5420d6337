"""Property suite: Hypothesis draws layers and shapes; every method is checked against the oracle.

Profiles (``--hypothesis-profile``, registered in ``conftest.py``): ``ci`` (the default: the same
draws on every run and machine), ``dev`` (fresh draws) and ``nightly``. A falsifying example is printed
as a ``Problem(...)``; ``check_drawn(Problem(...), method, precision)`` reproduces it.
"""

import pytest

from harness.checking.checks import check_property
from harness.pytest_plugin import parametrize


@parametrize("property")
def test_property(trial):
    outcomes = check_property(trial)
    if outcomes and None not in outcomes:
        reasons = "; ".join(sorted({row.describe() for row in outcomes}))
        pytest.xfail(f"every drawn example failed as the support matrix expects: {reasons}")
