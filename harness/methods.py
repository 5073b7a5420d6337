"""The method registry and the built-in methods.

A method takes a :class:`~harness.case.Case` and returns one quantity (``returns``):

- ``"grads"`` (DESIGN.md's contract): ``{name: tensor (B, *param.shape)}`` for every parameter
  of ``case.model``, in the per-sample form: the gradient of the loss of a batch of one.
- ``"norms"``: a tensor ``(B,)``, each sample's gradient norm over all parameters, for methods
  that never materialize per-sample gradients (Opacus' ghost clipping, BackPACK's BatchL2Grad).
- ``"clipped"``: ``{name: tensor (*param.shape)}``, the noiseless DP-SGD step in summed form,
  ``sum_i g_i * min(1, C / (||g_i|| + clip_eps))`` for ``C = case.max_grad_norm``.

A method registered for grads also counts for norms and the clipped step: the harness derives
them from its gradients (:mod:`harness.clipping`). Every method must leave the model as it
found it.
"""

from __future__ import annotations

import contextlib
import copy
import re
import warnings
import weakref
from collections.abc import Callable, Iterator, Mapping

import torch

from harness.case import Case
from harness.errors import MethodUnavailable

Grads = Mapping[str, torch.Tensor]
MethodFn = Callable[[Case], Grads]
NormsFn = Callable[[Case], torch.Tensor]

#: What a method can return; see the module docstring.
QUANTITIES = ("grads", "norms", "clipped")

#: Per-sample-gradient methods (DESIGN.md's contract), by name.
METHODS: dict[str, MethodFn] = {}
#: Methods that return per-sample gradient norms without the gradients, by name.
NORM_METHODS: dict[str, NormsFn] = {}
#: Methods that return the clipped, summed step, by name.
CLIPPED_METHODS: dict[str, MethodFn] = {}
_REGISTRIES: dict[str, dict[str, Callable]] = {"grads": METHODS, "norms": NORM_METHODS, "clipped": CLIPPED_METHODS}
#: The stabilizer a clipped-step method adds to each norm before dividing (0 unless declared).
CLIP_EPS: dict[str, float] = {}

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


def register_method(
    name: str, fn: Callable | None = None, *, replace: bool = False, returns: str = "grads", clip_eps: float = 0.0
):
    """Register ``fn`` under ``name`` for the quantity it ``returns`` (usable as a decorator).

    ``replace=True`` swaps an existing one; ``clip_eps`` declares a clipped-step method's
    stabilizer (Opacus: 1e-6). One name may be registered once per quantity.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"method name {name!r} must start with a letter or digit and contain only letters, "
            "digits and '_.+-' (it becomes part of test ids)"
        )
    if returns not in QUANTITIES:
        raise ValueError(f"method {name!r}: returns must be one of {', '.join(QUANTITIES)}, got {returns!r}")
    if clip_eps and returns != "clipped":
        raise ValueError(f"method {name!r}: clip_eps applies only to methods that return the clipped step")
    registry = _REGISTRIES[returns]

    def add(method: Callable) -> Callable:
        if not callable(method):
            raise TypeError(f"method {name!r} must be callable, got {type(method).__name__}")
        if name in registry and not replace:
            raise ValueError(f"method {name!r} is already registered for {returns} (pass replace=True to swap it)")
        registry[name] = method
        if returns == "clipped":
            CLIP_EPS[name] = clip_eps
        return method

    return add if fn is None else add(fn)


def get_method(name: str, returns: str = "grads") -> Callable:
    """The method registered under ``name`` for ``returns``, or a clear error listing the known ones."""
    registry = _REGISTRIES[returns]
    try:
        return registry[name]
    except KeyError:
        kind = "" if returns == "grads" else f"{returns} "
        raise KeyError(f"unknown {kind}method {name!r}; registered {kind}methods: {', '.join(registry)}") from None


def methods_for(quantity: str) -> list[str]:
    """Every method that gives ``quantity``: its own registrations, then those derived from grads."""
    own = list(_REGISTRIES[quantity])
    return own + [name for name in METHODS if name not in own]


#: What the benchmarks time for a method, in order of preference: the per-sample gradients where
#: it gives them, else the clipped step (what DP-SGD trains with), else the norms.
TIMED_QUANTITIES = ("grads", "clipped", "norms")


def timed_methods() -> dict[str, str]:
    """Every registered method once, gradient methods first, with the quantity its benchmark times."""
    timed: dict[str, str] = {}
    for quantity in TIMED_QUANTITIES:
        for name in _REGISTRIES[quantity]:
            timed.setdefault(name, quantity)
    return timed


def unregister_method(name: str) -> None:
    """Remove ``name`` from every quantity's registry (for tests that register throw-away methods)."""
    for registry in _REGISTRIES.values():
        registry.pop(name, None)
    CLIP_EPS.pop(name, None)


