"""Hypothesis strategies that draw valid layer configurations and problems.

One composite strategy per layer kind. Each derives the input shape from what it drew (or
takes the previous layer's output shape in a stack), so every example is valid and nothing
is filtered out with ``assume``. Sizes stay small: one example costs milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from hypothesis import strategies as st

from harness.core.releases import LAYER_NORM_BIAS, NORM_BIAS
from harness.problems.arguments import BAG_LAYOUTS, BAG_MODES, NONLINEARITIES, PADDING_MODES
from harness.problems.drawn import LAYER_KINDS, Layer, Problem, Shape

MAX_BATCH = 8
_SPATIAL = {1: 7, 2: 5, 3: 4}  # the largest drawn side per number of spatial dimensions

LayerStrategy = Callable[..., st.SearchStrategy[Layer]]


def _per_dim(draw: st.DrawFn, ranges: Sequence[tuple[int, int]]) -> tuple[int | Shape, Shape]:
    """An argument drawn within ``ranges`` (inclusive, one per dimension): an int, the same on every
    dimension, or a tuple of one value per dimension; and its value on each dimension."""
    if draw(st.booleans()):
        each = tuple(draw(st.integers(low, high)) for low, high in ranges)
        return each, each
    low, high = max(r[0] for r in ranges), min(r[1] for r in ranges)
    if low > high:  # no one value fits every dimension
        each = tuple(low_ for low_, _ in ranges)
        return each, each
    value = draw(st.integers(low, high))
    return value, (value,) * len(ranges)


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


def _pad_limit(mode: str, size: int) -> int:
    """The most padding ``padding_mode`` takes on a side of ``size`` values (reflect mirrors the
    values beyond the edge, circular wraps them around)."""
    return {"reflect": size - 1, "circular": size}.get(mode, 2 * _SPATIAL[1])


def _padding(draw: st.DrawFn, sizes: Shape, spans: Shape, strides: Shape) -> tuple[int | Shape | str, str, Shape]:
    """(padding, padding_mode, output sizes) of a convolution: a padding that leaves an output
    (up to one more), 'valid' where no padding is needed, 'same' at stride 1; a mode that can pad so much."""
    least = [max(0, -(-(span - size) // 2)) for size, span in zip(sizes, spans, strict=True)]
    options: list[tuple[str, str]] = []
    for mode in PADDING_MODES:
        limits = [_pad_limit(mode, size) for size in sizes]
        if all(low <= limit for low, limit in zip(least, limits, strict=True)):
            options.append(("int", mode))
        if not any(least):
            options.append(("valid", mode))
        if all(s == 1 for s in strides) and all(-(-(span - 1) // 2) <= limit for span, limit in zip(spans, limits, strict=True)):
            options.append(("same", mode))
    kind, mode = draw(st.sampled_from(options))
    if kind == "same":
        return "same", mode, sizes
    if kind == "valid":
        pads: Shape = (0,) * len(sizes)
        padding: int | Shape | str = "valid"
    else:
        limits = [_pad_limit(mode, size) for size in sizes]
        padding, pads = _per_dim(draw, [(low, min(low + 1, limit)) for low, limit in zip(least, limits, strict=True)])
    out = tuple((s + 2 * p - span) // stride + 1 for s, p, span, stride in zip(sizes, pads, spans, strides, strict=True))
    return padding, mode, out


@st.composite
def conv(draw: st.DrawFn, dims: int = 2, in_shape: Shape | None = None, min_width: int = 1) -> Layer:
    """``nn.Conv{1,2,3}d``: kernel, stride, dilation and padding (each an int or per dimension;
    'valid', 'same'), every padding mode, groups dividing the channels, bias. On a given input
    (in a stack) the kernel's span fits it, so the output reads the input, not only its padding:
    else the layers before get no gradient."""
    in_channels, out_channels, groups = _grouped_channels(draw, in_shape[0] if in_shape else None, min_width)
    sizes = in_shape[1:] if in_shape else _spatial(draw, dims)
    fits = sizes if in_shape else (_SPATIAL[dims] + 2,) * dims
    kernel, kernels = _per_dim(draw, [(1, min(3, size)) for size in fits])
    dilation, dilations = _per_dim(draw, [(1, 2 if k == 1 or 2 * (k - 1) < size else 1) for k, size in zip(kernels, fits, strict=True)])
    stride, strides = _per_dim(draw, [(1, 2)] * dims)
    spans = tuple(d * (k - 1) + 1 for k, d in zip(kernels, dilations, strict=True))
    padding, mode, out = _padding(draw, sizes, spans, strides)
    args = dict(
        in_channels=in_channels, out_channels=out_channels, kernel_size=kernel, stride=stride,
        padding=padding, dilation=dilation, groups=groups, bias=draw(st.booleans()), padding_mode=mode,
    )
    return Layer(f"conv{dims}d", tuple(args.items()), (in_channels, *sizes), (out_channels, *out))


@st.composite
def conv_transpose(draw: st.DrawFn, dims: int = 2, in_shape: Shape | None = None, min_width: int = 1) -> Layer:
    """``nn.ConvTranspose{1,2,3}d``, each size argument an int or per dimension, with an output
    padding smaller than stride or dilation; unpadded in a stack, so that no output it writes is
    cropped away (the layers before would get no gradient)."""
    in_channels, out_channels, groups = _grouped_channels(draw, in_shape[0] if in_shape else None, min_width)
    kernel, kernels = _per_dim(draw, [(1, 3)] * dims)
    dilation, dilations = _per_dim(draw, [(1, 2)] * dims)
    stride, strides = _per_dim(draw, [(1, 2)] * dims)
    sizes = in_shape[1:] if in_shape else _spatial(draw, dims)
    grown = [(s - 1) * st_ + d * (k - 1) for s, st_, d, k in zip(sizes, strides, dilations, kernels, strict=True)]
    padding, pads = _per_dim(draw, [(0, 0 if in_shape else min(1, g // 2)) for g in grown])
    output_padding, extra = _per_dim(draw, [(0, max(s, d) - 1) for s, d in zip(strides, dilations, strict=True)])
    out = tuple(g - 2 * p + e + 1 for g, p, e in zip(grown, pads, extra, strict=True))
    args = dict(
        in_channels=in_channels, out_channels=out_channels, kernel_size=kernel, stride=stride, padding=padding,
        output_padding=output_padding, groups=groups, bias=draw(st.booleans()), dilation=dilation,
    )
    return Layer(f"conv_transpose{dims}d", tuple(args.items()), (in_channels, *sizes), (out_channels, *out))


@st.composite
def linear(draw: st.DrawFn, in_shape: Shape | None = None, min_width: int = 1) -> Layer:
    """``nn.Linear`` with and without bias, on vectors or on a short sequence of them."""
    if in_shape is None:
        in_shape = (*draw(st.lists(st.integers(1, 4), max_size=1)), draw(st.integers(1, 6)))
    out_features = draw(st.integers(min_width, 6))
    args = dict(in_features=in_shape[-1], out_features=out_features, bias=draw(st.booleans()))
    return Layer("linear", tuple(args.items()), in_shape, (*in_shape[:-1], out_features))


def _vocabulary(draw: st.DrawFn) -> dict[str, object]:
    """The constructor arguments ``nn.Embedding`` and ``nn.EmbeddingBag`` share (``padding_idx``: an
    id the drawn inputs hit)."""
    num_embeddings = draw(st.integers(2, 8))
    return dict(
        num_embeddings=num_embeddings, embedding_dim=draw(st.integers(1, 5)),
        padding_idx=draw(st.none() | st.integers(0, num_embeddings - 1)),
    )


@st.composite
def embedding(draw: st.DrawFn) -> Layer:
    """``nn.Embedding`` over a short sequence of token ids, with or without ``padding_idx``."""
    args = _vocabulary(draw)
    length = draw(st.integers(1, 6))
    return Layer("embedding", tuple(args.items()), (length,), (length, args["embedding_dim"]))


@st.composite
def embedding_bag(draw: st.DrawFn) -> Layer:
    """``nn.EmbeddingBag`` over each sample's ids in 1 to 3 bags: every mode, a 2-D input (bags of
    one size) or a flat one with offsets (any sizes, empty bags, ``include_last_offset``),
    ``per_sample_weights`` with mode 'sum', ``padding_idx``."""
    args = _vocabulary(draw)
    mode = draw(st.sampled_from(BAG_MODES))
    layout = draw(st.sampled_from(BAG_LAYOUTS))
    count = draw(st.integers(1, 3))
    if layout == "2d":
        size = draw(st.integers(1, 3))
        length, bags = count * size, tuple(range(0, count * size, size))
    else:
        length = draw(st.integers(1, 6))
        bags = (0, *sorted(draw(st.lists(st.integers(0, length), min_size=count - 1, max_size=count - 1))))
    args.update(
        mode=mode,
        include_last_offset=layout == "offsets" and draw(st.booleans()),
        layout=layout, bags=bags, weighted=mode == "sum" and draw(st.booleans()),
    )
    return Layer("embedding_bag", tuple(args.items()), (length,), (len(bags), args["embedding_dim"]))


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


def _affine(draw: st.DrawFn, optional: bool) -> bool:
    """Whether a normalization has its parameters: always alone, drawn where others have some."""
    return not optional or draw(st.booleans())


@st.composite
def layer_norm(draw: st.DrawFn, in_shape: Shape | None = None, optional: bool = False) -> Layer:
    """``nn.LayerNorm`` over the last one or two dimensions, with or without its parameters
    (``optional``: where another layer has some), with or without a bias (always with one
    before torch 2.1, which has no ``bias`` argument)."""
    in_shape, normalized = _normalized_shape(draw, in_shape)
    affine = _affine(draw, optional)
    args: dict[str, object] = dict(normalized_shape=normalized, elementwise_affine=affine)
    if LAYER_NORM_BIAS.available:
        args.update(bias=affine and draw(st.booleans()))
    return Layer("layer_norm", tuple(args.items()), in_shape, in_shape)


@st.composite
def rms_norm(draw: st.DrawFn, in_shape: Shape | None = None, optional: bool = False) -> Layer:
    """``nn.RMSNorm`` over the last one or two dimensions, with or without its weight (``optional``)."""
    in_shape, normalized = _normalized_shape(draw, in_shape)
    args = dict(normalized_shape=normalized, elementwise_affine=_affine(draw, optional))
    return Layer("rms_norm", tuple(args.items()), in_shape, in_shape)


def _norm_parameters(draw: st.DrawFn, optional: bool) -> dict[str, bool]:
    """``affine`` and, where torch takes it, ``bias`` of a GroupNorm or InstanceNorm."""
    affine = _affine(draw, optional)
    return dict(affine=affine, bias=affine and draw(st.booleans())) if NORM_BIAS.available else dict(affine=affine)


@st.composite
def group_norm(draw: st.DrawFn, in_shape: Shape | None = None, optional: bool = False) -> Layer:
    """``nn.GroupNorm`` with a group count dividing the channels and enough values per group."""
    if in_shape is None:
        groups = draw(st.integers(1, 3))
        channels = groups * draw(st.integers(1, 3))
        in_shape = (channels, *_spatial(draw, draw(st.integers(1, 2)), min_size=2))
    channels, size = in_shape[0], math.prod(in_shape[1:])
    groups = draw(st.sampled_from([g for g in range(1, channels + 1) if channels % g == 0 and channels // g * size >= MIN_NORMALIZED] or [1]))
    args = dict(num_groups=groups, num_channels=channels, **_norm_parameters(draw, optional))
    return Layer("group_norm", tuple(args.items()), in_shape, in_shape)


@st.composite
def instance_norm(draw: st.DrawFn, dims: int | None = None, in_shape: Shape | None = None, optional: bool = False) -> Layer:
    """``nn.InstanceNorm{1,2,3}d`` (enough values per channel), with or without its parameters."""
    if in_shape is None:
        dims = dims or draw(st.integers(1, 3))
        in_shape = (draw(st.integers(1, 4)), *_spatial(draw, dims, min_size=2))
    args = dict(dims=len(in_shape) - 1, num_features=in_shape[0], **_norm_parameters(draw, optional))
    return Layer("instance_norm", tuple(args.items()), in_shape, in_shape)


@st.composite
def batch_norm(draw: st.DrawFn) -> Layer:
    """``nn.BatchNorm{1,2,3}d`` in eval mode (by its running statistics) on vectors or 1 to 3
    spatial dimensions, with or without a bias (where torch takes it)."""
    dims = draw(st.integers(0, 3))
    in_shape = (draw(st.integers(1, 4)), *_spatial(draw, dims)) if dims else (draw(st.integers(1, 4)),)
    args = dict(dims=dims, num_features=in_shape[0], **_norm_parameters(draw, optional=False))
    return Layer("batch_norm", tuple(args.items()), in_shape, in_shape)


@st.composite
def recurrent(draw: st.DrawFn, kind: str = "lstm") -> Layer:
    """``nn.RNN``/``LSTM``/``GRU`` or Opacus' ``DP*`` twin: layers, bias, direction, layout; the
    RNNs' nonlinearity, the LSTM's projection."""
    input_size, hidden = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    length = draw(st.integers(1, 5))
    bidirectional = draw(st.booleans())
    args: dict[str, object] = dict(
        input_size=input_size, hidden_size=hidden, num_layers=draw(st.integers(1, 2)),
        bias=draw(st.booleans()), batch_first=draw(st.booleans()), bidirectional=bidirectional,
    )
    if kind in ("rnn", "dp_rnn"):
        args.update(nonlinearity=draw(st.sampled_from(NONLINEARITIES)))
    width = hidden
    if kind == "lstm" and hidden > 1:
        args.update(proj_size=draw(st.integers(0, hidden - 1)))
        width = args["proj_size"] or hidden
    return Layer(kind, tuple(args.items()), (length, input_size), (length, width * (2 if bidirectional else 1)))


@st.composite
def attention(draw: st.DrawFn, kind: str = "mha") -> Layer:
    """``nn.MultiheadAttention`` (batch first or not) or Opacus' ``DPMultiheadAttention`` (batch
    first: the argument table says why) as self-attention."""
    heads = draw(st.integers(1, 3))
    embed_dim = heads * draw(st.integers(1, 3))
    length = draw(st.integers(1, 5))
    args = dict(
        embed_dim=embed_dim, num_heads=heads, bias=draw(st.booleans()),
        add_bias_kv=draw(st.booleans()), add_zero_attn=draw(st.booleans()),
        batch_first=kind == "dp_mha" or draw(st.booleans()),
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
#: Each takes the input shape and whether it may go without parameters (a normalization may,
#: where another layer of the stack has some).
_VECTOR_STACK: tuple[tuple[LayerStrategy, Callable[[Shape], bool]], ...] = (
    (lambda in_shape, optional: linear(in_shape, min_width=MIN_NORMALIZED), _anything),
    (layer_norm, _normalizable),
    *([(rms_norm, _normalizable)] if LAYER_KINDS["rms_norm"].missing() is None else []),
)
_IMAGE_STACK: tuple[tuple[LayerStrategy, Callable[[Shape], bool]], ...] = (
    (lambda in_shape, optional: conv(2, in_shape, min_width=MIN_NORMALIZED), _anything),
    (lambda in_shape, optional: conv_transpose(2, in_shape, min_width=MIN_NORMALIZED), _anything),
    (group_norm, lambda shape: math.prod(shape) >= MIN_NORMALIZED),
    (lambda in_shape, optional: instance_norm(in_shape=in_shape, optional=optional), _per_channel_normalizable),
)


@st.composite
def stack(draw: st.DrawFn) -> tuple[Layer, ...]:
    """Two or three layers of one family (vectors or images), each taking the last one's output."""
    if draw(st.booleans()):
        family, shape = _VECTOR_STACK, (*draw(st.lists(st.integers(1, 3), max_size=1)), draw(st.integers(MIN_NORMALIZED, 6)))
    else:
        family, shape = _IMAGE_STACK, (draw(st.integers(MIN_NORMALIZED, 4)), *_spatial(draw, 2, min_size=2))
    layers: list[Layer] = []
    count = draw(st.integers(2, 3))
    for n in range(count):
        options = [make for make, accepts in family if accepts(shape)]
        optional = n < count - 1 or any(layer.has_parameters for layer in layers)
        layers.append(draw(draw(st.sampled_from(options))(in_shape=shape, optional=optional)))
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
    **{f"conv_transpose{d}d": _single(conv_transpose(d)) for d in (1, 2, 3)},
    "embedding": _single(embedding()),
    "embedding_bag": _single(embedding_bag()),
    "layer_norm": _single(layer_norm()),
    "rms_norm": _single(rms_norm()),
    "group_norm": _single(group_norm()),
    "instance_norm": _single(instance_norm()),
    "batch_norm": _single(batch_norm()),
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
