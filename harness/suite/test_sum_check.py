"""Per-sample gradients of a sum-reduced loss add up to the batch gradient (needs no oracle)."""

from harness.checking.checks import check_sum
from harness.pytest_plugin import parametrize


@parametrize("sum")
def test_sum_equals_batch_gradient(trial, psg_record):
    psg_record("max_rel_err", check_sum(trial).max_rel_err)
