"""Hypothesis strategies that draw valid layer configurations and problems.

One composite strategy per layer kind. Each derives the input shape from what it drew (or
takes the previous layer's output shape in a stack), so every example is valid and nothing
is filtered out with ``assume``. Sizes stay small: one example costs milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from hypothesis import strategies as st

from harness.core.releases import LAYER_NORM_BIAS
from harness.problems.drawn import LAYER_KINDS, Layer, Problem, Shape

MAX_BATCH = 8
_SPATIAL = {1: 7, 2: 5, 3: 4}  # the largest drawn side per number of spatial dimensions

LayerStrategy = Callable[..., st.SearchStrategy[Layer]]


def _out_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _grouped_channels(draw: st.DrawFn, in_channels: int | None, min_width: int = 1) -> tuple[int, int, int]:
    """(in_channels, out_channels, groups) with groups dividing both, at least ``min_width`` out."""
    if in_channels is None:
        groups = draw(st.sampled_from((1, 1, 2, 3)))
        in_channels = groups * draw(st.integers(1, 2))
    else:
        groups = draw(st.sampled_from([g for g in (1, 2, 3) if in_channels % g == 0]))
    least = -(-min_width // groups)
    out_channels = groups * draw(st.integers(least, least + 1))
    return in_channels, out_channels, groups


def _spatial(draw: st.DrawFn, dims: int, min_size: int = 1) -> Shape:
    return tuple(draw(st.integers(min_size, _SPATIAL[dims])) for _ in range(dims))


@st.composite
def conv(draw: st.DrawFn, dims: int = 2, in_shape: Shape | None = None, min_width: int = 1) -> Layer:
    """``nn.Conv{1,2,3}d``: kernel, stride, padding, dilation, groups dividing the channels, bias."""
    in_channels, out_channels, groups = _grouped_channels(draw, in_shape[0] if in_shape else None, min_width)
    kernel = draw(st.integers(1, 3))
    dilation = draw(st.integers(1, 2))
    stride = draw(st.integers(1, 2))
    span = dilation * (kernel - 1) + 1
    sizes = in_shape[1:] if in_shape else _spatial(draw, dims)
    min_padding = max(0, -(-(span - min(sizes)) // 2))
    padding = draw(st.integers(min_padding, min_padding + 1))
    out = tuple(_out_size(s, kernel, stride, padding, dilation) for s in sizes)
    args = dict(
        in_channels=in_channels, out_channels=out_channels, kernel_size=kernel, stride=stride,
        padding=padding, dilation=dilation, groups=groups, bias=draw(st.booleans()),
    )
    return Layer(f"conv{dims}d", tuple(args.items()), (in_channels, *sizes), (out_channels, *out))


@st.composite
def conv_transpose2d(draw: st.DrawFn, in_shape: Shape | None = None, min_width: int = 1) -> Layer:
    """``nn.ConvTranspose2d``, with an output padding smaller than stride or dilation."""
    in_channels, out_channels, groups = _grouped_channels(draw, in_shape[0] if in_shape else None, min_width)
    kernel, dilation, stride = draw(st.integers(1, 3)), draw(st.integers(1, 2)), draw(st.integers(1, 2))
    sizes = in_shape[1:] if in_shape else _spatial(draw, 2)
    grown = min((s - 1) * stride + dilation * (kernel - 1) for s in sizes)
    padding = draw(st.integers(0, min(1, grown // 2)))
    output_padding = draw(st.integers(0, max(stride, dilation) - 1))
    out = tuple((s - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1 for s in sizes)
    args = dict(
        in_channels=in_channels, out_channels=out_channels, kernel_size=kernel, stride=stride, padding=padding,
        output_padding=output_padding, groups=groups, bias=draw(st.booleans()), dilation=dilation,
    )
    return Layer("conv_transpose2d", tuple(args.items()), (in_channels, *sizes), (out_channels, *out))


@st.composite
def linear(draw: st.DrawFn, in_shape: Shape | None = None, min_width: int = 1) -> Layer:
    """``nn.Linear`` with and without bias, on vectors or on a short sequence of them."""
    if in_shape is None:
        in_shape = (*draw(st.lists(st.integers(1, 4), max_size=1)), draw(st.integers(1, 6)))
    out_features = draw(st.integers(min_width, 6))
    args = dict(in_features=in_shape[-1], out_features=out_features, bias=draw(st.booleans()))
    return Layer("linear", tuple(args.items()), in_shape, (*in_shape[:-1], out_features))


@st.composite
def embedding(draw: st.DrawFn) -> Layer:
    """``nn.Embedding`` over a short sequence of token ids, with or without ``padding_idx``."""
    num_embeddings = draw(st.integers(2, 8))
    dim = draw(st.integers(1, 5))
    length = draw(st.integers(1, 6))
    padding_idx = draw(st.none() | st.integers(0, num_embeddings - 1))
    args = dict(num_embeddings=num_embeddings, embedding_dim=dim, padding_idx=padding_idx)
    return Layer("embedding", tuple(args.items()), (length,), (length, dim))


#: A normalization over fewer values is degenerate: with one value (or two, centred) its output
#: hardly depends on its input, so the gradient of what comes before is rounding noise.
MIN_NORMALIZED = 3


def _normalized_shape(draw: st.DrawFn, in_shape: Shape | None) -> tuple[Shape, Shape]:
    """(input shape, normalized trailing shape) with at least ``MIN_NORMALIZED`` normalized values."""
    if in_shape is None:
        in_shape = (*draw(st.lists(st.integers(1, 4), max_size=2)), draw(st.integers(MIN_NORMALIZED, 6)))
    counts = [d for d in (1, 2) if d <= len(in_shape) and math.prod(in_shape[-d:]) >= MIN_NORMALIZED]
    dims = draw(st.sampled_from(counts or [len(in_shape)]))
    return in_shape, in_shape[-dims:]


def _normalizable(shape: Shape) -> bool:
    return math.prod(shape[-2:]) >= MIN_NORMALIZED


@st.composite
def layer_norm(draw: st.DrawFn, in_shape: Shape | None = None) -> Layer:
    """``nn.LayerNorm`` over the last one or two dimensions, with or without a bias (always with
    one before torch 2.1, which has no ``bias`` argument)."""
    in_shape, normalized = _normalized_shape(draw, in_shape)
    args = dict(normalized_shape=normalized, elementwise_affine=True)
    if LAYER_NORM_BIAS.available:
        args.update(bias=draw(st.booleans()))
    return Layer("layer_norm", tuple(args.items()), in_shape, in_shape)


@st.composite
def rms_norm(draw: st.DrawFn, in_shape: Shape | None = None) -> Layer:
    """``nn.RMSNorm`` over the last one or two dimensions."""
    in_shape, normalized = _normalized_shape(draw, in_shape)
    return Layer("rms_norm", (("normalized_shape", normalized),), in_shape, in_shape)


@st.composite
def group_norm(draw: st.DrawFn, in_shape: Shape | None = None) -> Layer:
    """``nn.GroupNorm`` with a group count dividing the channels and enough values per group."""
    if in_shape is None:
        groups = draw(st.integers(1, 3))
        channels = groups * draw(st.integers(1, 3))
        in_shape = (channels, *_spatial(draw, draw(st.integers(1, 2)), min_size=2))
    channels, size = in_shape[0], math.prod(in_shape[1:])
    groups = draw(st.sampled_from([g for g in range(1, channels + 1) if channels % g == 0 and channels // g * size >= MIN_NORMALIZED] or [1]))
    args = dict(num_groups=groups, num_channels=channels, affine=True)
    return Layer("group_norm", tuple(args.items()), in_shape, in_shape)


@st.composite
def instance_norm(draw: st.DrawFn, dims: int | None = None, in_shape: Shape | None = None) -> Layer:
    """``nn.InstanceNorm{1,2,3}d`` with ``affine=True`` (enough values per channel)."""
    if in_shape is None:
        dims = dims or draw(st.integers(1, 3))
        in_shape = (draw(st.integers(1, 4)), *_spatial(draw, dims, min_size=2))
    args = dict(dims=len(in_shape) - 1, num_features=in_shape[0], affine=True)
    return Layer("instance_norm", tuple(args.items()), in_shape, in_shape)


@st.composite
def recurrent(draw: st.DrawFn, kind: str = "lstm") -> Layer:
    """``nn.RNN``/``LSTM``/``GRU`` or Opacus' ``DP*`` twin: layers, bias, direction; batch first."""
    input_size, hidden = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    length = draw(st.integers(1, 5))
    bidirectional = draw(st.booleans())
    args = dict(
        input_size=input_size, hidden_size=hidden, num_layers=draw(st.integers(1, 2)),
        bias=draw(st.booleans()), batch_first=True, bidirectional=bidirectional,
    )
    return Layer(kind, tuple(args.items()), (length, input_size), (length, hidden * (2 if bidirectional else 1)))


