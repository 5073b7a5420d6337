"""Every registered method against the float64 loop, on every case of the grid."""

from harness.checking.checks import check_against_oracle
from harness.pytest_plugin import parametrize


@parametrize("oracle")
def test_matches_oracle(trial, psg_record):
    comparison = check_against_oracle(trial)
    psg_record("max_rel_err", comparison.max_rel_err)
    psg_record("max_projection", abs(comparison.projection.c))
