"""Property suite: Hypothesis draws layers and shapes; every method is checked against the oracle.

Profiles (``--hypothesis-profile``, registered by the plugin): ``psg-ci`` (the default: the same
draws on every run and machine), ``psg-dev`` (fresh draws) and ``psg-nightly``. A falsifying
example is printed as a ``Problem(...)``; ``check_drawn(Problem(...), method, precision)``
reproduces it. A test whose every example failed as the support matrix expects shows as XFAIL.
"""

from harness.checking.checks import check_property_trial
from harness.pytest_plugin import parametrize


@parametrize("property")
def test_property(trial):
    check_property_trial(trial)
