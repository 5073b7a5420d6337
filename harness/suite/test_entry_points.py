"""The entry points users call: ``PrivacyEngine.make_private`` in each ``grad_sample_mode`` at noise 0.

Ids read ``test_make_private_step[mlp-B7-ghost-memory-manager]`` (the model, the logical batch,
the mode, how it trains) and ``test_make_private_leaves_nothing[mlp-ghost]``: the step and the
leftovers are two tests, so that state left behind never hides a wrong step, nor the reverse. The
default run keeps the mlp; ``-m slow`` runs the other models and a sum loss.
"""

import pytest

from harness.checking.entry_points import check_leftovers, check_step, entry_point_trials
from harness.pytest_plugin import expected_marks


def _params(check: str) -> list:
    return [
        pytest.param(trial, id=trial.id, marks=expected_marks(trial.expected, trial.slow))
        for trial in entry_point_trials()
        if trial.check == check
    ]


@pytest.mark.parametrize("entry_trial", _params("step"))
def test_make_private_step(entry_trial, psg_record):
    psg_record("max_rel_err", check_step(entry_trial).max_rel_err)


@pytest.mark.parametrize("entry_trial", _params("leftovers"))
def test_make_private_leaves_nothing(entry_trial):
    check_leftovers(entry_trial)
