"""vmap must not fall back to its slow per-sample path on any model of the zoo."""

from harness.checks import check_batching_rules


def test_vmap_has_batching_rules(batching_rule_cell):
    check_batching_rules(batching_rule_cell)