@st.composite
def attention(draw: st.DrawFn, kind: str = "mha") -> Layer:
    """``nn.MultiheadAttention`` or Opacus' ``DPMultiheadAttention`` as self-attention, batch first."""
    heads = draw(st.integers(1, 3))
    embed_dim = heads * draw(st.integers(1, 3))
    length = draw(st.integers(1, 5))
    args = dict(
        embed_dim=embed_dim, num_heads=heads, bias=draw(st.booleans()),
        add_bias_kv=draw(st.booleans()), add_zero_attn=draw(st.booleans()), batch_first=True,
    )
    return Layer(kind, tuple(args.items()), (length, embed_dim), (length, embed_dim))


def _anything(shape: Shape) -> bool:
    return True


def _per_channel_normalizable(shape: Shape) -> bool:
    return math.prod(shape[1:]) >= MIN_NORMALIZED


#: The layers stacks are grown from, per family, with the inputs each can take: a strided conv
#: can leave too few values for a normalization after it. Stacked layers are at least
#: ``MIN_NORMALIZED`` wide: a narrower one feeding a normalization (a 1-channel 1x1 conv is a
#: scale and a shift, which the normalization undoes) leaves float32 nothing but rounding noise.
_VECTOR_STACK: tuple[tuple[LayerStrategy, Callable[[Shape], bool]], ...] = (
    (lambda in_shape: linear(in_shape, min_width=MIN_NORMALIZED), _anything),
    (layer_norm, _normalizable),
    *([(rms_norm, _normalizable)] if LAYER_KINDS["rms_norm"].missing() is None else []),
)
_IMAGE_STACK: tuple[tuple[LayerStrategy, Callable[[Shape], bool]], ...] = (
    (lambda in_shape: conv(2, in_shape, min_width=MIN_NORMALIZED), _anything),
    (lambda in_shape: conv_transpose2d(in_shape, min_width=MIN_NORMALIZED), _anything),
    (group_norm, lambda shape: math.prod(shape) >= MIN_NORMALIZED),
    (lambda in_shape: instance_norm(in_shape=in_shape), _per_channel_normalizable),
)


