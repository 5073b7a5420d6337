"""Measure how far each method is from the float64 oracle: the numbers behind the tolerance table.

    python -m harness measure-tolerances --seeds 3 [--check norms]

runs every CPU trial of the default grid of a quantity (``grads``: the oracle grid; ``norms``,
``clipped``: theirs), skipping support-matrix failures, for each seed and prints, per precision,
model numerics and method, the worst norm-wise relative error seen and where, and the worst
projection of the error onto the reference (``|<g - g*, g*> / <g*, g*>|``, per parameter over the batch).
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
from harness.core.precision import PRECISIONS
from harness.core.tolerances import Tolerance
from harness.methods import clip_eps, gives_itself
from harness.problems.build import build_case
from harness.problems.zoo import MODELS
from harness.quantities import QUANTITIES
from harness.reference.oracle import oracle

_NO_BOUND = Tolerance(rtol=1.0, atol=0.0)


Worst = dict[tuple[str, str, str], tuple[float, str]]


def measure(seeds: int, check: str = "grads", precisions: Sequence[str] = ()) -> tuple[Worst, Worst]:
    """Worst relative error, and worst projection along the reference, per (precision, model
    numerics, method), each with the trial it came from; ``precisions`` limits the trials (all by default)."""
    quantity = QUANTITIES[check]
    worst: Worst = defaultdict(lambda: (0.0, ""))
    leaning: Worst = defaultdict(lambda: (0.0, ""))
    trials = oracle_trials() if check == "grads" else quantity_trials(check)
    for trial in trials:
        if trial.device != "cpu" or trial.slow or trial.expected is not None:
            continue
        if precisions and trial.precision not in precisions:
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
            found = distance(quantity.per_sample(result), quantity.per_sample(reference), _NO_BOUND)
            key = (trial.precision, MODELS[trial.model].numerics, trial.method)
            if found.max_rel_err > worst[key][0]:
                worst[key] = (found.max_rel_err, f"{trial.id} seed {seed}")
            if abs(found.projection.c) > leaning[key][0]:
                leaning[key] = (abs(found.projection.c), f"{trial.id} seed {seed} {found.projection.param}")
    return dict(worst), dict(leaning)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m harness measure-tolerances``: print the worst errors."""
    parser = argparse.ArgumentParser(prog="python -m harness measure-tolerances", description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds per trial (default 3)")
    parser.add_argument("--check", choices=list(QUANTITIES), default="grads", help="the quantity to measure (default grads)")
    parser.add_argument(
        "--precision", action="append", default=[], choices=list(PRECISIONS), help="only this precision (repeatable; default all)"
    )
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    worst, leaning = measure(args.seeds, args.check, args.precision)
    print(f"torch {torch.__version__}, {args.check}, {args.seeds} seed(s) per trial, {torch.get_num_threads()} thread(s)")
    print(f"{'precision':9} {'models':11} {'method':18} {'worst rel':>10} {'along':>9}  where (rel; along)")
    for key, (rel, where) in sorted(worst.items()):
        precision, kind, method = key
        along, where_along = leaning.get(key, (0.0, ""))
        print(f"{precision:9} {kind:11} {method:18} {rel:10.2e} {along:9.2e}  {where}; {where_along}")
    return 0
