"""Every registered method against the float64 loop, on every case of the grid."""

from harness.checking.checks import check_against_oracle
from harness.pytest_plugin import parametrize


@parametrize("oracle")
def test_matches_oracle(trial, record_property):
    record_property("max_rel_err", check_against_oracle(trial).max_rel_err)
