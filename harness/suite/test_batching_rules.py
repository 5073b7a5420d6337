"""vmap must not fall back to its slow per-sample path on any model of the zoo."""

from harness.checking.checks import check_batching_rules
from harness.pytest_plugin import parametrize


@parametrize("batching-rule")
def test_vmap_has_batching_rules(trial):
    check_batching_rules(trial)
