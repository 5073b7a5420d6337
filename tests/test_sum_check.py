"""Per-sample gradients of a sum-reduced loss add up to the batch gradient (needs no oracle)."""

from harness.checks import check_sum


def test_sum_equals_batch_gradient(sum_cell, record_property):
    record_property("max_rel_err", check_sum(sum_cell).max_rel_err)
