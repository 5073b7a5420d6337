"""Every registered method against the float64 loop, on every case of the grid."""

from harness.checks import check_oracle


def test_matches_oracle(oracle_cell):
    check_oracle(oracle_cell)