def loop_grads(case: Case) -> dict[str, torch.Tensor]:
    """One forward and one ``torch.autograd.grad`` per sample (the tutorials' naive loop)."""
    names, params = zip(*case.model.named_parameters(), strict=True)
    per_sample: list[tuple[torch.Tensor, ...]] = []
    for i in range(case.batch_size):
        loss = case.loss_fn(case.model(case.inputs[i : i + 1]), case.targets[i : i + 1])
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        per_sample.append(tuple(torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)))
    return {name: torch.stack(g) for name, g in zip(names, zip(*per_sample, strict=True), strict=True)}


register_method("loop", loop_grads)


def _vmap_grads(case: Case, chunk_size: int | None = None, compiled: bool = False) -> dict[str, torch.Tensor]:
    """``functional_call`` + ``vmap(grad(...), in_dims=(None, None, 0, 0))``, as the torch.func tutorial,
    optionally under ``torch.compile``."""
    from torch.func import functional_call, grad, vmap

    params = {k: v.detach() for k, v in case.model.named_parameters()}
    buffers = {k: v.detach() for k, v in case.model.named_buffers()}

    def compute_loss(params, buffers, sample, target):
        predictions = functional_call(case.model, (params, buffers), (sample.unsqueeze(0),))
        return case.loss_fn(predictions, target.unsqueeze(0))

    per_sample = vmap(grad(compute_loss), in_dims=(None, None, 0, 0), chunk_size=chunk_size)
    if not compiled:
        return per_sample(params, buffers, case.inputs, case.targets)
    try:
        return _compiled_for(case, per_sample)(params, buffers, case.inputs, case.targets)
    finally:
        for p in case.model.parameters():  # dynamo tags the parameters it traced through
            if hasattr(p, "_dynamo_static_input_type"):
                del p._dynamo_static_input_type


#: The compiled function of the last case ``vmap-compiled`` ran on (a benchmark calls it again).
_COMPILED: dict[str, object] = {}


def _compiled_for(case: Case, fn: Callable) -> Callable:
    """``torch.compile(fn)``, compiled afresh for each new case and reused for the same case.

    Each new case starts from ``torch.compiler.reset()``: recompiling one function for case
    after case would reach dynamo's recompile limit, after which it runs the function eagerly,
    without an error, and the method would no longer test the compiler.
    """
    ref = _COMPILED.get("case")
    if ref is None or ref() is not case:
        torch.compiler.reset()
        _COMPILED.update(case=weakref.ref(case), fn=torch.compile(fn))
    return _COMPILED["fn"]


#: vmap-chunked's chunk size: small, so B=7 ends in a partial chunk and B=1 is one short chunk.
CHUNK_SIZE = 4

register_method("vmap", _vmap_grads)
register_method("vmap-chunked", lambda case: _vmap_grads(case, chunk_size=CHUNK_SIZE))
register_method("vmap-compiled", lambda case: _vmap_grads(case, compiled=True))


