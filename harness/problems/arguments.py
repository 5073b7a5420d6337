"""What the property suite draws for each layer kind: every constructor argument (and the forward
arguments that change the computation), the values drawn, or why an argument is not drawn.

The strategies (:mod:`harness.problems.strategies`) draw from the value sets here, and the
README's argument table (``python -m harness argument-table``) is written from these
descriptions, so the two cannot drift apart; a self-test holds each description to the layer
class's signature.
"""

from __future__ import annotations

from dataclasses import dataclass

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
BAG_MODES = ("sum", "mean", "max")
BAG_LAYOUTS = ("2d", "offsets")
NONLINEARITIES = ("tanh", "relu")

#: What no layer kind draws, and why (listed once under the table, not per kind).
NEVER_DRAWN = {
    "device": "the case moves the model to its device",
    "dtype": "the case casts the model to its precision",
}

RANDOM = "random in training: the loop and a batched method cannot draw the same mask"
EPS = "a constant inside the normalization: no other code path"
KEEPS_ONLY_SELF_ATTENTION = "self-attention passes the input as key and value: kdim = vdim = embed_dim"
PRIVATE = "private (a given initial weight)"
SCALE_BY_FREQUENCY = (
    "scales by an id's count in the whole batch: a batched backward (ghost clipping's step) and the per-sample "
    "gradient differ whenever two samples share an id, which depends on the batch drawn, not on the layer "
    "(Opacus and ExpandedWeights ignore it, BackPACK refuses it: docs/findings.md)"
)
EVAL_MODE = (
    "True, in eval mode (drawn running statistics): in training, or without them, it normalizes by the "
    "batch's statistics, so one sample's gradient depends on the others"
)
RUNNING_STATS = "updates running statistics in the forward: a change to the model that no method may make"


@dataclass(frozen=True)
class Argument:
    """One argument of a layer kind: the values drawn (``values``), or why it is not (``why_not``)."""

    name: str
    values: str = ""
    why_not: str = ""
    forward: bool = False  # an argument of the forward call, not of the constructor

    def __post_init__(self) -> None:
        if bool(self.values) == bool(self.why_not):
            raise ValueError(f"argument {self.name}: give either the values drawn or why it is not drawn")

    @property
    def label(self) -> str:
        """The name as the table shows it (a forward argument is marked)."""
        return f"{self.name} (forward)" if self.forward else self.name


@dataclass(frozen=True)
class KindArguments:
    """A layer kind's class (``nn.Conv2d``, ``opacus.layers.DPLSTM``) and its arguments."""

    classes: tuple[str, ...]
    arguments: tuple[Argument, ...]


def _drawn(name: str, values: str, forward: bool = False) -> Argument:
    return Argument(name, values=values, forward=forward)


def _not(name: str, why: str, forward: bool = False) -> Argument:
    return Argument(name, why_not=why, forward=forward)


#: Marks an argument drawn as an int or as a tuple of one value per dimension (the table's note says so).
PER_DIM = "†"
_PER_DIM = PER_DIM


#: What a convolution and a transposed one draw alike.
_CONV_SIZES = (
    _drawn("in_channels, out_channels, groups", "1-6 channels, groups 1-3 dividing both"),
    _drawn("kernel_size", f"1-3{_PER_DIM}"),
    _drawn("stride", f"1-2{_PER_DIM}"),
    _drawn("dilation", f"1-2{_PER_DIM}"),
)


def _conv(dims: int) -> KindArguments:
    return KindArguments(
        (f"nn.Conv{dims}d",),
        (
            *_CONV_SIZES,
            _drawn("padding", f"least an output needs or 1 more{_PER_DIM}, 'valid', 'same' (stride 1); in a stack the kernel fits the input"),
            _drawn("padding_mode", f"{', '.join(PADDING_MODES)} (reflect: padding below the side, circular: up to it)"),
            _drawn("bias", "True, False"),
        ),
    )


