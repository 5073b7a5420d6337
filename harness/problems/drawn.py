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


def _batch_norm(**kwargs: Any) -> nn.Module:
    """``nn.BatchNorm{1,2,3}d`` (``dims``: spatial dimensions, 0 and 1 both 1d) with drawn running
    statistics, so that the eval-mode normalization is not the identity."""
    dims = kwargs.pop("dims")
    layer = (nn.BatchNorm1d, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)[dims](**kwargs)
    with torch.no_grad():
        layer.running_mean.uniform_(-0.5, 0.5)
        layer.running_var.uniform_(0.5, 2.0)
    return layer


#: The drawn arguments of an ``nn.EmbeddingBag`` that its forward call takes, not its constructor:
#: ``layout`` ("2d": bags of one size as rows; "offsets": the ids flat, with offsets), ``bags``
#: (where each bag starts in a sample's ids) and ``weighted`` (``per_sample_weights`` by position).
BAG_CALL = ("layout", "bags", "weighted")


@dataclass(frozen=True)
class LayerKind:
    """How to build a kind of layer and how to call it on a batch-first input."""

    build: Callable[..., nn.Module]
    call: str = "plain"  # "plain": layer(x); "first": layer(x)[0]; "self_attention": layer(x, x, x)[0]; "bags"
    takes_indices: bool = False
    needs: tuple[Feature, ...] = ()  # what the installed releases must have to build it
    call_args: tuple[str, ...] = ()  # drawn arguments of the forward call, not of the constructor
    eval_mode: bool = False  # the model runs in eval mode (BatchNorm by its running statistics)

    def missing(self) -> str | None:
        """None where the installed releases can build it; else why not (the property test's skip reason)."""
        return next((reason for feature in self.needs if (reason := feature.missing())), None)


#: Every layer kind the property suite draws, by the name used in test ids and the support matrix.
LAYER_KINDS: dict[str, LayerKind] = {
    "linear": LayerKind(nn.Linear),
    "conv1d": LayerKind(nn.Conv1d),
    "conv2d": LayerKind(nn.Conv2d),
    "conv3d": LayerKind(nn.Conv3d),
    "conv_transpose1d": LayerKind(nn.ConvTranspose1d),
    "conv_transpose2d": LayerKind(nn.ConvTranspose2d),
    "conv_transpose3d": LayerKind(nn.ConvTranspose3d),
    "embedding": LayerKind(nn.Embedding, takes_indices=True),
    "embedding_bag": LayerKind(nn.EmbeddingBag, call="bags", takes_indices=True, call_args=BAG_CALL),
    "layer_norm": LayerKind(nn.LayerNorm),
    "rms_norm": LayerKind(_torch_layer("RMSNorm"), needs=(RMS_NORM,)),
    "group_norm": LayerKind(nn.GroupNorm),
    "instance_norm": LayerKind(_instance_norm),
    "batch_norm": LayerKind(_batch_norm, eval_mode=True),
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
        """The drawn arguments, the forward call's (``call_args``) included."""
        return dict(self.args)

    def each(self, name: str) -> tuple[int, ...]:
        """A per-dimension argument (``dilation=2`` or ``(1, 2)``) as one value per spatial dimension."""
        value = self.kwargs[name]
        return tuple(value) if isinstance(value, tuple) else (value,) * (len(self.in_shape) - 1)

    @property
    def has_parameters(self) -> bool:
        """Whether the layer has parameters (a normalization may be drawn without)."""
        return bool(self.kwargs.get("elementwise_affine", self.kwargs.get("affine", True)))

    def build(self) -> nn.Module:
        """A freshly initialised module (under the caller's RNG seed)."""
        kind = LAYER_KINDS[self.kind]
        return kind.build(**{k: v for k, v in self.args if k not in kind.call_args})


def _bags(layer: nn.Module, x: torch.Tensor, layout: str, bags: tuple[int, ...], weighted: bool) -> torch.Tensor:
    """An ``nn.EmbeddingBag`` over each sample's ids (``(B, L)``) in ``len(bags)`` bags, starting at
    ``bags``: as rows of a 2-D input or flat with offsets; ``(B, bags, dim)``, per sample."""
    batch, length = x.shape
    kwargs = {}
    if weighted:
        weights = torch.linspace(0.5, 1.5, length, dtype=layer.weight.dtype, device=x.device).expand(batch, length)
        kwargs["per_sample_weights"] = weights.reshape(batch * len(bags), -1) if layout == "2d" else weights.reshape(-1)
    if layout == "2d":
        out = layer(x.reshape(batch * len(bags), -1), **kwargs)
    else:
        starts = torch.arange(batch, device=x.device)[:, None] * length + torch.tensor(bags, device=x.device)
        offsets = starts.reshape(-1)
        if layer.include_last_offset:
            offsets = torch.cat([offsets, offsets.new_full((1,), batch * length)])
        out = layer(x.reshape(-1), offsets, **kwargs)
    return out.reshape(batch, len(bags), -1)


class DrawnModel(nn.Module):
    """The drawn layers applied in turn, with ``tanh`` between them, on a batch-first input: a
    layer drawn with ``batch_first=False`` gets its input and gives its output transposed."""

    def __init__(self, layers: tuple[Layer, ...]) -> None:
        super().__init__()
        self.calls = tuple(LAYER_KINDS[layer.kind].call for layer in layers)
        self.options = tuple({k: layer.kwargs[k] for k in LAYER_KINDS[layer.kind].call_args} for layer in layers)
        self.transposed = tuple(not layer.kwargs.get("batch_first", True) for layer in layers)
        self.layers = nn.ModuleList(layer.build() for layer in layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, (call, options, transposed, layer) in enumerate(
            zip(self.calls, self.options, self.transposed, self.layers, strict=True)
        ):
            if i:
                x = torch.tanh(x)
            if transposed:
                x = x.transpose(0, 1)
            if call == "plain":
                x = layer(x)
            elif call == "first":
                x = layer(x)[0]
            elif call == "bags":
                x = _bags(layer, x, **options)
            else:
                x = layer(x, x, x, need_weights=False)[0]
            if transposed:
                x = x.transpose(0, 1)
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

        Token sequences repeat their first id (where they have two), and end in the padding index
        where the embedding has one (and hold it nowhere else), so its (zero) gradient is always
        exercised: a sequence of 3 or more, or of 2 without padding, holds an id twice.
        """
        first = self.layers[0]
        if LAYER_KINDS[first.kind].takes_indices:
            padding = first.kwargs.get("padding_idx")
            ids = first.kwargs["num_embeddings"] - (padding is not None)
            inputs = torch.randint(ids, (batch_size, *first.in_shape), generator=gen)
            if padding is not None:
                inputs += inputs >= padding  # every id but the padding index
            if first.in_shape[-1] >= 2:
                inputs[:, 1] = inputs[:, 0]  # a repeated id: its rows' gradients add up
            if padding is not None:
                inputs[:, -1] = padding  # padded sequences end in the padding token
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
            train_mode=not any(LAYER_KINDS[layer.kind].eval_mode for layer in self.layers),
            numerics="drawn" if len(self.layers) == 1 else "drawn-stack",
            key=self,
        )