@register_method("functorch")
def functorch_grads(case: Case) -> dict[str, torch.Tensor]:
    """The legacy ``functorch.make_functional_with_buffers`` API, as seeds 000 and 002 use it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the legacy API's deprecation notices
        try:
            from functorch import grad, make_functional_with_buffers, vmap
        except ImportError as exc:
            raise MethodUnavailable(f"the installed torch {torch.__version__} has no functorch API: {exc}") from exc
        fmodel, params, buffers = make_functional_with_buffers(case.model)

        def compute_loss(params, buffers, sample, target):
            return case.loss_fn(fmodel(params, buffers, sample.unsqueeze(0)), target.unsqueeze(0))

        grads = vmap(grad(compute_loss), in_dims=(None, None, 0, 0))(params, buffers, case.inputs, case.targets)
    return {name: g for (name, _), g in zip(case.model.named_parameters(), grads, strict=True)}


#: Attributes Opacus and ExpandedWeights set on parameters (BackPACK works on a copy of the model).
_LEFTOVER_ATTRIBUTES = ("grad_sample", "_forward_counter", "_current_grad_sample", "summed_grad", "_norm_sample")


def clear_grad_samples(model: torch.nn.Module) -> None:
    """Remove ``.grad`` and the per-sample attributes that Opacus and ExpandedWeights set on parameters."""
    for p in model.parameters():
        p.grad = None
        for attr in _LEFTOVER_ATTRIBUTES:
            if hasattr(p, attr):
                delattr(p, attr)


def _collect(case: Case, attribute: str, scale: float = 1.0) -> dict[str, torch.Tensor]:
    """Read ``p.<attribute>`` (times ``scale``) after a backward; a parameter without it is left out
    (reported as missing). No copy where none is needed: the caller clears the attribute, and at
    simple_cnn B=64 a second copy of the per-sample gradients cost 20-40% (the benchmark guard saw it)."""
    found = {name: getattr(p, attribute, None) for name, p in case.model.named_parameters()}
    return {name: t.detach() * scale if scale != 1 else t.detach() for name, t in found.items() if t is not None}


def _batch_scale(case: Case) -> int:
    """What a mean-reduced batch quantity is multiplied by to give the summed (per-sample) form."""
    return case.batch_size if case.loss_reduction == "mean" else 1


@contextlib.contextmanager
def _opacus_wrapped(case: Case, wrapper: Callable[..., torch.nn.Module], **kwargs) -> Iterator[torch.nn.Module]:
    """The model wrapped by an Opacus grad-sample module for one batch; unwrapped and cleaned after."""
    gsm = wrapper(case.model, batch_first=True, loss_reduction=case.loss_reduction, **kwargs)
    try:
        yield gsm
    finally:
        if hasattr(gsm, "_close"):
            gsm._close()
        clear_grad_samples(case.model)


def _opacus_grads(case: Case, wrapper: Callable[..., torch.nn.Module], **kwargs) -> dict[str, torch.Tensor]:
    """Wrap the model with an Opacus grad-sample module, run one batch, read ``grad_sample``."""
    with _opacus_wrapped(case, wrapper, **kwargs) as gsm:
        case.loss_fn(gsm(case.inputs), case.targets).backward()
        return _collect(case, "grad_sample")


def _opacus_gsm(**kwargs) -> MethodFn:
    def method(case: Case) -> dict[str, torch.Tensor]:
        from opacus import GradSampleModule

        return _opacus_grads(case, GradSampleModule, **kwargs)

    return method


register_method("opacus-hooks", _opacus_gsm())
register_method("opacus-functorch", _opacus_gsm(force_functorch=True))


@register_method("opacus-ew")
def opacus_ew_grads(case: Case) -> dict[str, torch.Tensor]:
    """Opacus' ``GradSampleModuleExpandedWeights`` (PyTorch's ExpandedWeights behind Opacus' API)."""
    from opacus.grad_sample import GradSampleModuleExpandedWeights

    return _opacus_grads(case, GradSampleModuleExpandedWeights)


@register_method("expanded-weights")
def expanded_weights_grads(case: Case) -> dict[str, torch.Tensor]:
    """PyTorch's ``call_for_per_sample_grads`` (ExpandedWeights) used directly."""
    from torch.nn.utils._per_sample_grad import call_for_per_sample_grads

    try:
        wrapped = call_for_per_sample_grads(
            case.model, batch_size=case.batch_size, loss_reduction=case.loss_reduction
        )
        case.loss_fn(wrapped(case.inputs), case.targets).backward()
        return _collect(case, "grad_sample")
    finally:
        clear_grad_samples(case.model)


def _backpack(case: Case, extension: str) -> dict[str, torch.Tensor]:
    """Run BackPACK's first-order ``extension`` on a copy of the model; its per-parameter results.

    BackPACK hooks every module for good, so it works on a deep copy. Its results are those of
    the batch loss: under a mean loss, ``grad_batch`` holds ``g_i / B`` and ``batch_l2`` holds
    ``||g_i||^2 / B^2`` (both are scaled back here by the caller).
    """
    try:
        import backpack
        import backpack.extensions
    except ImportError as exc:
        raise MethodUnavailable(f"BackPACK is not installed (pip install backpack-for-pytorch): {exc}") from exc
    model = backpack.extend(copy.deepcopy(case.model))
    loss = case.loss_fn(model(case.inputs), case.targets)
    attribute = {"BatchGrad": "grad_batch", "BatchL2Grad": "batch_l2"}[extension]
    with backpack.backpack(getattr(backpack.extensions, extension)()):
        loss.backward()
    return {name: getattr(p, attribute).detach() for name, p in model.named_parameters() if hasattr(p, attribute)}


