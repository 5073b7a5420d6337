"""The seed documents' correctness claims, reproduced on today's APIs (see ../shared/seeds/README.md).

Each seed builds SimpleCNN (or ResNet18 with GroupNorm) from ``torch.manual_seed(0)``, draws a
batch with the global RNG, and compares a fast method to the loop element-wise with its own
tolerance. Seeds ran on CUDA; these run on the CPU (the ``cuda`` variants on a GPU box).
"""

from __future__ import annotations

import functools
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from harness.core.distance import distance
from harness.core.tolerances import tolerance_for
from harness.problems.zoo import SimpleCNN, resnet18_gn, resnet18_gn_no_inplace

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=[pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available on this machine")],
    ),
]


def seed_setup(device: str, batch_size: int = 64):
    """The tutorials' set-up: seed 0, SimpleCNN, a random MNIST-sized batch."""
    torch.manual_seed(0)
    model = SimpleCNN().to(device)
    data = torch.randn(batch_size, 1, 28, 28, device=device)
    targets = torch.randint(10, (batch_size,), device=device)
    return model, data, targets


def tutorial_loop(model, data, targets, loss_fn=F.nll_loss):
    """The tutorials' ``compute_sample_grads``: one forward and ``autograd.grad`` per sample."""
    params = list(model.parameters())
    grads = [
        torch.autograd.grad(loss_fn(model(data[i : i + 1]), targets[i : i + 1]), params) for i in range(len(data))
    ]
    return [torch.stack(shards) for shards in zip(*grads, strict=True)]


def legacy_functorch_grads(model, data, targets, loss_fn=F.nll_loss):
    """Seeds 000/002: ``functorch.make_functional_with_buffers`` + ``vmap(grad)``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        functorch = pytest.importorskip("functorch", reason="the installed torch has no functorch API")
        fmodel, params, buffers = functorch.make_functional_with_buffers(model)

        def compute_loss(params, buffers, sample, target):
            return loss_fn(fmodel(params, buffers, sample.unsqueeze(0)), target.unsqueeze(0))

        return functorch.vmap(functorch.grad(compute_loss), in_dims=(None, None, 0, 0))(params, buffers, data, targets)


def torch_func_grads(model, data, targets, loss_fn=F.nll_loss):
    """Seed 001: ``functional_call`` + ``vmap(grad)`` from ``torch.func``."""
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v.detach() for k, v in model.named_buffers()}

    def compute_loss(params, buffers, sample, target):
        return loss_fn(functional_call(model, (params, buffers), (sample.unsqueeze(0),)), target.unsqueeze(0))

    return list(vmap(grad(compute_loss), in_dims=(None, None, 0, 0))(params, buffers, data, targets).values())


def elementwise_outcome(loop, fast, *, atol: float, rtol: float) -> dict[str, float | bool]:
    """A seed's own element-wise claim, measured: the worst ``|fast - loop|`` and whether
    ``allclose(fast, loop, atol, rtol)`` holds for every parameter.

    Recorded, never asserted: in float32 a few ReLU/max-pool kinks take different branches in the
    batched and the per-sample convolution, and which ones depends on the CPU's kernels (oneDNN
    picks them per instruction set), so the claim holds on some machines and not on others.
    """
    holds = all(torch.allclose(f, e, atol=atol, rtol=rtol) for e, f in zip(loop, fast, strict=True))
    worst = max((f - e).abs().max().item() for e, f in zip(loop, fast, strict=True))
    return {"seed_max_abs_diff": worst, "seed_claim_holds": holds}


@functools.cache
def seed_loops(device: str) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
    """The seeds' set-up's float64 oracle (on the CPU) and its float32 loop on ``device``: the
    same for the three seeds that share it, so computed once (each is 64 forwards and backwards)."""
    model, data, targets = seed_setup(device)
    names = [name for name, _ in model.named_parameters()]
    oracle_model = SimpleCNN()
    oracle_model.load_state_dict(model.state_dict())
    oracle = dict(zip(names, tutorial_loop(oracle_model.double(), data.cpu().double(), targets.cpu()), strict=True))
    return oracle, [g.detach() for g in tutorial_loop(model, data, targets)]


def check_seed_claim(psg_record, method: str, device: str, fast, *, atol: float, rtol: float) -> None:
    """A seed's claim: its fast method matches its loop element-wise at its own tolerance.

    Asserted is what holds on every machine: the fast method and the seed's own float32 loop are
    each within the tolerance table's float32 bound of the float64 oracle. The element-wise claim
    itself is recorded (JUnit properties ``seed_max_abs_diff``, ``seed_claim_holds``, shown by
    ``python -m harness report``) and printed.
    """
    model, data, targets = seed_setup(device)
    names = [name for name, _ in model.named_parameters()]
    result = [g.detach() for g in fast(model, data, targets)]
    oracle, loop = seed_loops(device)
    bound = tolerance_for("float32", "kinks")
    for label, grads in ((method, result), ("the seed's float32 loop", loop)):
        comparison = distance(dict(zip(names, grads, strict=True)), oracle, bound)
        assert comparison.ok, f"{label} differs from the float64 oracle: {comparison.worst}"
    outcome = elementwise_outcome(loop, result, atol=atol, rtol=rtol)
    for name, value in outcome.items():
        psg_record(name, value)
    verdict = "holds" if outcome["seed_claim_holds"] else "does not hold"
    print(
        f"allclose(atol={atol}, rtol={rtol}) of the float32 loop and {method} {verdict} on this machine: "
        f"worst element difference {outcome['seed_max_abs_diff']:.3e}"
    )


@pytest.mark.parametrize("device", DEVICES)
def test_functorch_tutorial_script(psg_record, device):
    """Seed 000: loop vs legacy functorch on SimpleCNN, B=64, ``allclose(atol=1e-6, rtol=1e-6)``."""
    check_seed_claim(psg_record, "functorch", device, legacy_functorch_grads, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_torch_func_tutorial(psg_record, device):
    """Seed 001: loop vs ``functional_call`` + ``vmap``, ``allclose(atol=3e-3, rtol=1e-5)``."""
    check_seed_claim(psg_record, "vmap", device, torch_func_grads, atol=3e-3, rtol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_functorch_notebook(psg_record, device):
    """Seed 002: loop vs legacy functorch, ``allclose(atol=1e-3, rtol=1e-5)``."""
    check_seed_claim(psg_record, "functorch", device, legacy_functorch_grads, atol=1e-3, rtol=1e-5)


def ported_opacus_grads(model, images, targets):
    """Seeds 003/004's Opacus side, ported from 0.x ``PrivacyEngine(model, ...)`` to ``make_private``."""
    from opacus import PrivacyEngine
    from torch.utils.data import DataLoader, TensorDataset

    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = DataLoader(TensorDataset(images, targets), batch_size=len(images))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module, _, _ = PrivacyEngine().make_private(
            module=model, optimizer=optimizer, data_loader=loader, noise_multiplier=1.0, max_grad_norm=10000.0
        )
        F.cross_entropy(module(images), targets).backward()
    return [p.grad_sample.detach() for p in model.parameters()]


