"""The DP step on a torch.distributed process group, against the oracle's clipped step over the whole batch.

Ids read ``test_distributed_step_matches_oracle[gloo-w3-mlp-B9-shares1+3+5-dpddp-ghost]``: the
backend, the world size, the model and whole batch, each rank's share, the wrapper and Opacus'
``grad_sample_mode`` (then ``per_layer``, ``sum``, ``noise1`` where they apply). The default run
keeps :data:`~harness.checking.distributed.DEFAULT_TRIAL`; ``-m distributed`` runs the rest.
"""

import pytest

from harness.checking.distributed import DEFAULT_TRIAL, DistributedTrial, check_distributed, distributed_trials


def _marks(trial: DistributedTrial) -> list[pytest.MarkDecorator]:
    marks = [] if trial == DEFAULT_TRIAL else [pytest.mark.distributed]
    return marks + ([pytest.mark.cuda] if trial.device == "cuda" else [])


@pytest.mark.psg
@pytest.mark.parametrize("distributed_trial", [pytest.param(t, id=t.id, marks=_marks(t)) for t in distributed_trials()])
def test_distributed_step_matches_oracle(distributed_trial, psg_record):
    comparison = check_distributed(distributed_trial)
    if comparison is not None:
        psg_record("max_rel_err", comparison.max_rel_err)