@register_method("backpack")
def backpack_grads(case: Case) -> dict[str, torch.Tensor]:
    """BackPACK's ``BatchGrad`` (individual gradients of the batch loss), in the per-sample form."""
    return {name: g * _batch_scale(case) for name, g in _backpack(case, "BatchGrad").items()}


@register_method("backpack", returns="norms")
def backpack_norms(case: Case) -> torch.Tensor:
    """BackPACK's ``BatchL2Grad``: per-sample squared norms per parameter, summed over parameters."""
    squares = _backpack(case, "BatchL2Grad")
    missing = [name for name, _ in case.model.named_parameters() if name not in squares]
    if missing:
        raise RuntimeError(f"BackPACK's BatchL2Grad computed nothing for {', '.join(missing)}")
    return torch.stack(list(squares.values())).sum(dim=0).sqrt() * _batch_scale(case)


def _max_grad_norm(case: Case) -> float:
    if case.max_grad_norm is None:
        raise ValueError(f"case {case.id} has no max_grad_norm (the clipping bound C)")
    return case.max_grad_norm


def _dp_optimizer(case: Case, optimizer_class: type, max_grad_norm: float) -> torch.optim.Optimizer:
    """An Opacus DP optimizer with no noise around plain SGD with learning rate 0."""
    params = [p for p in case.model.parameters() if p.requires_grad]
    return optimizer_class(
        torch.optim.SGD(params, lr=0.0),
        noise_multiplier=0.0,
        max_grad_norm=max_grad_norm,
        expected_batch_size=case.batch_size,
        loss_reduction=case.loss_reduction,
    )


#: Opacus divides by ``||g_i|| + 1e-6`` (``DPOptimizer.clip_and_accumulate``, ``get_clipping_coef``).
OPACUS_CLIP_EPS = 1e-6


@register_method("opacus-dpoptimizer", returns="clipped", clip_eps=OPACUS_CLIP_EPS)
def opacus_dpoptimizer_step(case: Case) -> dict[str, torch.Tensor]:
    """Opacus' ``DPOptimizer`` with ``noise_multiplier=0`` over ``GradSampleModule``: ``p.grad``
    after one ``pre_step`` (clip, sum, no noise, scale), in the summed form."""
    from opacus import GradSampleModule
    from opacus.optimizers import DPOptimizer

    with _opacus_wrapped(case, GradSampleModule) as gsm:
        optimizer = _dp_optimizer(case, DPOptimizer, _max_grad_norm(case))
        case.loss_fn(gsm(case.inputs), case.targets).backward()
        optimizer.pre_step()
        return _collect(case, "grad", _batch_scale(case))


def _per_sample_losses(case: Case, outputs: torch.Tensor) -> torch.Tensor:
    """Each sample's loss (the loss of a batch of one), shape ``(B,)``."""
    return torch.stack([case.loss_fn(outputs[i : i + 1], case.targets[i : i + 1]) for i in range(case.batch_size)])


def _opacus_ghost(case: Case, max_grad_norm: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Opacus' ghost clipping, as ``make_private(..., grad_sample_mode="ghost")`` trains: two
    backward passes (norms, then the clipped loss), then the optimizer's ``pre_step``."""
    from opacus.grad_sample import GradSampleModuleFastGradientClipping
    from opacus.optimizers import DPOptimizerFastGradientClipping
    from opacus.utils.fast_gradient_clipping_utils import DPTensorFastGradientClipping

    wrapper = GradSampleModuleFastGradientClipping
    with _opacus_wrapped(case, wrapper, max_grad_norm=max_grad_norm, use_ghost_clipping=True) as gsm:
        optimizer = _dp_optimizer(case, DPOptimizerFastGradientClipping, max_grad_norm)
        losses = _per_sample_losses(case, gsm(case.inputs))
        DPTensorFastGradientClipping(gsm, optimizer, losses, case.loss_reduction).backward()
        norms = gsm.per_sample_gradient_norms.detach().clone()
        optimizer.pre_step()
        return norms, _collect(case, "grad", _batch_scale(case))


#: The bound ghost clipping runs with where only norms are asked for (they do not depend on it).
_NORMS_ONLY_BOUND = 1.0

register_method("opacus-ghost", lambda case: _opacus_ghost(case, _NORMS_ONLY_BOUND)[0], returns="norms")
register_method(
    "opacus-ghost", lambda case: _opacus_ghost(case, _max_grad_norm(case))[1], returns="clipped", clip_eps=OPACUS_CLIP_EPS
)

#: The methods registered above, before any plugin adds its own (the README's support table lists these).
BUILT_IN = tuple(dict.fromkeys(name for registry in _REGISTRIES.values() for name in registry))
