"""The DP step under torch.distributed, checked against the oracle's clipped step over the whole batch.

A distributed trial starts a process group of ``world_size`` processes (gloo on the CPU, NCCL with
one process per GPU), splits a case's batch into the ranks' shares, and runs one training step as
users run it with Opacus: ``PrivacyEngine.make_private`` over the model wrapped in Opacus'
``DifferentiallyPrivateDistributedDataParallel`` (or torch's ``DistributedDataParallel``), in one
``grad_sample_mode`` and clipping, then ``optimizer.step()`` with plain SGD.

What the step must equal (Opacus' distributed optimizers, read in 1.6.0): each rank clips its
samples' gradients and sums them (``p.summed_grad``), rank 0 alone adds the noise, each rank
divides by its ``expected_batch_size`` (``make_private`` sets it to the whole batch over the world
size), and the all-reduce sums over the ranks and divides by the world size (mean reduction). So
every rank ends with ``lr * sum_i clip(g_i) / B`` over all B samples of all ranks (``lr * sum``
for a sum-reduced loss): the oracle's clipped step of the whole batch. Per-layer clipping clips
each parameter's gradient to its own bound; ghost clipping gets the same step by two backward
passes.

The check names the rank and the parameter: each rank's own clipped sum (read before the noise)
against the oracle's over that rank's share, then each rank's step against the whole batch's, then
the ranks against each other. A rank that raises, dies or hangs fails the check naming the rank,
within the timeout; no process outlives the check.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import re
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from harness.core.clipping import clipped_sum, mid_bound, per_sample_norms
from harness.core.distance import Comparison, assert_close
from harness.core.errors import MethodFailed, MethodUnavailable, ToleranceError
from harness.core.releases import MAKE_PRIVATE_MODES, library
from harness.core.tolerances import Tolerance, tolerance_for
from harness.methods.opacus import OPACUS_CLIP_EPS, LossWithReduction
from harness.problems.build import build_case
from harness.problems.zoo import get_model
from harness.reference.oracle import oracle

#: The plain SGD step the DP optimizer wraps: the step is ``(before - after) / LR``.
LR = 0.5
#: How long a whole process group may take, start to end, before its ranks are killed.
TIMEOUT_S = 180.0
#: After one rank failed, how long the others get to finish before they are killed (they may wait
#: in a collective for the failed one).
GRACE_S = 5.0
#: The bounds on the noise a step carries, as a ratio of its measured standard deviation to one
#: rank's noise (``noise_multiplier * C / B``): over the mlp's 2058 entries the ratio's own spread
#: is 1.6%, and noise added on every one of two ranks makes it 1.41.
NOISE_RATIO_BOUNDS = (0.8, 1.2)

#: A function run on each rank's DP optimizer after ``make_private`` (the self-tests' wrong steps):
#: ``tamper(optimizer, rank, world_size)``. Must be picklable (a module-level function).
Tamper = Callable[[Any, int, int], None]


class RankFailed(MethodFailed):
    """A rank raised, died or did not finish within the timeout."""


@dataclass(frozen=True)
class DistributedTrial:
    """One distributed DP step: a model, a world size and split, an Opacus path."""

    world_size: int
    mode: str = "hooks"
    clipping: str = "flat"
    split: str = "even"
    wrapper: str = "dpddp"
    backend: str = "gloo"
    model: str = "mlp"
    loss_reduction: str = "mean"
    noise_multiplier: float = 0.0
    #: Each rank's number of samples where the split is even.
    even_share: int = 3

    @property
    def shares(self) -> tuple[int, ...]:
        """Each rank's number of samples: ``even_share`` each (even), or 1, 3, 5, ... (uneven)."""
        if self.split == "even":
            return (self.even_share,) * self.world_size
        return tuple(2 * rank + 1 for rank in range(self.world_size))

    @property
    def batch_size(self) -> int:
        """The whole batch, over all ranks."""
        return sum(self.shares)

    @property
    def device(self) -> str:
        """``cuda`` for NCCL, else ``cpu``."""
        return "cuda" if self.backend == "nccl" else "cpu"

    @property
    def id(self) -> str:
        """``gloo-w2-mlp-B6-shares3+3-dpddp-hooks[-per_layer][-sum][-noise1]``."""
        parts = [self.backend, f"w{self.world_size}", self.model, f"B{self.batch_size}"]
        parts += ["shares" + "+".join(map(str, self.shares)), self.wrapper, self.mode]
        if self.clipping != "flat":
            parts.append(self.clipping)
        if self.loss_reduction != "mean":
            parts.append(self.loss_reduction)
        if self.noise_multiplier:
            parts.append(f"noise{self.noise_multiplier:g}")
        return "-".join(parts)

    def missing(self) -> str | None:
        """Why this machine or the installed Opacus cannot run the trial, or None."""
        if self.backend == "nccl":
            if not torch.distributed.is_nccl_available():
                return "NCCL is not available in this torch build"
            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
            if count < self.world_size:
                return f"NCCL with {self.world_size} processes needs {self.world_size} CUDA devices; this machine has {count}"
        elif not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
            return "torch.distributed with gloo is not available in this torch build"
        try:
            opacus = library("opacus")
            MAKE_PRIVATE_MODES.require()  # the trial names its grad_sample_mode, which make_private took from 1.2
            from opacus.optimizers import get_optimizer_class

            get_optimizer_class(clipping=self.clipping, distributed=True, grad_sample_mode=self.mode)
        except MethodUnavailable as exc:
            return str(exc)
        except ValueError as exc:
            return f"Opacus {opacus.__version__} has no distributed {self.clipping} clipping in grad_sample_mode {self.mode!r}: {exc}"
        return None


