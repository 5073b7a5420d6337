"""Measure how far each method is from the float64 oracle: the numbers behind the tolerance table.

    python -m harness.calibrate --seeds 3 [--check norms]

runs every CPU cell of the default oracle grid (``--check norms``: of the per-sample norms
grid), skipping support-matrix failures, for each seed and prints, per precision and model
numerics (smooth or with kinks) and method, the worst norm-wise relative error seen and where.
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import torch

from harness.case import build_case
from harness.clipping import per_sample_norms
from harness.compare import compare
from harness.errors import MethodUnavailable
from harness.grid import oracle_cells, quantity_cells
from harness.models import MODELS
from harness.oracle import oracle
from harness.runner import run_method, run_norms
from harness.tolerances import Tolerance

_NO_BOUND = Tolerance(rtol=1.0, atol=0.0)


def _per_sample(check: str, cell, case, seed: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The method's result and the oracle's, as per-sample dicts that :func:`compare` takes."""
    reference = oracle(cell.model, cell.batch_size, seed)
    if check == "grads":
        return run_method(cell.method, case), reference
    return {"||g||": run_norms(cell.method, case)[:, None]}, {"||g||": per_sample_norms(reference)[:, None]}


def measure(seeds: int, check: str = "grads") -> dict[tuple[str, str, str], tuple[float, str]]:
    """Worst relative error per (precision, model kind, method), with the cell it came from."""
    worst: dict[tuple[str, str, str], tuple[float, str]] = defaultdict(lambda: (0.0, ""))
    cells = oracle_cells() if check == "grads" else quantity_cells(check)
    for cell in cells:
        if cell.device != "cpu" or cell.slow or cell.expected is not None:
            continue
        kind = MODELS[cell.model].numerics
        for seed in range(seeds):
            case = build_case(cell.model, cell.batch_size, cell.precision, cell.device, cell.loss_reduction, seed)
            try:
                result, reference = _per_sample(check, cell, case, seed)
            except MethodUnavailable:
                continue
            rel = compare(result, reference, _NO_BOUND).max_rel_err
            key = (cell.precision, kind, cell.method)
            if rel > worst[key][0]:
                worst[key] = (rel, f"{cell.id} seed {seed}")
    return dict(worst)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds per cell (default 3)")
    parser.add_argument("--check", choices=("grads", "norms"), default="grads", help="what to measure (default grads)")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rows = sorted(measure(args.seeds, args.check).items())
    print(f"torch {torch.__version__}, {args.check}, {args.seeds} seed(s) per cell")
    print(f"{'precision':9} {'models':7} {'method':17} {'worst rel':>10}  where")
    for (precision, kind, method), (rel, where) in rows:
        print(f"{precision:9} {kind:7} {method:17} {rel:10.2e}  {where}")


if __name__ == "__main__":
    main()
