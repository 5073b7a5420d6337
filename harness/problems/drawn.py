"""Drawn problems: a layer configuration (or a short stack of them) as plain, hashable data.

The Hypothesis strategies in :mod:`harness.problems.strategies` draw :class:`Problem` values; a
problem turns into a :class:`~harness.models.ModelSpec`, so a drawn layer runs through the
same case builder, oracle and methods as the model zoo. Its ``repr`` is valid Python: a
falsifying example printed by Hypothesis can be pasted back to reproduce it, e.g.
``check_drawn(Problem(...), "vmap", "float64")``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import torch
import torch.nn as nn

from harness.core.releases import DP_MHA_BATCH_FIRST, OPACUS_LAYERS, RMS_NORM, Feature, library
from harness.problems.zoo import ModelSpec

Shape = tuple[int, ...]


def _opacus_layer(name: str) -> Callable[..., nn.Module]:
    def build(**kwargs: Any) -> nn.Module:
        return getattr(library("opacus").layers, name)(**kwargs)

    return build


def _torch_layer(name: str) -> Callable[..., nn.Module]:
    """``nn.<name>``, looked up when built: a torch release may not have it (``needs`` says which)."""

    def build(**kwargs: Any) -> nn.Module:
        return getattr(nn, name)(**kwargs)

    return build


def _instance_norm(**kwargs: Any) -> nn.Module:
    dims = kwargs.pop("dims")
    return (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)[dims - 1](**kwargs)


@dataclass(frozen=True)
class LayerKind:
    """How to build a kind of layer and how to call it on a batch-first input."""

    build: Callable[..., nn.Module]
    call: str = "plain"  # "plain": layer(x); "first": layer(x)[0]; "self_attention": layer(x, x, x)[0]
    takes_indices: bool = False
    needs: tuple[Feature, ...] = ()  # what the installed releases must have to build it

    def missing(self) -> str | None:
        """None where the installed releases can build it; else why not (the property test's skip reason)."""
        return next((reason for feature in self.needs if (reason := feature.missing())), None)


#: Every layer kind the property suite draws, by the name used in test ids and the support matrix.
LAYER_KINDS: dict[str, LayerKind] = {
    "linear": LayerKind(nn.Linear),
    "conv1d": LayerKind(nn.Conv1d),
    "conv2d": LayerKind(nn.Conv2d),
    "conv3d": LayerKind(nn.Conv3d),
    "conv_transpose2d": LayerKind(nn.ConvTranspose2d),
    "embedding": LayerKind(nn.Embedding, takes_indices=True),
    "layer_norm": LayerKind(nn.LayerNorm),
    "rms_norm": LayerKind(_torch_layer("RMSNorm"), needs=(RMS_NORM,)),
    "group_norm": LayerKind(nn.GroupNorm),
    "instance_norm": LayerKind(_instance_norm),
    "rnn": LayerKind(nn.RNN, call="first"),
    "lstm": LayerKind(nn.LSTM, call="first"),
    "gru": LayerKind(nn.GRU, call="first"),
    "dp_rnn": LayerKind(_opacus_layer("DPRNN"), call="first", needs=(OPACUS_LAYERS,)),
    "dp_lstm": LayerKind(_opacus_layer("DPLSTM"), call="first", needs=(OPACUS_LAYERS,)),
    "dp_gru": LayerKind(_opacus_layer("DPGRU"), call="first", needs=(OPACUS_LAYERS,)),
    "mha": LayerKind(nn.MultiheadAttention, call="self_attention"),
    "dp_mha": LayerKind(
        _opacus_layer("DPMultiheadAttention"), call="self_attention", needs=(OPACUS_LAYERS, DP_MHA_BATCH_FIRST)
    ),
}


@dataclass(frozen=True)
class Layer:
    """One drawn layer: its kind, constructor arguments and one sample's input and output shapes."""

    kind: str
    args: tuple[tuple[str, Any], ...]
    in_shape: Shape
    out_shape: Shape

    def __post_init__(self) -> None:
        if self.kind not in LAYER_KINDS:
            raise ValueError(f"unknown layer kind {self.kind!r}; known kinds: {', '.join(LAYER_KINDS)}")

    @property
    def kwargs(self) -> dict[str, Any]:
        """The constructor's keyword arguments."""
        return dict(self.args)

    def build(self) -> nn.Module:
        """A freshly initialised module (under the caller's RNG seed)."""
        return LAYER_KINDS[self.kind].build(**self.kwargs)


class DrawnModel(nn.Module):
    """The drawn layers applied in turn, with ``tanh`` between them."""

    def __init__(self, layers: tuple[Layer, ...]) -> None:
        super().__init__()
        self.calls = tuple(LAYER_KINDS[layer.kind].call for layer in layers)
        self.layers = nn.ModuleList(layer.build() for layer in layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, (call, layer) in enumerate(zip(self.calls, self.layers, strict=True)):
            if i:
                x = torch.tanh(x)
            if call == "plain":
                x = layer(x)
            elif call == "first":
                x = layer(x)[0]
            else:
                x = layer(x, x, x, need_weights=False)[0]
        return x


def squared_error(outputs: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Half the squared error summed over each sample, then averaged or summed over the batch.

    Each sample contributes one term, so the per-sample gradient is the same for both reductions.
    """
    per_sample = 0.5 * (outputs - targets).pow(2).flatten(1).sum(1)
    return per_sample.mean() if reduction == "mean" else per_sample.sum()


@dataclass(frozen=True)
class Problem:
    """A drawn model (one layer or a short stack), a batch size and a loss reduction."""

    layers: tuple[Layer, ...]
    batch_size: int
    loss_reduction: str = "mean"

    def __post_init__(self) -> None:
        if not self.layers:
            raise ValueError("a drawn problem needs at least one layer")
        for before, after in pairwise(self.layers):
            if before.out_shape != after.in_shape or LAYER_KINDS[after.kind].takes_indices:
                raise ValueError(f"layer {after.kind} cannot take the output {before.out_shape} of {before.kind}")

    @property
    def name(self) -> str:
        """The model name in case ids and support-matrix lookups: ``conv2d``, ``linear+layer_norm``."""
        return "+".join(layer.kind for layer in self.layers)

    def make_batch(self, batch_size: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs valid for the first layer (token ids for an embedding) and regression targets.

        Token sequences end in the padding index where the embedding has one, so its (zero)
        gradient is always exercised.
        """
        first = self.layers[0]
        if LAYER_KINDS[first.kind].takes_indices:
            inputs = torch.randint(first.kwargs["num_embeddings"], (batch_size, *first.in_shape), generator=gen)
            if first.kwargs.get("padding_idx") is not None:
                inputs[:, -1] = first.kwargs["padding_idx"]  # padded sequences end in the padding token
        else:
            inputs = torch.randn(batch_size, *first.in_shape, generator=gen)
        targets = torch.randn(batch_size, *self.layers[-1].out_shape, generator=gen)
        return inputs, targets

    def spec(self) -> ModelSpec:
        """The problem as a model spec (equal problems give equal specs, so the oracle cache is shared)."""
        return ModelSpec(
            name=self.name,
            build=lambda: DrawnModel(self.layers),
            make_batch=self.make_batch,
            loss=squared_error,
            batch_sizes=(self.batch_size,),
            numerics="drawn" if len(self.layers) == 1 else "drawn-stack",
            key=self,
        )