@dataclass(frozen=True)
class Bounds:
    """The clipping bounds of a trial: one C (flat) or one per parameter (per-layer), in parameter order."""

    flat: float
    per_layer: tuple[float, ...]

    def for_opacus(self, clipping: str) -> float | list[float]:
        """``max_grad_norm`` as ``make_private`` takes it."""
        return list(self.per_layer) if clipping == "per_layer" else self.flat


def clipping_bounds(grads: Mapping[str, torch.Tensor]) -> Bounds:
    """Bounds that clip the larger half of the samples: over all parameters, and per parameter."""
    per_layer = tuple(mid_bound(per_sample_norms({name: g})) for name, g in grads.items())
    return Bounds(mid_bound(per_sample_norms(grads)), per_layer)


def clipped_step(grads: Mapping[str, torch.Tensor], bounds: Bounds, clipping: str) -> dict[str, torch.Tensor]:
    """The summed clipped step, Opacus' stabilizer included: flat, or each parameter to its own bound."""
    if clipping != "per_layer":
        return clipped_sum(grads, bounds.flat, OPACUS_CLIP_EPS)
    return {
        name: clipped_sum({name: g}, bound, OPACUS_CLIP_EPS)[name]
        for (name, g), bound in zip(grads.items(), bounds.per_layer, strict=True)
    }


@dataclass(frozen=True)
class RankResult:
    """What one rank ended with: its step (``(before - after) / LR``) and its own clipped sum."""

    rank: int
    step: dict[str, torch.Tensor]
    share_sum: dict[str, torch.Tensor]


def _record_share_sums(optimizer: Any, names: Mapping[torch.Tensor, str], into: dict[str, torch.Tensor]) -> None:
    """Copy each parameter's ``summed_grad`` (the rank's clipped sum) when the noise step begins:
    later steps divide and all-reduce ``p.grad``, which on ranks other than 0 is a view of it."""
    add_noise = optimizer.add_noise

    def recording_add_noise() -> None:
        for p in optimizer.params:
            into[names[p]] = p.summed_grad.detach().clone()
        add_noise()

    optimizer.add_noise = recording_add_noise


