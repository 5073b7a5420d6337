"""What a method's result must look like before any number is compared (names, shapes, finite
values), and what it must leave unchanged on the model."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from harness.core.case import trainable_parameters
from harness.core.errors import MethodLeftState, MethodOutputError


def check_structure(
    result: Any, model: nn.Module, batch_size: int | None, where: str, dtype: torch.dtype | None = None
) -> dict[str, torch.Tensor]:
    """Check names, shapes ``(B, *param.shape)``, finiteness and (given ``dtype``, the case's
    :attr:`~harness.core.precision.Precision.compute_dtype`) precision; return the result as a dict.

    ``batch_size=None`` checks a batch quantity (the clipped step): shapes ``param.shape``.
    ``where`` names the method and case (e.g. ``"method 'vmap' on cpu-float64-mlp-B7"``).
    """
    __tracebackhide__ = True
    if not isinstance(result, Mapping):
        raise MethodOutputError(
            f"{where} returned a {type(result).__name__}, expected a dict of parameter name -> tensor"
        )
    params = trainable_parameters(model)
    missing = [n for n in params if n not in result]
    if missing:
        raise MethodOutputError(f"{where} returned no gradient for {', '.join(missing)}")
    frozen = [n for n, p in model.named_parameters() if n in result and not p.requires_grad]
    if frozen:
        raise MethodOutputError(
            f"{where} returned gradients for frozen parameters (requires_grad=False): {', '.join(frozen)}; "
            "return the trainable ones only"
        )
    extra = [str(n) for n in result if n not in params]
    if extra:
        raise MethodOutputError(
            f"{where} returned gradients for names that are not parameters of the model: {', '.join(extra)}"
        )
    leading = () if batch_size is None else (batch_size,)
    for name, p in params.items():
        g = result[name]
        if not isinstance(g, torch.Tensor):
            raise MethodOutputError(f"{where} returned a {type(g).__name__} for {name}, expected a tensor")
        expected = (*leading, *p.shape)
        if tuple(g.shape) != expected:
            form = "(B, *param.shape)" if leading else "param.shape"
            raise MethodOutputError(f"{where} returned shape {tuple(g.shape)} for {name}, expected {expected} {form}")
        _check_precision(g, name, dtype, where)
        _check_finite(g, name, leading, where)
    return {name: result[name] for name in params}


def check_norms_structure(result: Any, batch_size: int, where: str, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Check that per-sample norms are a finite, non-negative tensor of shape ``(B,)``, no less
    precise than ``dtype`` where given."""
    __tracebackhide__ = True
    if not isinstance(result, torch.Tensor):
        raise MethodOutputError(f"{where} returned a {type(result).__name__}, expected a tensor of per-sample norms")
    if tuple(result.shape) != (batch_size,):
        raise MethodOutputError(f"{where} returned norms of shape {tuple(result.shape)}, expected ({batch_size},) (B,)")
    _check_precision(result, "the norms", dtype, where)
    _check_finite(result, "the norms", (batch_size,), where)
    negative = (result.detach() < 0).nonzero().flatten().tolist()
    if negative:
        raise MethodOutputError(f"{where} returned negative norms at samples {negative[:10]}")
    return result


def _check_precision(t: torch.Tensor, name: str, dtype: torch.dtype | None, where: str) -> None:
    """A result less precise than the case computes in has lost what the bounds assume it has:
    bfloat16 per-sample gradients of a float32 case can pass the float32 kinks bound."""
    if dtype is None or not t.is_floating_point():
        return
    if torch.finfo(t.dtype).eps > torch.finfo(dtype).eps:
        got, case = (str(d).removeprefix("torch.") for d in (t.dtype, dtype))
        raise MethodOutputError(f"{where} returned {name} in {got}, less precise than the case's {case}")


def _check_finite(t: torch.Tensor, name: str, leading: tuple[int, ...], where: str) -> None:
    finite = torch.isfinite(t.detach())
    if not leading:
        if not finite.all():
            raise MethodOutputError(f"{where} returned non-finite values for {name}")
        return
    bad = ~finite.reshape(leading[0], math.prod(finite.shape[1:])).all(dim=1)  # (0, -1) is ambiguous on an empty batch
    if bad.any():
        samples = bad.nonzero().flatten().tolist()
        raise MethodOutputError(f"{where} returned non-finite values for {name} at samples {samples[:10]}")


_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")


@dataclass(frozen=True)
class ModelState:
    """What a method must leave unchanged: parameter values, which ones require gradients, mode,
    hook counts, grads, attributes."""

    values: dict[str, torch.Tensor]
    training: tuple[bool, ...]
    hooks: tuple[int, ...]
    requires_grad: dict[str, bool]

    @classmethod
    def of(cls, model: nn.Module) -> ModelState:
        """Snapshot ``model``."""
        return cls(
            values={n: t.detach().clone() for n, t in model.state_dict(keep_vars=True).items()},
            training=tuple(m.training for m in model.modules()),
            hooks=tuple(len(getattr(m, h)) for m in model.modules() for h in _HOOK_DICTS),
            requires_grad={n: p.requires_grad for n, p in model.named_parameters()},
        )

    def left_behind(self, model: nn.Module) -> list[str]:
        """What ``model`` carries that it did not before and that no training leaves: attributes on
        parameters, hooks added or removed, ``requires_grad`` flipped (an empty list: nothing)."""
        problems = []
        attrs = sorted({a for p in model.parameters() for a in vars(p)})
        if attrs:
            problems.append(f"attributes {', '.join(attrs)} on parameters")
        if tuple(len(getattr(m, h)) for m in model.modules() for h in _HOOK_DICTS) != self.hooks:
            problems.append("hooks added or removed")
        flipped = [n for n, p in model.named_parameters() if self.requires_grad.get(n, p.requires_grad) != p.requires_grad]
        if flipped:
            problems.append(f"requires_grad changed on {', '.join(flipped)}")
        return problems

    def check_unchanged(self, model: nn.Module, where: str) -> None:
        """Raise :class:`MethodLeftState` saying what ``model`` carries that it did not before."""
        __tracebackhide__ = True
        problems = []
        with_grad = [n for n, p in model.named_parameters() if p.grad is not None]
        if with_grad:
            problems.append(f".grad set on {', '.join(with_grad)}")
        problems += self.left_behind(model)
        if tuple(m.training for m in model.modules()) != self.training:
            problems.append("train/eval mode changed")
        now = model.state_dict(keep_vars=True)
        changed = [n for n, v in self.values.items() if n not in now or not torch.equal(now[n].detach(), v)]
        if changed:
            problems.append(f"values changed: {', '.join(changed)}")
        if problems:
            raise MethodLeftState(f"{where} left state behind on the model: {'; '.join(problems)}")
