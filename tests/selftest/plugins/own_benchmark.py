"""A plugin with its own method, its own model and its own benchmark cases: what a user's plugin
adds to the benchmarks, and an unrelated plugin for the guards' calibration (it replaces no
built-in method or model, so no built-in benchmark may move when it is loaded).

    PYTHONPATH=tests/selftest/plugins python -m pytest -p own_benchmark -m benchmark --instructions -k tiny_mlp
"""

from torch import nn

from harness import get_method, register_method
from harness.benchmarks.cases import register_benchmark_case
from harness.problems.zoo import ModelSpec, register_model, vectors

_vmap = get_method("vmap")


def tiny_mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 3))


register_model(ModelSpec("tiny_mlp", tiny_mlp, vectors(6, classes=3), numerics="smooth"))
#: timed at B=4 and B=32, and counted under --instructions at B=4
register_benchmark_case("tiny_mlp", (4,), counted=True)
register_benchmark_case("tiny_mlp", (32,))


@register_method("vmap-copy")
def vmap_copy(case):
    """vmap's per-sample gradients, copied."""
    return {name: grad.clone() for name, grad in _vmap(case).items()}
