"""Measure how far each method is from the float64 oracle: the numbers behind the tolerance table.

    python -m harness measure-tolerances --seeds 3 [--check norms]

runs every CPU trial of the default grid of a quantity (``grads``: the oracle grid; ``norms``,
``clipped``: theirs), skipping support-matrix failures, for each seed and prints, per precision,
model numerics and method, the worst norm-wise relative error seen and where.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from collections.abc import Sequence

import torch

from harness.checking.runner import run
from harness.checking.trials import oracle_trials, quantity_trials
from harness.core.distance import distance
from harness.core.errors import MethodUnavailable
from harness.core.tolerances import Tolerance
from harness.methods import clip_eps, gives_itself
from harness.problems.build import build_case
from harness.problems.zoo import MODELS
from harness.quantities import QUANTITIES
from harness.reference.oracle import oracle

_NO_BOUND = Tolerance(rtol=1.0, atol=0.0)


def measure(seeds: int, check: str = "grads") -> dict[tuple[str, str, str], tuple[float, str]]:
    """Worst relative error per (precision, model numerics, method), with the trial it came from."""
    quantity = QUANTITIES[check]
    worst: dict[tuple[str, str, str], tuple[float, str]] = defaultdict(lambda: (0.0, ""))
    trials = oracle_trials() if check == "grads" else quantity_trials(check)
    for trial in trials:
        if trial.device != "cpu" or trial.slow or trial.expected is not None:
            continue
        for seed in range(seeds):
            case = build_case(trial.model, trial.batch_size, trial.precision, trial.device, trial.loss_reduction, seed)
            grads = oracle(trial.model, trial.batch_size, seed)
            quantity.prepare(case, grads)
            try:
                result = run(trial.method, check, case)
            except MethodUnavailable:
                continue
            eps = clip_eps(trial.method) if check in gives_itself(trial.method) else 0.0
            reference = quantity.reference(grads, case, eps)
            rel = distance(quantity.per_sample(result), quantity.per_sample(reference), _NO_BOUND).max_rel_err
            key = (trial.precision, MODELS[trial.model].numerics, trial.method)
            if rel > worst[key][0]:
                worst[key] = (rel, f"{trial.id} seed {seed}")
    return dict(worst)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m harness measure-tolerances``: print the worst errors."""
    parser = argparse.ArgumentParser(prog="python -m harness measure-tolerances", description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds per trial (default 3)")
    parser.add_argument("--check", choices=list(QUANTITIES), default="grads", help="the quantity to measure (default grads)")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    rows = sorted(measure(args.seeds, args.check).items())
    print(f"torch {torch.__version__}, {args.check}, {args.seeds} seed(s) per trial, {torch.get_num_threads()} thread(s)")
    print(f"{'precision':9} {'models':11} {'method':18} {'worst rel':>10}  where")
    for (precision, kind, method), (rel, where) in rows:
        print(f"{precision:9} {kind:11} {method:18} {rel:10.2e}  {where}")
    return 0