@st.composite
def stack(draw: st.DrawFn) -> tuple[Layer, ...]:
    """Two or three layers of one family (vectors or images), each taking the last one's output."""
    if draw(st.booleans()):
        family, shape = _VECTOR_STACK, (*draw(st.lists(st.integers(1, 3), max_size=1)), draw(st.integers(MIN_NORMALIZED, 6)))
    else:
        family, shape = _IMAGE_STACK, (draw(st.integers(MIN_NORMALIZED, 4)), *_spatial(draw, 2, min_size=2))
    layers: list[Layer] = []
    for _ in range(draw(st.integers(2, 3))):
        options = [make for make, accepts in family if accepts(shape)]
        layers.append(draw(draw(st.sampled_from(options))(in_shape=shape)))
        shape = layers[-1].out_shape
    return tuple(layers)


def _single(strategy: st.SearchStrategy[Layer]) -> st.SearchStrategy[tuple[Layer, ...]]:
    return strategy.map(lambda layer: (layer,))


#: What the property tests are parametrized over: a name (in test ids) and the layers it draws.
LAYER_STRATEGIES: dict[str, st.SearchStrategy[tuple[Layer, ...]]] = {
    "linear": _single(linear()),
    "conv1d": _single(conv(1)),
    "conv2d": _single(conv(2)),
    "conv3d": _single(conv(3)),
    "conv_transpose2d": _single(conv_transpose2d()),
    "embedding": _single(embedding()),
    "layer_norm": _single(layer_norm()),
    "rms_norm": _single(rms_norm()),
    "group_norm": _single(group_norm()),
    "instance_norm": _single(instance_norm()),
    **{kind: _single(recurrent(kind)) for kind in ("rnn", "lstm", "gru", "dp_rnn", "dp_lstm", "dp_gru")},
    "mha": _single(attention("mha")),
    "dp_mha": _single(attention("dp_mha")),
    "stack": stack(),
}


@st.composite
def problems(draw: st.DrawFn, layers: st.SearchStrategy[tuple[Layer, ...]]) -> Problem:
    """A problem around drawn layers: batch size 1 to 8, mean or sum loss reduction."""
    return Problem(
        layers=draw(layers),
        batch_size=draw(st.integers(1, MAX_BATCH)),
        loss_reduction=draw(st.sampled_from(("mean", "sum"))),
    )
