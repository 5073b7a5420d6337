"""Conversions keep the function: a layer Opacus replaces to make a model trainable with DP, given the
same weights, computes what the original computes, and its per-sample gradients are the oracle's
of the original model.

The conversions: ``ModuleValidator.fix`` of ``nn.LSTM`` (to ``DPLSTM``), ``nn.GRU`` (``DPGRU``),
``nn.MultiheadAttention`` (``DPMultiheadAttention``) and ``nn.InstanceNorm`` with running
statistics (which it turns off: the same function in training mode), and ``nn.RNN`` to ``DPRNN``
by hand (``fix`` leaves ``nn.RNN`` alone). Each in every layout the layer takes: ``batch_first``,
``bidirectional``, ``num_layers``, ``bias``, ``nonlinearity``, ``proj_size``; for attention
``add_bias_kv``, ``add_zero_attn``, ``kdim``/``vdim``, and the masks (``attn_mask``,
``key_padding_mask``, both). ``fix``'s BatchNorm to GroupNorm is left out: it changes the
function by design.

Two checks per conversion, each against the original in float64 at the tolerance table's bound:
``forward`` (every output, the hidden states and attention weights too, batch first) and
``grads`` (the converted model's per-sample gradients by Opacus' hooks, read in the original's
parameter names through the DP layer's own ``state_dict``, against the float64 oracle of the
original model).
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from harness.checking.checks import as_expected
from harness.checking.runner import failing
from harness.checking.support import ExpectedFailure, expected_conversion_failure
from harness.core.distance import Comparison, assert_close
from harness.core.errors import MethodOutputError, MethodUnavailable
from harness.core.tolerances import tolerance_for
from harness.methods.opacus import dp_rnn, fix, grad_samples
from harness.problems.build import build_case
from harness.problems.drawn import squared_error
from harness.problems.zoo import ModelSpec
from harness.reference.oracle import oracle

#: Sequences of 5 steps of 3 features, attention of 4 dimensions in 2 heads, batches of 4.
LENGTH, FEATURES, HIDDEN, EMBED, HEADS, KDIM, BATCH = 5, 3, 4, 4, 2, 3, 4
#: The original layer of each conversion, and how Opacus converts it.
ORIGINALS: dict[str, Callable[..., nn.Module]] = {
    "lstm": nn.LSTM,
    "gru": nn.GRU,
    "rnn": nn.RNN,
    "mha": nn.MultiheadAttention,
    "instance_norm": nn.InstanceNorm1d,
}
CONVERTERS: dict[str, Callable[[nn.Module], nn.Module]] = {"rnn": dp_rnn}
MASKS = ("none", "attn_mask", "key_padding_mask", "both")


def converter(kind: str) -> Callable[[nn.Module], nn.Module]:
    """How Opacus converts a layer of ``kind``: ``ModuleValidator.fix``, or a DP layer by hand."""
    return CONVERTERS.get(kind, fix)


@dataclass(frozen=True)
class Conversion:
    """One layer configuration to convert: its kind, constructor arguments and (attention) masks;
    ``unbatched``: a recurrent layer called on each sample alone, as ``(T, F)``."""

    kind: str
    args: tuple[tuple[str, Any], ...]
    masks: str = "none"
    slow: bool = False
    unbatched: bool = False

    @property
    def kwargs(self) -> dict[str, Any]:
        """The original layer's constructor arguments."""
        return dict(self.args)

    @property
    def method(self) -> str:
        """The method ``--psg-methods`` selects a conversion's tests by: Opacus' hooks compute the
        converted model's per-sample gradients."""
        return "opacus-hooks"

    @property
    def arguments(self) -> dict[str, Any]:
        """What a support-matrix row's ``when`` sees: the arguments, ``masks`` and ``unbatched``."""
        return {**self.kwargs, "masks": self.masks, "unbatched": self.unbatched}

    @property
    def id(self) -> str:
        """``lstm-batch_first-bidirectional-num_layers2``: the kind, then what is on or not the default."""
        parts = [self.kind]
        for name, value in self.args:
            if value is True:
                parts.append(name)
            elif value is False and name in ("bias", "affine", "track_running_stats"):
                parts.append(f"no_{name}")
            elif value is not False and value is not None and name not in ("input_size", "hidden_size", "embed_dim", "num_heads", "num_features"):
                parts.append(f"{name}{value}")
        if self.masks != "none":
            parts.append(self.masks)
        if self.unbatched:
            parts.append("unbatched")
        return "-".join(parts)

    def expected(self, check: str, precision: str = "float64") -> ExpectedFailure | None:
        """The support-matrix row this conversion's ``check`` in ``precision`` is expected to fail by, if any."""
        return expected_conversion_failure(self.kind, self.arguments, check, precision)

    def spec(self, converted: bool) -> ModelSpec:
        """The layer (converted by Opacus, or not) in a model of batch-first inputs, as a spec."""
        return ModelSpec(
            name=f"{'converted' if converted else 'original'}-{self.id}",
            build=lambda: LayerModel(self, converted),
            make_batch=self.make_batch,
            loss=squared_error,
            batch_sizes=(BATCH,),
            numerics="drawn",
            key=(self, converted, converter(self.kind) if converted else None),
        )

    def input_features(self) -> int:
        """The features of the model's input: attention's query (and its key, where ``kdim`` differs)."""
        if self.kind == "mha":
            return EMBED + (self.kwargs["kdim"] or 0)
        return FEATURES

    def output_shape(self) -> tuple[int, ...]:
        """One sample's output, batch first: ``(T, H * directions)`` (``proj_size`` for H where the
        LSTM projects), ``(L, E)`` for attention, the input's ``(C, T)`` for a normalization."""
        if self.kind == "instance_norm":
            return (FEATURES, LENGTH)
        if self.kind == "mha":
            return (LENGTH, EMBED)
        kwargs = self.kwargs
        width = kwargs.get("proj_size") or kwargs["hidden_size"]
        return (LENGTH, width * (2 if kwargs.get("bidirectional") else 1))

    def make_batch(self, batch_size: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs ``(B, T, F)`` (``(B, C, T)`` for a normalization) and regression targets of the output's shape."""
        shape = (FEATURES, LENGTH) if self.kind == "instance_norm" else (LENGTH, self.input_features())
        inputs = torch.randn(batch_size, *shape, generator=gen)
        return inputs, torch.randn(batch_size, *self.output_shape(), generator=gen)


class LayerModel(nn.Module):
    """One layer on batch-first inputs: transposed in and out where the layer takes the sequence
    first; attention as self-attention (or with keys from the last ``kdim`` features), with a
    fixed ``attn_mask`` and a ``key_padding_mask`` each sample's inputs decide."""

    def __init__(self, conversion: Conversion, converted: bool) -> None:
        super().__init__()
        self.conversion = conversion
        layer = ORIGINALS[conversion.kind](**conversion.kwargs)
        self.layer = converter(conversion.kind)(layer) if converted else layer

    def outputs(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every output of the layer, batch first, by name."""
        kind, kwargs = self.conversion.kind, self.conversion.kwargs
        if kind == "instance_norm":
            return {"output": self.layer(x)}
        seq_first = not kwargs.get("batch_first", False)
        if kind == "mha":
            return self._attention(x, seq_first)
        if self.conversion.unbatched:
            samples = [self._recurrent(sample, seq_first=False) for sample in x]
            return {name: torch.stack([sample[name] for sample in samples]) for name in samples[0]}
        return self._recurrent(x, seq_first)

    def _recurrent(self, x: torch.Tensor, seq_first: bool) -> dict[str, torch.Tensor]:
        """The output and the last states, batch first (an unbatched call's states have no batch)."""
        out, hidden = self.layer(x.transpose(0, 1) if seq_first else x)
        states = hidden if isinstance(hidden, tuple) else (hidden,)
        named = {"output": out.transpose(0, 1) if seq_first else out}
        named.update({name: h.transpose(0, 1) if h.dim() == 3 else h for name, h in zip(("h_n", "c_n"), states, strict=False)})
        return named

    def _attention(self, x: torch.Tensor, seq_first: bool) -> dict[str, torch.Tensor]:
        kdim = self.conversion.kwargs["kdim"]
        query, key = (x[..., :EMBED], x[..., EMBED:]) if kdim else (x, x)
        masks = self.conversion.masks
        attn_mask = torch.triu(torch.ones(LENGTH, LENGTH, dtype=torch.bool), 1) if masks in ("attn_mask", "both") else None
        padding = (key[..., -1] > 0.5) & (torch.arange(LENGTH) > 0) if masks in ("key_padding_mask", "both") else None
        query, key = (query.transpose(0, 1), key.transpose(0, 1)) if seq_first else (query, key)
        out, weights = self.layer(query, key, key, key_padding_mask=padding, attn_mask=attn_mask)
        return {"output": out.transpose(0, 1) if seq_first else out, "attn_weights": weights}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.outputs(x)["output"]


def _where(conversion: Conversion) -> str:
    return f"Opacus' conversion of {conversion.id}"


def check_forward(conversion: Conversion, precision: str = "float64") -> Comparison:
    """The converted layer's outputs (hidden states and attention weights too), computed in
    ``precision`` (``float64`` or ``float32``), equal the original's in float64 on the same inputs
    within the tolerance table's bound for one drawn layer in that precision."""
    __tracebackhide__ = True
    with as_expected(conversion.expected("forward", precision)):
        original = build_case(conversion.spec(converted=False), BATCH, "float64", "cpu")
        where = f"{_where(conversion)} in {precision}"
        converted = failing(where, lambda: build_case(conversion.spec(converted=True), BATCH, precision, "cpu"))
        with torch.no_grad():
            expected = original.model.outputs(original.inputs)
            got = failing(where, lambda: converted.model.outputs(converted.inputs))
        for name, t in expected.items():
            shape = tuple(got[name].shape) if name in got else None
            if shape != tuple(t.shape):
                raise MethodOutputError(f"{where} returns {name} of shape {shape}, the original's is {tuple(t.shape)}")
        return assert_close(got, expected, tolerance_for(precision, "drawn"), f"{where}, its outputs,")


def in_original_names(model: nn.Module, grads: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per-sample gradients of a converted model in its original's parameter names: each sample's
    gradient put in the DP layer's parameters and read back through its ``state_dict``, which Opacus
    keeps in ``nn``'s names (``DPMultiheadAttention``'s q, k and v projections as ``in_proj_weight``)."""
    holder = copy.deepcopy(model)
    params = dict(holder.named_parameters())
    samples = []
    with torch.no_grad():
        for i in range(len(next(iter(grads.values())))):
            for name, g in grads.items():
                params[name].copy_(g[i])
            # the layer's own state_dict: a model's calls its children's with a shared destination and
            # drops what DPMultiheadAttention returns in nn's names
            samples.append({f"layer.{name}": t.clone() for name, t in holder.layer.state_dict().items()})
    return {name: torch.stack([sample[name] for sample in samples]) for name in samples[0]}


def check_grads(conversion: Conversion) -> Comparison:
    """The converted model's per-sample gradients (Opacus' hooks), in the original's parameter names,
    equal the float64 oracle's of the original model within the tolerance table's bound."""
    __tracebackhide__ = True
    if conversion.kind == "instance_norm" and not conversion.kwargs["affine"]:
        raise MethodUnavailable(f"{conversion.id} has no parameters: no per-sample gradients to compare")
    if conversion.unbatched:
        raise MethodUnavailable(f"{conversion.id}: a layer called on one sample at a time has no batch to take per-sample gradients over")
    with as_expected(conversion.expected("grads")):
        where = _where(conversion)
        case = failing(where, lambda: build_case(conversion.spec(converted=True), BATCH, "float64", "cpu"))
        batch_first = conversion.kind == "instance_norm" or conversion.kwargs.get("batch_first", False)
        grads = failing(where, lambda: grad_samples(case, batch_first=batch_first))
        reference = oracle(conversion.spec(converted=False), BATCH)
        mapped = in_original_names(case.model, grads)
        missing = sorted(set(reference) - set(mapped))
        if missing:
            raise MethodOutputError(f"{where}: its state_dict has no {', '.join(missing)} of the original")
        got = {name: mapped[name] for name in reference}
        return assert_close(got, reference, tolerance_for("float64", "drawn"), f"{where}, per-sample gradients,")



def _recurrent(kind: str) -> list[Conversion]:
    """Every layout of a recurrent layer; one (sequence first, bidirectional, two layers) by default."""
    found = []
    extra = [{}, {"nonlinearity": "relu"}] if kind == "rnn" else [{}]
    for batch_first, bidirectional, num_layers, bias, more in itertools.product((False, True), (False, True), (1, 2), (True, False), extra):
        args = dict(input_size=FEATURES, hidden_size=HIDDEN, num_layers=num_layers, bias=bias, batch_first=batch_first, bidirectional=bidirectional, **more)
        default = (batch_first, bidirectional, num_layers, bias, more) == (False, True, 2, True, {})
        found.append(Conversion(kind, tuple(args.items()), slow=not default))
    if kind == "lstm":
        args = dict(input_size=FEATURES, hidden_size=HIDDEN, batch_first=True, proj_size=2)
        found.append(Conversion(kind, tuple(args.items()), slow=True))
    args = dict(input_size=FEATURES, hidden_size=HIDDEN, num_layers=2, bidirectional=True)
    found.append(Conversion(kind, tuple(args.items()), slow=True, unbatched=True))
    return found


def _attention() -> list[Conversion]:
    """Every layout and mask of attention; sequence first with both masks, and batch first, by default."""
    found = []
    for batch_first, bias, add_bias_kv, add_zero_attn, kdim, masks in itertools.product(
        (False, True), (True, False), (False, True), (False, True), (None, KDIM), MASKS
    ):
        args = dict(
            embed_dim=EMBED, num_heads=HEADS, bias=bias, add_bias_kv=add_bias_kv, add_zero_attn=add_zero_attn,
            kdim=kdim, vdim=kdim, batch_first=batch_first,
        )
        default = (bias, add_bias_kv, add_zero_attn, kdim) == (True, False, False, None) and (
            (batch_first, masks) in ((False, "both"), (True, "none"))
        )
        found.append(Conversion("mha", tuple(args.items()), masks, slow=not default))
    return found


def conversions() -> list[Conversion]:
    """Every conversion the checks run; those not marked ``slow`` are the default run's."""
    norms = [
        Conversion("instance_norm", (("num_features", FEATURES), ("affine", affine), ("track_running_stats", True)), slow=not affine)
        for affine in (True, False)
    ]
    return [*_recurrent("lstm"), *_recurrent("gru"), *_recurrent("rnn"), *_attention(), *norms]