def _wrap(model: torch.nn.Module, trial: DistributedTrial, rank: int) -> torch.nn.Module:
    if trial.wrapper == "ddp":
        device_ids = [rank] if trial.backend == "nccl" else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    from opacus.distributed import DifferentiallyPrivateDistributedDataParallel

    return DifferentiallyPrivateDistributedDataParallel(model)


class _Ranks:
    """The files through which a rank reports to the parent, in a temporary folder: its result
    (``rank{r}.pt``), its error with the time it was raised (``rank{r}.err``) and the last stage
    it reached (``rank{r}.stage``)."""

    #: A rank's stages, in order: a rank that hangs is named by the earliest stage among the ranks.
    STAGES = ("started", "joined the group", "make_private", "forward and backward", "optimizer.step", "done")

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def path(self, rank: int, kind: str) -> str:
        return os.path.join(self.folder, f"rank{rank}.{kind}")

    def reach(self, rank: int, stage: str) -> None:
        with open(self.path(rank, "stage"), "w") as file:
            file.write(stage)

    def stage(self, rank: int) -> str:
        path = self.path(rank, "stage")
        if not os.path.exists(path):
            return "not started"
        with open(path) as file:
            return file.read()

    def write_error(self, rank: int, exc: BaseException) -> None:
        with open(self.path(rank, "err"), "w") as file:
            file.write(f"{time.time()!r}\n{type(exc).__name__}: {exc}\n\n{traceback.format_exc()}")

    def error(self, rank: int) -> tuple[float, str] | None:
        """When the rank raised, and what (the first line, then the traceback), or None."""
        path = self.path(rank, "err")
        if not os.path.exists(path):
            return None
        with open(path) as file:
            when, _, text = file.read().partition("\n")
        return float(when), text

    def result(self, rank: int) -> RankResult | None:
        path = self.path(rank, "pt")
        return RankResult(**torch.load(path)) if os.path.exists(path) else None


def _one_step(trial: DistributedTrial, rank: int, bounds: Bounds, tamper: Tamper | None, ranks: _Ranks) -> RankResult:
    """This rank's share of one DP step, as a user's training loop runs it."""
    from opacus import PrivacyEngine

    device = f"cuda:{rank}" if trial.backend == "nccl" else "cpu"
    case = build_case(trial.model, trial.batch_size, "float64", device, trial.loss_reduction)
    names = {p: name for name, p in case.model.named_parameters()}
    before = {name: p.detach().clone() for name, p in case.model.named_parameters()}
    whole_batch = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(case.inputs, case.targets), batch_size=trial.batch_size
    )
    criterion = LossWithReduction(get_model(trial.model).loss, trial.loss_reduction)
    ranks.reach(rank, "make_private")
    private = PrivacyEngine().make_private(
        module=_wrap(case.model, trial, rank),
        optimizer=torch.optim.SGD(case.model.parameters(), lr=LR),
        data_loader=whole_batch,
        **({"criterion": criterion} if trial.mode == "ghost" else {}),  # a release before 1.5 takes none
        noise_multiplier=trial.noise_multiplier,
        max_grad_norm=bounds.for_opacus(trial.clipping),
        poisson_sampling=False,
        grad_sample_mode=trial.mode,
        clipping=trial.clipping,
        loss_reduction=trial.loss_reduction,
    )
    model, optimizer = private[0], private[1]
    loss_fn = private[2] if trial.mode == "ghost" else criterion
    if tamper is not None:
        tamper(optimizer, rank, trial.world_size)
    share_sums: dict[str, torch.Tensor] = {}
    _record_share_sums(optimizer, names, share_sums)
    start = sum(trial.shares[:rank])
    mine = slice(start, start + trial.shares[rank])
    torch.manual_seed(1000 + rank)
    ranks.reach(rank, "forward and backward")
    loss_fn(model(case.inputs[mine]), case.targets[mine]).backward()
    ranks.reach(rank, "optimizer.step")
    optimizer.step()
    if not share_sums:
        raise RuntimeError("optimizer.step() never added noise: Opacus skipped the step")
    step = {name: ((before[name] - p.detach()) / LR).cpu() for name, p in case.model.named_parameters()}
    return RankResult(rank, step, {name: g.cpu() for name, g in share_sums.items()})


