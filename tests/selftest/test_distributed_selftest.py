"""The distributed check catches a wrong combination of the ranks' steps, and a rank that raises,
dies or hangs, naming the rank (and the parameter where the step is wrong).

Each wrong step is a ``tamper`` run on every rank's Opacus DP optimizer after ``make_private``;
they run in the ranks' processes, so they are module-level functions.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
import types

import pytest
import torch

from harness import ToleranceError
from harness.checking.distributed import DistributedTrial, RankFailed, check_distributed

pytestmark = pytest.mark.distributed

TWO = DistributedTrial(2, split="uneven")
#: A rank's step names its parameters as the mlp does: ``0.weight`` ... ``4.bias``.
PARAMETER = r"worst at \d\.(weight|bias)"


def scale_by_the_whole_batch_on_every_rank(optimizer, rank, world_size):
    """Every rank divides by the whole group's batch instead of its own expected share of it."""
    optimizer.expected_batch_size *= world_size


def noise_on_every_rank(optimizer, rank, world_size):
    """Every rank adds the noise, not rank 0 alone."""
    from opacus.optimizers import DPOptimizer

    optimizer.add_noise = types.MethodType(DPOptimizer.add_noise, optimizer)


def _mean_over_ranks(optimizer):
    for p in optimizer.params:
        torch.distributed.all_reduce(p.grad, op=torch.distributed.ReduceOp.SUM)
        p.grad /= optimizer.world_size


def mean_over_ranks_where_a_sum_is_due(optimizer, rank, world_size):
    """The all-reduce averages over the ranks whatever the loss reduction (a sum is due for ``sum``)."""
    optimizer.reduce_gradients = types.MethodType(_mean_over_ranks, optimizer)


def _drop_own_samples(optimizer):
    for p in optimizer.params:
        p.summed_grad = torch.zeros_like(p)


def drop_the_last_ranks_samples(optimizer, rank, world_size):
    """The last rank's clipped samples never reach the sum."""
    if rank == world_size - 1:
        optimizer.clip_and_accumulate = types.MethodType(_drop_own_samples, optimizer)


def raise_on_rank_1(optimizer, rank, world_size):
    if rank == 1:
        raise RuntimeError("a deliberate error on rank 1")


def die_on_rank_1(optimizer, rank, world_size):
    if rank == 1:
        os.kill(os.getpid(), signal.SIGKILL)


def hang_on_rank_1(optimizer, rank, world_size):
    if rank == 1:
        time.sleep(600)


@pytest.mark.parametrize(
    ("trial", "wrong_step", "message"),
    [
        pytest.param(TWO, scale_by_the_whole_batch_on_every_rank, r"rank 0 of 2 .*its step times 4, differs", id="scale-on-every-rank"),
        pytest.param(
            DistributedTrial(3, split="uneven", loss_reduction="sum"),
            mean_over_ranks_where_a_sum_is_due,
            r"rank 0 of 3 .*-sum\), its step times 1, differs",
            id="mean-where-a-sum-is-due",
        ),
        pytest.param(TWO, drop_the_last_ranks_samples, r"rank 1 of 2 .*its clipped sum over samples 1-3, differs", id="rank-samples-dropped"),
    ],
)
def test_a_wrong_combination_of_the_ranks_steps_fails_naming_rank_and_parameter(trial, wrong_step, message):
    with pytest.raises(ToleranceError, match=message + r".*" + PARAMETER):
        check_distributed(trial, wrong_step)


def test_noise_on_every_rank_fails_naming_rank_and_parameter():
    trial = DistributedTrial(2, split="uneven", noise_multiplier=1.0)
    check_distributed(trial)
    with pytest.raises(ToleranceError, match=r"rank 0 of 2 .*noise is 1\.[3-5]\d* times one rank's.*farthest at parameter \d\.(weight|bias)"):
        check_distributed(trial, noise_on_every_rank)


@pytest.mark.parametrize(
    ("misbehaviour", "message", "timeout_s"),
    [
        (raise_on_rank_1, r"rank 1 of 2 .* raised RuntimeError: a deliberate error on rank 1", 120),
        (die_on_rank_1, r"rank 1 of 2 .* died \(signal 9\) without a result", 120),
        (hang_on_rank_1, r"rank 1 of 2 .* did not finish within 30 s and was killed", 30),
    ],
    ids=["raises", "dies", "hangs"],
)
def test_a_rank_that_fails_fails_the_check_naming_it_within_the_timeout(misbehaviour, message, timeout_s):
    start = time.monotonic()
    with pytest.raises(RankFailed, match=message):
        check_distributed(TWO, misbehaviour, timeout_s=timeout_s)
    assert time.monotonic() - start < timeout_s + 30
    assert multiprocessing.active_children() == [], "a rank outlived the check"