def ported_functorch_grads(model, images, targets):
    """Seeds 003/004's functorch side: ``make_functional`` + ``vmap(grad, (None, 0, 0))``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        functorch = pytest.importorskip("functorch", reason="the installed torch has no functorch API")
        func_model, weights = functorch.make_functional(model)

        def compute_loss(weights, image, target):
            return F.cross_entropy(func_model(weights, image.unsqueeze(0)), target.unsqueeze(0))

        return [g.detach() for g in functorch.vmap(functorch.grad(compute_loss), (None, 0, 0))(weights, images, targets)]


@pytest.mark.parametrize(
    "batch_size", [8, pytest.param(128, marks=pytest.mark.slow)], ids=lambda b: f"B{b}"
)
def test_functorch_vs_opacus_benchmark_against_the_oracle(batch_size):
    """Seeds 003/004: ResNet18 (BN->GN), functorch vs Opacus; its TODO asks for a source of truth.

    Both are compared norm-wise to the float64 loop and to each other on up to 16 samples spread
    over the batch; the TODO's own element-wise ``allclose(rtol=1e-5)`` is what reported them as
    different. Opacus' hooks reject torchvision's in-place residual add and ReLU today (see the
    support matrix), so its side uses the same weights in resnet18_gn_noinplace.
    """
    torch.manual_seed(0)
    model_functorch = resnet18_gn()
    images = torch.randn(batch_size, 3, 32, 32)
    targets = torch.randint(0, 10, (batch_size,))
    torch.manual_seed(0)
    model_opacus = resnet18_gn_no_inplace()
    for p_f, p_o in zip(model_functorch.parameters(), model_opacus.parameters(), strict=True):
        assert torch.equal(p_f, p_o)

    names = [name for name, _ in model_functorch.named_parameters()]
    picked = torch.linspace(0, batch_size - 1, min(batch_size, 16)).round().long().unique()
    oracle_model = resnet18_gn_no_inplace()
    oracle_model.load_state_dict(model_functorch.state_dict())
    oracle_model.double()
    oracle = dict(zip(names, tutorial_loop(oracle_model, images[picked].double(), targets[picked], F.cross_entropy), strict=True))

    tol = tolerance_for("float32", "kinks")
    # Keep only the picked samples of each result, so the two full results never coexist in memory.
    functorch_result = [g[picked] for g in ported_functorch_grads(model_functorch, images, targets)]
    opacus_result = [g[picked] for g in ported_opacus_grads(model_opacus, images, targets)]
    for label, result in (("functorch", functorch_result), ("opacus", opacus_result)):
        comparison = distance(dict(zip(names, result, strict=True)), oracle, tol)
        assert comparison.ok, f"{label} differs from the float64 oracle: {comparison.worst}"
        print(f"B={batch_size}: {label} vs float64 oracle, worst relative error {comparison.max_rel_err:.2e}")
    todo_disagreements = [
        n for n, r, e in zip(names, functorch_result, opacus_result, strict=True) if not torch.allclose(r, e, rtol=1e-5)
    ]
    agreement = distance(dict(zip(names, functorch_result, strict=True)), dict(zip(names, opacus_result, strict=True)), tol)
    assert agreement.ok, f"functorch and Opacus disagree norm-wise: {agreement.worst}"
    print(
        f"B={batch_size}: functorch vs Opacus, worst relative difference {agreement.max_rel_err:.2e}; "
        f"the TODO's allclose(rtol=1e-5) flags {len(todo_disagreements)}/{len(names)} parameters"
    )