def _worker(rank: int, trial: DistributedTrial, bounds: Bounds, tamper: Tamper | None, folder: str) -> None:
    """A rank's process: join the group through a file store in ``folder``, run the step, report
    through :class:`_Ranks`."""
    ranks = _Ranks(folder)
    ranks.reach(rank, "started")
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")  # the libraries' notices, once per rank, would reach no report
    try:
        if trial.backend == "nccl":
            torch.cuda.set_device(rank)
        torch.distributed.init_process_group(
            trial.backend,
            init_method="file://" + os.path.join(folder, "store"),
            rank=rank,
            world_size=trial.world_size,
            timeout=datetime.timedelta(seconds=TIMEOUT_S),
        )
        ranks.reach(rank, "joined the group")
        try:
            result = _one_step(trial, rank, bounds, tamper, ranks)
        finally:
            torch.distributed.destroy_process_group()
        torch.save(dataclasses.asdict(result), ranks.path(rank, "pt"))
        ranks.reach(rank, "done")
    except BaseException as exc:
        ranks.write_error(rank, exc)
        raise SystemExit(1) from None


def _context() -> Any:
    """Where the ranks' processes come from: a fork server that imported torch, Opacus and this
    module once (a fresh interpreter, never a fork of the test process and its threads), so a rank
    starts in milliseconds instead of the seconds those imports take; spawn where there is none."""
    import multiprocessing

    if "forkserver" not in multiprocessing.get_all_start_methods():
        return torch.multiprocessing.get_context("spawn")
    context = torch.multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__, "opacus", "opacus.optimizers"])
    return context


def _wait(processes: list[Any], timeout_s: float) -> set[int]:
    """Wait until every rank ended, or one failed and the rest had :data:`GRACE_S` more, or the
    timeout ran out; kill what is left. Returns the ranks killed here."""
    deadline = time.monotonic() + timeout_s
    failed = False
    while time.monotonic() < deadline and any(p.exitcode is None for p in processes):
        if not failed and any(p.exitcode not in (None, 0) for p in processes):
            failed = True
            deadline = min(deadline, time.monotonic() + GRACE_S)
        time.sleep(0.05)
    killed = {rank for rank, process in enumerate(processes) if process.is_alive()}
    for rank in killed:
        processes[rank].kill()
    for process in processes:
        process.join()
    return killed


#: What a rank raises when a peer went away: a consequence, named only where no rank raised its own error.
_PEER_GONE = re.compile(r"Connection (closed|reset) by peer|remote worker crashing")


def _lost_a_peer(error: str) -> bool:
    return _PEER_GONE.search(error.partition("\n")[0]) is not None


def _culprit(trial: DistributedTrial, processes: list[Any], ranks: _Ranks, killed: set[int], timeout_s: float | None) -> RankFailed | None:
    """The error naming the rank that failed first, or None where every rank has a result. A rank
    that died (no error of its own, not killed here) comes first, then the earliest error (its peers
    fail after it, in a collective), then, after the timeout, the rank at the earliest stage (the
    others wait for it)."""
    name = f"{trial.world_size} ({trial.id})"
    for rank, process in enumerate(processes):
        code = process.exitcode
        if code != 0 and rank not in killed and ranks.error(rank) is None:
            how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
            return RankFailed(f"rank {rank} of {name} died ({how}) without a result, at stage {ranks.stage(rank)!r}")
    errors = {rank: error for rank in range(trial.world_size) if (error := ranks.error(rank)) is not None}
    if errors:
        rank = min(errors, key=lambda r: (_lost_a_peer(errors[r][1]), errors[r][0]))
        return RankFailed(f"rank {rank} of {name} raised {errors[rank][1]}")
    if killed:
        stages = {rank: ranks.stage(rank) for rank in range(trial.world_size)}
        order = ("not started", *_Ranks.STAGES)
        rank = min(killed, key=lambda r: (order.index(stages[r]), r))
        others = ", ".join(f"rank {r} at {stage!r}" for r, stage in stages.items() if r != rank)
        return RankFailed(
            f"rank {rank} of {name} did not finish within {timeout_s:g} s and was killed: it was at stage "
            f"{stages[rank]!r}, the furthest behind ({others})"
        )
    missing = next((rank for rank in range(trial.world_size) if ranks.result(rank) is None), None)
    if missing is not None:
        return RankFailed(f"rank {missing} of {name} ended without a result, at stage {ranks.stage(missing)!r}")
    return None


