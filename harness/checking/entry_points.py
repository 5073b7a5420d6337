"""The entry points users call, checked against the float64 oracle: ``PrivacyEngine.make_private``
in each ``grad_sample_mode`` (hooks, functorch, ew, ghost) at ``noise_multiplier=0``.

Two verdicts per model and mode, each its own test, so that neither hides the other:

- **the step**: the parameters move by ``lr`` times the oracle's clipped step of the logical batch
  at the ``max_grad_norm`` asked for (``sum_i g_i * min(1, C / (||g_i|| + 1e-6))``, divided by the
  batch size for a mean loss), whether the batch is trained in one piece (``one-batch``), split
  into physical batches by Opacus' ``BatchMemoryManager`` (``memory-manager``: B=7 in physical
  batches of 3, 2 and 2, one step), or accumulated by calling backward on several loader batches
  before one ``optimizer.step()`` (``accumulate``: B=6 in three loader batches of 2; Opacus divides
  a mean loss's sum by the expected batch size times the batches accumulated, here 6), or in one
  piece with the model left unwrapped (``unwrapped``: ``wrap_model=False``, Opacus 1.6 and later),
  or drawn by Poisson sampling, ``make_private``'s default (``poisson``: B=7 in a loader of batches
  of 3, so a sample rate of 1/3 and an expected batch size of 2, the first logical batch through
  ``BatchMemoryManager`` in physical batches of 1; the step is the clipped sum over the samples
  drawn divided by the expected batch size);
- **the leftovers**: after one step and ``to_standard_module()`` (unwrapped: the hooks'
  ``cleanup()``) the model is the one given, and carries nothing Opacus added (attributes on
  parameters or modules, hooks, a flipped ``requires_grad``; a frozen parameter keeps its value).
  ``.grad`` is training's own (Opacus' ``zero_grad`` keeps it, as zeros, by default) and is not a
  leftover.

A trial of a mode inherits its method's zoo rows (``opacus-ghost`` for ghost clipping: a model the
method cannot run, ``make_private`` cannot either), which come before the entry-point rows
(:mod:`harness.checking.support.entry_points`): that failure comes first.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from harness.checking.checks import as_expected
from harness.checking.runner import failing
from harness.checking.support import ExpectedFailure, expected_entry_point_failure
from harness.core.case import Case
from harness.core.clipping import clipped_sum, mid_bound, per_sample_norms
from harness.core.distance import Comparison, assert_close
from harness.core.errors import MethodLeftState
from harness.core.structure import ModelState
from harness.core.tolerances import tolerance_for
from harness.methods.opacus import GRAD_SAMPLE_MODES, OPACUS_CLIP_EPS, PrivateTraining, make_private
from harness.problems.build import build_case
from harness.problems.zoo import get_model
from harness.reference.oracle import oracle

#: The plain SGD step the DP optimizer wraps: the step is ``(before - after) / LR``.
LR = 0.5
#: ``BatchMemoryManager``'s largest physical batch: B=7 is split into 3, 2 and 2.
PHYSICAL_BATCH = 3
#: How many loader batches ``accumulate`` runs backward on before its one step.
ACCUMULATED_BATCHES = 3
#: ``poisson``: the loader's batches (a sample rate of 1/3 over B=7) and the physical batches.
POISSON_LOADER_BATCH, POISSON_PHYSICAL_BATCH = 3, 1


@dataclass(frozen=True)
class EntryPointTrial:
    """One ``make_private`` run: a zoo model, a ``grad_sample_mode``, how it trains, what is checked."""

    model: str
    mode: str
    path: str = "one-batch"
    check: str = "step"
    loss_reduction: str = "mean"
    slow: bool = False

    @property
    def method(self) -> str:
        """The method that runs the same Opacus path on its modules (``opacus-ghost``)."""
        return GRAD_SAMPLE_MODES[self.mode]

    @property
    def wrap(self) -> bool:
        """Whether ``make_private`` wraps the model (all paths but ``unwrapped``)."""
        return self.path != "unwrapped"

    @property
    def batch_size(self) -> int:
        """The logical batch: 6 where it is accumulated over three loader batches of 2, else 7."""
        return 2 * ACCUMULATED_BATCHES if self.path == "accumulate" else 7

    @property
    def loader_batch_size(self) -> int:
        """The batches of the data loader ``make_private`` is given."""
        if self.path == "poisson":
            return POISSON_LOADER_BATCH
        return self.batch_size // ACCUMULATED_BATCHES if self.path == "accumulate" else self.batch_size

    @property
    def divisor(self) -> int:
        """What Opacus divides a mean loss's clipped sum by: the logical batch, or under Poisson
        sampling the expected batch size ``int(B / len(loader))`` (``make_private``'s formula)."""
        if self.path != "poisson":
            return self.batch_size
        return int(self.batch_size / math.ceil(self.batch_size / self.loader_batch_size))

    @property
    def id(self) -> str:
        """``mlp-B7-ghost-memory-manager[-sum]`` for a step, ``mlp-ghost[-unwrapped]`` for the leftovers."""
        if self.check == "step":
            parts = [self.model, f"B{self.batch_size}", self.mode, self.path]
        else:
            parts = [self.model, self.mode] + ([] if self.path == "one-batch" else [self.path])
        if self.loss_reduction != "mean":
            parts.append(self.loss_reduction)
        return "-".join(parts)

    @property
    def expected(self) -> ExpectedFailure | None:
        """The support-matrix row this trial is expected to fail by, if any."""
        return expected_entry_point_failure(self.method, self.model, self.path, self.check)


def _where(trial: EntryPointTrial) -> str:
    return f"make_private(grad_sample_mode={trial.mode!r}) on {trial.model} (B={trial.batch_size}, {trial.path}, {trial.loss_reduction} loss)"


def train(private: PrivateTraining, path: str) -> list[torch.Tensor]:
    """One logical batch as a training loop runs it on ``path`` (see the module's notes); the
    inputs of the physical batches trained on, in order."""
    seen = []
    if path in ("memory-manager", "poisson"):
        with private.physical_batches(POISSON_PHYSICAL_BATCH if path == "poisson" else PHYSICAL_BATCH) as loader:
            for inputs, targets in loader:
                seen.append(inputs)
                private.backward(inputs, targets)
                if private.step():
                    break
        return seen
    for inputs, targets in private.data_loader:
        seen.append(inputs)
        private.backward(inputs, targets)
        if path != "accumulate":
            private.step()
    if path == "accumulate":
        private.step()
    return seen


#: How a trial trains once ``make_private`` returned: the inputs it trained on (the self-tests swap in wrong ones).
Training = Callable[[PrivateTraining, str], list[torch.Tensor]]


def _drawn(inputs: torch.Tensor, seen: list[torch.Tensor]) -> list[int]:
    """Which samples of the case's batch the physical batches ``seen`` hold, by their inputs."""
    rows = torch.cat(seen) if seen else inputs[:0]
    return [int((inputs == row).flatten(1).all(dim=1).nonzero()[0]) for row in rows]


def _trained(
    trial: EntryPointTrial, case: Case, max_grad_norm: float, training: Training
) -> tuple[PrivateTraining, list[int]]:
    """``make_private`` over the case's model, then one logical batch of training; the samples it drew."""
    __tracebackhide__ = True
    where = _where(trial)
    loss = get_model(trial.model).loss
    private = failing(
        where,
        lambda: make_private(
            case, loss, trial.mode, max_grad_norm, trial.loader_batch_size, LR, trial.wrap, trial.path == "poisson"
        ),
    )
    seen = failing(where, lambda: training(private, trial.path))
    return private, _drawn(case.inputs, seen)


def _case(trial: EntryPointTrial) -> Case:
    return build_case(trial.model, trial.batch_size, "float64", "cpu", trial.loss_reduction)


def check_step(trial: EntryPointTrial, training: Training = train) -> Comparison:
    """The step ``make_private``'s optimizer takes equals ``LR`` times the oracle's clipped step over
    the logical batch, at a ``max_grad_norm`` that clips the larger half of the samples, within
    the tolerance table's float64 bound. Raises :class:`MethodUnavailable` where the installed
    Opacus lacks the mode."""
    __tracebackhide__ = True
    with as_expected(trial.expected):
        grads = oracle(trial.model, trial.batch_size)
        bound = mid_bound(per_sample_norms(grads))
        case = _case(trial)
        before = {name: p.detach().clone() for name, p in case.trainable_parameters().items()}
        _, drawn = _trained(trial, case, bound, training)
        scale = trial.divisor if trial.loss_reduction == "mean" else 1
        step = {name: ((before[name] - p.detach()) * scale / LR).unsqueeze(0) for name, p in case.trainable_parameters().items()}
        mine = {name: g[drawn] for name, g in grads.items()}
        reference = {name: g.unsqueeze(0) for name, g in clipped_sum(mine, bound, OPACUS_CLIP_EPS).items()}
        over = f" over the samples drawn, {drawn}," if trial.path == "poisson" else ""
        where = f"{_where(trial)}, its step times {scale / LR:g} against the clipped step{over} with C = {bound:.4g},"
        return assert_close(step, reference, tolerance_for("float64", get_model(trial.model).numerics), where)


def _module_attributes(model: torch.nn.Module) -> dict[str, set[str]]:
    return {name: set(vars(module)) for name, module in model.named_modules()}


def check_leftovers(trial: EntryPointTrial, training: Training = train) -> None:
    """After one step and ``to_standard_module()`` (unwrapped: ``cleanup()``) the model is the one
    given to ``make_private`` and carries nothing Opacus added: no attributes on its parameters or
    modules, no hooks, no flipped ``requires_grad``, its frozen parameters unchanged. Raises
    :class:`MethodLeftState` naming what is left."""
    __tracebackhide__ = True
    with as_expected(trial.expected):
        grads = oracle(trial.model, trial.batch_size)
        case = _case(trial)
        model = case.model
        state = ModelState.of(model)
        attributes = _module_attributes(model)
        frozen = {name: p.detach().clone() for name, p in model.named_parameters() if not p.requires_grad}
        private, _ = _trained(trial, case, mid_bound(per_sample_norms(grads)), training)
        where = f"{_where(trial)}, then {'to_standard_module()' if trial.wrap else 'cleanup()'},"
        plain = failing(where, private.to_standard_module)
        if plain is not model:
            raise MethodLeftState(f"{where} returned a {type(plain).__name__}, not the model given to make_private")
        problems = state.left_behind(model)
        added = {name: sorted(set(vars(module)) - attributes.get(name, set())) for name, module in model.named_modules()}
        problems += [f"attributes {', '.join(names)} on module {name or '(the model)'}" for name, names in added.items() if names]
        params = dict(model.named_parameters())
        changed = [name for name, value in frozen.items() if not torch.equal(params[name].detach(), value)]
        if changed:
            problems.append(f"frozen parameters changed: {', '.join(changed)}")
        if problems:
            raise MethodLeftState(f"{where} left state behind on the model: {'; '.join(problems)}")


#: The models of the default run's trials; the rest of the grid runs under ``-m slow``.
DEFAULT_MODELS = ("mlp",)
#: The models of the ``slow`` trials: the zoo's small models Opacus' modes can run, with a
#: convolution, a language model over padded sequences, frozen, tied and own parameters.
SLOW_MODELS = ("smooth_cnn", "lm_padded", "frozen_mlp", "tied_lm", "own_param")
PATHS = ("one-batch", "memory-manager", "accumulate", "unwrapped", "poisson")
#: The paths the sum loss runs on (the mlp, under slow): one batch, and the two that split it, where
#: a mean loss is divided by the whole batch and a sum loss by nothing.
SUM_PATHS = ("one-batch", "memory-manager", "accumulate")


def entry_point_trials() -> list[EntryPointTrial]:
    """The step on every path and the leftovers, in every mode, for the default models (a sum loss
    and the slow models under ``slow``)."""
    trials = []
    for model in (*DEFAULT_MODELS, *SLOW_MODELS):
        slow = model not in DEFAULT_MODELS
        for mode in GRAD_SAMPLE_MODES:
            trials += [EntryPointTrial(model, mode, path, slow=slow) for path in PATHS]
            trials += [EntryPointTrial(model, mode, path, "leftovers", slow=slow) for path in ("one-batch", "unwrapped")]
    trials += [EntryPointTrial("mlp", mode, path, loss_reduction="sum", slow=True) for mode in GRAD_SAMPLE_MODES for path in SUM_PATHS]
    return trials
