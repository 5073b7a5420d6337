"""What DP-SGD consumes: per-sample gradient norms and the clipped, summed step, against the oracle's.

Ids read ``test_clipped_step_matches_oracle[cpu-float64-mlp-B7-sum-clip4of7-opacus-ghost]``: C is
chosen so that 4 of the 7 samples are clipped and 3 are not.
"""

from harness.checking.checks import check_against_oracle
from harness.pytest_plugin import parametrize


def check_and_record(trial, psg_record) -> None:
    comparison = check_against_oracle(trial)
    psg_record("max_rel_err", comparison.max_rel_err)
    psg_record("max_projection", abs(comparison.projection.c))


@parametrize("norms")
def test_norms_match_oracle(trial, psg_record):
    check_and_record(trial, psg_record)


@parametrize("clipped")
def test_clipped_step_matches_oracle(trial, psg_record):
    check_and_record(trial, psg_record)