def run_distributed(
    trial: DistributedTrial, bounds: Bounds, tamper: Tamper | None = None, timeout_s: float = TIMEOUT_S
) -> list[RankResult]:
    """Run the trial's step on ``world_size`` new processes; every rank's result, in rank order.

    Raises :class:`RankFailed` naming the rank that raised, died or did not finish within
    ``timeout_s``; every process has ended before this returns.
    """
    __tracebackhide__ = True
    context = _context()
    with tempfile.TemporaryDirectory(prefix="psg-distributed-") as folder:
        ranks = _Ranks(folder)
        processes = [
            context.Process(target=_worker, args=(rank, trial, bounds, tamper, folder), daemon=True)
            for rank in range(trial.world_size)
        ]
        started: list[Any] = []
        try:
            for process in processes:
                process.start()
                started.append(process)
        finally:
            killed = _wait(started, timeout_s)
        failure = _culprit(trial, processes, ranks, killed, timeout_s)
        if failure is not None:
            raise failure
        return [ranks.result(rank) for rank in range(trial.world_size)]  # type: ignore[misc]


def _tolerance(trial: DistributedTrial) -> Tolerance:
    return tolerance_for("float64", get_model(trial.model).numerics)


def _as_batch_of_one(values: Mapping[str, torch.Tensor], scale: float = 1.0) -> dict[str, torch.Tensor]:
    return {name: (g.to(torch.float64) * scale).unsqueeze(0) for name, g in values.items()}


def _summed_form(trial: DistributedTrial) -> float:
    """What the step is multiplied by to give the summed clipped step: B for a mean-reduced loss."""
    return float(trial.batch_size) if trial.loss_reduction == "mean" else 1.0


def _check_noise(trial: DistributedTrial, result: RankResult, reference: Mapping[str, torch.Tensor], bounds: Bounds) -> None:
    """The step's difference from the noiseless one is one rank's noise: its standard deviation is
    ``noise_multiplier * C`` in the summed form, within :data:`NOISE_RATIO_BOUNDS`."""
    __tracebackhide__ = True
    scale = _summed_form(trial)
    expected_std = trial.noise_multiplier * bounds.flat
    noise = {name: result.step[name].to(torch.float64) * scale - reference[name] for name in reference}
    pooled = torch.cat([n.flatten() for n in noise.values()])
    ratio = float(pooled.pow(2).mean().sqrt()) / expected_std
    low, high = NOISE_RATIO_BOUNDS
    if not low <= ratio <= high:
        ratios = {name: float(n.pow(2).mean().sqrt()) / expected_std for name, n in noise.items()}
        worst = max(ratios, key=lambda name: abs(ratios[name] - 1.0))
        raise ToleranceError(
            f"rank {result.rank} of {trial.world_size} ({trial.id}): the step's noise is {ratio:.3f} times one rank's "
            f"(noise_multiplier * C = {expected_std:.3e} in the summed form, over {pooled.numel()} entries; bounds "
            f"{low}-{high}); farthest at parameter {worst} ({ratios[worst]:.3f} times): noise added on more than one "
            "rank, or on none"
        )


