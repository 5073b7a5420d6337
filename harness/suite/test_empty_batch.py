"""An empty batch (B=0), as Poisson sampling draws one now and then: every method returns well-formed
empty per-sample gradients (and its own norms, and a clipped step of zeros) or says it cannot."""

from harness.checking.checks import check_empty_batch
from harness.pytest_plugin import parametrize


@parametrize("empty-batch")
def test_empty_batch(trial):
    check_empty_batch(trial)