def _conv_transpose(dims: int) -> KindArguments:
    return KindArguments(
        (f"nn.ConvTranspose{dims}d",),
        (
            *_CONV_SIZES,
            _drawn("padding", f"0-1{_PER_DIM} (0 in a stack: no output cropped)"),
            _drawn("output_padding", f"below stride or dilation{_PER_DIM}"),
            _drawn("bias", "True, False"),
            _not("padding_mode", "only 'zeros' is legal for a transposed convolution"),
            _not("output_size", "the output_padding it picks is drawn directly", forward=True),
        ),
    )


def _norm_affine(name: str) -> Argument:
    return _drawn(name, "True (alone), True or False in a stack (another layer has parameters)")


_RECURRENT_COMMON = (
    _drawn("input_size, hidden_size", "1-5"),
    _drawn("num_layers", "1-2"),
    _drawn("bias", "True, False"),
    _drawn("batch_first", "True, False (the model transposes: it stays batch first)"),
    _drawn("bidirectional", "True, False"),
    _not("dropout", RANDOM),
)
_DP_PROJ = _not("proj_size", "Opacus' DP layers raise NotImplementedError for proj_size > 0")
_NO_PROJ = _not("proj_size", "LSTM only: torch raises for any other kind")
_NONLINEARITY = _drawn("nonlinearity", ", ".join(NONLINEARITIES))
_GRU_NO_NONLINEARITY = _not("nonlinearity", "RNN only")


#: Why DPMultiheadAttention is drawn batch first only.
DP_MHA_SEQUENCE_FIRST = (
    "True only: sequence first, its inner Linear layers get the sequence in dimension 0, which every hook-based "
    "method (Opacus, ExpandedWeights, BackPACK) takes for the batch (GradSampleModule(batch_first=False) is "
    "Opacus' answer, for a whole model); whether that fails depends on the batch size too, which no row can say"
)


def _attention(cls: str, batch_first: Argument) -> KindArguments:
    return KindArguments(
        (cls,),
        (
            _drawn("embed_dim, num_heads", "1-3 heads of 1-3 dimensions"),
            _drawn("bias, add_bias_kv, add_zero_attn", "True, False each"),
            batch_first,
            _not("kdim, vdim", KEEPS_ONLY_SELF_ATTENTION),
            _not("dropout", RANDOM),
        ),
    )


_INDEX_INPUTS = "ids below num_embeddings, the first one repeated, the padding index only last"