def check_distributed(
    trial: DistributedTrial, tamper: Tamper | None = None, timeout_s: float = TIMEOUT_S
) -> Comparison | None:
    """Run the trial on a process group and hold each rank's own clipped sum to the oracle's over
    its share, every rank's step to the oracle's clipped step over the whole batch (at the tolerance
    table's float64 bound; with noise, its noise to one rank's), and the ranks to each other.

    Returns rank 0's comparison with the oracle (None for a trial with noise). Raises
    :class:`MethodUnavailable` where the trial cannot run here, :class:`RankFailed` or
    :class:`ToleranceError` naming the rank (and the parameter) otherwise.
    """
    __tracebackhide__ = True
    missing = trial.missing()
    if missing is not None:
        raise MethodUnavailable(missing)
    grads = oracle(trial.model, trial.batch_size)
    bounds = clipping_bounds(grads)
    results = run_distributed(trial, bounds, tamper, timeout_s)
    tol = _tolerance(trial)
    start = 0
    for result, share in zip(results, trial.shares, strict=True):
        mine = {name: g[start : start + share] for name, g in grads.items()}
        where = f"rank {result.rank} of {trial.world_size} ({trial.id}), its clipped sum over samples {start}-{start + share - 1},"
        assert_close(_as_batch_of_one(result.share_sum), _as_batch_of_one(clipped_step(mine, bounds, trial.clipping)), tol, where)
        start += share
    reference = clipped_step(grads, bounds, trial.clipping)
    scale = _summed_form(trial)
    comparisons = []
    for result in results:
        if trial.noise_multiplier:
            _check_noise(trial, result, reference, bounds)
        else:
            where = f"rank {result.rank} of {trial.world_size} ({trial.id}), its step times {scale:g},"
            comparisons.append(assert_close(_as_batch_of_one(result.step, scale), _as_batch_of_one(reference), tol, where))
    for result in results[1:]:
        where = f"rank {result.rank} of {trial.world_size} ({trial.id}), its step against rank 0's,"
        try:
            assert_close(_as_batch_of_one(result.step), _as_batch_of_one(results[0].step), tol, where)
        except ToleranceError as exc:
            raise ToleranceError(f"the ranks end with different parameters: {exc}") from None
    return comparisons[0] if comparisons else None


#: The one trial of the default run: two processes, the mlp, hooks, flat clipping, two samples each
#: (the grid's own trials have three, so ``-m distributed`` runs every path without it).
DEFAULT_TRIAL = DistributedTrial(2, even_share=2)
#: Every ``grad_sample_mode`` Opacus may run distributed and both clippings; a pair the installed
#: release has no distributed optimizer for is skipped with Opacus' own error (:meth:`DistributedTrial.missing`).
PATHS = tuple((mode, clipping) for mode in ("hooks", "functorch", "ew", "ghost") for clipping in ("flat", "per_layer"))


def _world_sizes(backend: str) -> tuple[int, ...]:
    """gloo: two and three processes; NCCL: one per GPU (at least two, skipped where there are fewer)."""
    if backend == "gloo":
        return (2, 3)
    return (max(2, torch.cuda.device_count() if torch.cuda.is_available() else 0),)


def distributed_trials() -> list[DistributedTrial]:
    """The ``-m distributed`` grid, :data:`DEFAULT_TRIAL` first: every path over DP-DDP with even and
    uneven shares; flat clipping over torch's DDP (uneven shares); a sum-reduced loss; the noise
    of one rank (noise_multiplier 1)."""
    trials = [DEFAULT_TRIAL]
    for backend in ("gloo", "nccl"):
        for world in _world_sizes(backend):
            for split in ("even", "uneven"):
                trials += [DistributedTrial(world, mode, clipping, split, backend=backend) for mode, clipping in PATHS]
            trials += [DistributedTrial(world, mode, split="uneven", wrapper="ddp", backend=backend) for mode, clipping in PATHS if clipping == "flat"]
            trials += [DistributedTrial(world, mode, split="uneven", backend=backend, loss_reduction="sum") for mode in ("hooks", "ghost")]
            trials += [DistributedTrial(world, mode, split="uneven", backend=backend, noise_multiplier=1.0) for mode in ("hooks", "ghost")]
    return trials
