"""What DP-SGD consumes: per-sample gradient norms and the clipped, summed step, against the oracle's.

Ids read ``test_clipped_step_matches_oracle[cpu-float64-mlp-B7-sum-clip4of7-opacus-ghost]``: C is
chosen so that 4 of the 7 samples are clipped and 3 are not.
"""

from harness.checks import check_clipped, check_norms


def test_norms_match_oracle(norms_cell, record_property):
    record_property("max_rel_err", check_norms(norms_cell).max_rel_err)


def test_clipped_step_matches_oracle(clipped_cell, record_property):
    record_property("max_rel_err", check_clipped(clipped_cell).max_rel_err)