#: Every layer kind the property suite draws, by its name in test ids and the support matrix.
ARGUMENTS: dict[str, KindArguments] = {
    "linear": KindArguments(
        ("nn.Linear",),
        (_drawn("in_features, out_features", "1-6 (on a vector or a sequence of 1-4)"), _drawn("bias", "True, False")),
    ),
    **{f"conv{d}d": _conv(d) for d in (1, 2, 3)},
    **{f"conv_transpose{d}d": _conv_transpose(d) for d in (1, 2, 3)},
    "embedding": KindArguments(
        ("nn.Embedding",),
        (
            _drawn("num_embeddings, embedding_dim", "2-8, 1-5, over 1-6 tokens: " + _INDEX_INPUTS),
            _drawn("padding_idx", "None or any id (every sequence ends in it)"),
            _not("scale_grad_by_freq", SCALE_BY_FREQUENCY),
            _not("max_norm, norm_type", "max_norm renormalizes the weight in place in the forward"),
            _not("sparse", "a sparse .grad holds the same numbers: no per-sample method takes it"),
            _not("_weight, _freeze", PRIVATE),
        ),
    ),
    "embedding_bag": KindArguments(
        ("nn.EmbeddingBag",),
        (
            _drawn("num_embeddings, embedding_dim", "2-8, 1-5: " + _INDEX_INPUTS),
            _drawn("mode", ", ".join(BAG_MODES)),
            _drawn("input, offsets", "2-D (bags of one size) or 1-D with offsets (empty bags too); 1-3 bags a sample", forward=True),
            _drawn("include_last_offset", "True, False with offsets (2-D input ignores it)"),
            _drawn("per_sample_weights", "None or 0.5-1.5 by position, with mode 'sum' (the only one that takes them)", forward=True),
            _drawn("padding_idx", "None or any id (every sample ends in it)"),
            _not("scale_grad_by_freq", SCALE_BY_FREQUENCY),
            _not("max_norm, norm_type", "max_norm renormalizes the weight in place in the forward"),
            _not("sparse", "a sparse .grad holds the same numbers: no per-sample method takes it"),
            _not("_weight", PRIVATE),
        ),
    ),
    "layer_norm": KindArguments(
        ("nn.LayerNorm",),
        (
            _drawn("normalized_shape", "the last 1 or 2 dimensions (3 or more values)"),
            _norm_affine("elementwise_affine"),
            _drawn("bias", "True, False (torch 2.1 on)"),
            _not("eps", EPS),
        ),
    ),
    "rms_norm": KindArguments(
        ("nn.RMSNorm",),
        (
            _drawn("normalized_shape", "the last 1 or 2 dimensions (3 or more values)"),
            _norm_affine("elementwise_affine"),
            _not("eps", EPS),
        ),
    ),
    "group_norm": KindArguments(
        ("nn.GroupNorm",),
        (
            _drawn("num_groups, num_channels", "groups dividing 1-9 channels, 3 or more values a group"),
            _norm_affine("affine"),
            _drawn("bias", "True, False with affine (where torch takes it)"),
            _not("eps", EPS),
        ),
    ),
    "instance_norm": KindArguments(
        ("nn.InstanceNorm1d", "nn.InstanceNorm2d", "nn.InstanceNorm3d"),
        (
            _drawn("(dimensions), num_features", "1-3 spatial dimensions of 2-7, 1-4 channels"),
            _norm_affine("affine"),
            _drawn("bias", "True, False with affine (where torch takes it)"),
            _not("track_running_stats, momentum", RUNNING_STATS),
            _not("eps", EPS),
        ),
    ),
    "batch_norm": KindArguments(
        ("nn.BatchNorm1d", "nn.BatchNorm2d", "nn.BatchNorm3d"),
        (
            _drawn("(dimensions), num_features", "a vector or 1-3 spatial dimensions of 1-7, 1-4 channels"),
            _drawn("bias", "True, False (where torch takes it)"),
            _not("affine", "True only: BatchNorm is drawn alone"),
            _not("track_running_stats", EVAL_MODE),
            _not("momentum", "used in training only"),
            _not("eps", EPS),
        ),
    ),
    "rnn": KindArguments(("nn.RNN",), (*_RECURRENT_COMMON, _NONLINEARITY, _NO_PROJ)),
    "lstm": KindArguments(
        ("nn.LSTM",), (*_RECURRENT_COMMON, _drawn("proj_size", "0 or 1 to hidden_size - 1"), _GRU_NO_NONLINEARITY)
    ),
    "gru": KindArguments(("nn.GRU",), (*_RECURRENT_COMMON, _NO_PROJ, _GRU_NO_NONLINEARITY)),
    "dp_rnn": KindArguments(("opacus.layers.DPRNN",), (*_RECURRENT_COMMON, _NONLINEARITY, _DP_PROJ)),
    "dp_lstm": KindArguments(("opacus.layers.DPLSTM",), (*_RECURRENT_COMMON, _DP_PROJ)),
    "dp_gru": KindArguments(("opacus.layers.DPGRU",), (*_RECURRENT_COMMON, _DP_PROJ)),
    "mha": _attention("nn.MultiheadAttention", _drawn("batch_first", "True, False (the model transposes: it stays batch first)")),
    "dp_mha": _attention("opacus.layers.DPMultiheadAttention", _not("batch_first", DP_MHA_SEQUENCE_FIRST)),
}
