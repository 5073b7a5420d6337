"""Every registered method against the float64 loop, on every case of the grid."""

from harness.checks import check_oracle


def test_matches_oracle(oracle_cell, record_property):
    record_property("max_rel_err", check_oracle(oracle_cell).max_rel_err)
