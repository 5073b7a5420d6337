"""The support matrix for drawn layers (the property suite): which method is expected to fail on
which layer configuration, and why. For a drawn stack, the first row that covers any of its
layers decides (the rows a plugin added come before these)."""

from __future__ import annotations

from typing import Any

import torch

from harness.checking.support.families import (
    BACKPACK_EMBEDDING_FLOAT64,
    BACKPACK_NO_EXTENSION,
    BATCHNORM_EXPANDED_WEIGHTS,
    EMBEDDING_PADDING_IGNORED,
    LSTM_OPACUS_FALLBACK,
    LSTM_VMAP_FLOAT64,
    MHA_EXPANDED_WEIGHTS,
    MHA_OPACUS_FALLBACK,
    OPACUS_EMBEDDING_FLOAT64,
    OPACUS_NO_FALLBACK,
    OPACUS_REFUSES_BATCHNORM,
    SDPA_VMAP_NO_FALLBACK,
    VMAP_RECURRENT_ERROR,
)
from harness.checking.support.families import EXPANDED_WEIGHTS as _EXPANDED_WEIGHTS
from harness.checking.support.families import OPACUS as _OPACUS
from harness.checking.support.families import VMAP_FAMILY as _VMAP_FAMILY
from harness.checking.support.rows import DrawnFailure
from harness.problems.drawn import Layer

_CONVOLUTIONS = ("conv1d", "conv2d", "conv3d")
_TRANSPOSED = ("conv_transpose1d", "conv_transpose2d", "conv_transpose3d")


def _padded_by_mode(layer: Layer) -> bool:
    """A convolution that pads (its padding, or 'same' with a kernel wider than one) in a mode other than zeros."""
    padding = layer.kwargs["padding"]
    spans = [d * (k - 1) + 1 for k, d in zip(layer.each("kernel_size"), layer.each("dilation"), strict=True)]
    padded = max(spans) > 1 if padding == "same" else padding != "valid" and max(layer.each("padding")) > 0
    return padded and layer.kwargs["padding_mode"] != "zeros"


def _backpack_misses_same(layer: Layer) -> bool:
    """A convolution with padding='same' whose padding for the output gradient as a kernel (an input
    side wide) differs from the padding for its own kernel, in some dimension: what BackPACK gets wrong."""
    if layer.kwargs["padding"] != "same":
        return False
    if max(layer.each("dilation")) > 1:
        return True
    return any((s - 1) // 2 != (k - 1) // 2 or s < k for s, k in zip(layer.in_shape[1:], layer.each("kernel_size"), strict=True))


def _weight_sees_the_input(layer: Layer) -> bool:
    """Whether some tap of a (transposed) convolution's kernel joins an input value to an output
    value in every dimension: a 1-wide kernel striding over the padding (or whose outputs are all
    cropped) can miss them all, and the weight's gradient is then zero."""
    padding, kernels, dilations = layer.kwargs["padding"], layer.each("kernel_size"), layer.each("dilation")
    if isinstance(padding, str):  # 'same' pads the left side by half the kernel's span, rounded down
        lefts = tuple(d * (k - 1) // 2 if padding == "same" else 0 for k, d in zip(kernels, dilations, strict=True))
    else:
        lefts = layer.each("padding")
    transposed = "output_padding" in layer.kwargs
    for size, k, s, d, p, out in zip(
        layer.in_shape[1:], kernels, layer.each("stride"), dilations, lefts, layer.out_shape[1:], strict=True
    ):
        # a convolution's output o reads input o * s + j * d - p; a transposed one's input i writes output i * s + j * d - p
        sources, bound = (range(out), size) if not transposed else (range(size), out)
        if not any(0 <= i * s + j * d - p < bound for i in sources for j in range(k)):
            return False
    return True


def _lstm_projects(layer: Layer) -> bool:
    return layer.kwargs.get("proj_size", 0) > 0


def _one_plain_bag(layer: Layer) -> bool:
    """An nn.EmbeddingBag with offsets, one bag of one id a sample, no last offset, no weights, in
    mode sum or mean without padding (or in mode max with, where the one id is the padding index and
    every gradient is zero): what Opacus' grad sampler gets right (``Problem.make_batch`` repeats
    the first id of a longer bag)."""
    kwargs = layer.kwargs
    return (
        kwargs["layout"] == "offsets" and len(kwargs["bags"]) == 1 and layer.in_shape[0] == 1
        and not kwargs["include_last_offset"] and not kwargs["weighted"]
        and (kwargs["padding_idx"] is None) == (kwargs["mode"] != "max")
    )

#: What BackPACK raises on the convolutions below (a string padding, 'same' with a dilation, an
#: output_padding): each row takes all three, since in a drawn stack the later layer raises first
#: (backward runs from the end), whatever the rows' order.
_BACKPACK_CONV_RAISES = (
    r"im2col\(\): argument 'padding' \(position \d+\) must be tuple of ints"
    r"|padding='same' is not supported for strided convolutions"
    r"|shape '\[[\d, ]+\]' is invalid for input of size \d+|Size of label 'i' for operand \d+ \(\d+\) does not match"
)

#: BackPACK on a convolution with padding='same': an error for a dilation above 1, else a wrong result.
_BACKPACK_SAME: dict[str, Any] = dict(
    methods=("backpack",),
    layers=_CONVOLUTIONS,
    checks=("grads", "clipped"),  # its BatchL2Grad norms are right (Conv1d, Conv3d) or fail first (Conv2d)
    reason=(
        "BackPACK's BatchGrad on a convolution with padding='same' computes the weight's per-sample gradient by "
        "a convolution of the input with the output gradient as its kernel and passes padding='same' on, which "
        "then pads for the output's size, not the kernel's: a wrong result, not an error, unless the two paddings "
        "agree (torch refuses it for a dilation above 1: an error). Seen on BackPACK 1.7.1 with torch 2.14.0; no "
        "upstream report found (docs/findings.md)"
    ),
    backpack=">=1.6",
)

#: Ghost clipping and the DP optimizer on an nn.Embedding with padding_idx (the hooks' row's range: the same grad sampler).
_GHOST_EMBEDDING_PADDING: dict[str, Any] = dict(
    error=r"differs from the reference: worst at (layers\.0\.weight|\|\|g\|\|), sample \d+",
    reason=(
        "wrong result, not an error: ghost clipping's embedding norm sampler ignores padding_idx too (its own "
        "code, not the grad sampler's), so the per-sample norms count the padding row and the wrong samples "
        "are clipped; the DP optimizer clips the hooks' per-sample gradients, which ignore it (the row above, "
        "measured on every release). Seen on Opacus 1.6.0 with torch 2.14.0; docs/findings.md has the grad "
        "sampler's repro"
    ),
    opacus=">=1.0",
)

def _one_output_channel_per_group(layer: Layer) -> bool:
    """A grouped, 1-wide transposed convolution whose groups have one output and several input
    channels each, with ``output_padding < stride``, where ATen hands it to oneDNN (torch 2.0's
    oneDNN refuses it): on more than one torch thread, or with a stride or dilation above 1."""
    groups, stride, output_padding, dilation = (
        layer.kwargs["groups"], layer.each("stride"), layer.each("output_padding"), layer.each("dilation")
    )
    return (
        groups > 1
        and layer.each("kernel_size") == (1,)
        and layer.kwargs["out_channels"] == groups < layer.kwargs["in_channels"]
        and output_padding[0] < stride[0]
        and (torch.get_num_threads() > 1 or stride[0] > 1 or dilation[0] > 1)
    )


#: Opacus 1.2.0's functorch fallback on nn.EmbeddingBag (no grad sampler yet): the methods it runs, per layout below.
_OPACUS_1_2_ON_BAGS: dict[str, Any] = {
    "methods": ("opacus-hooks", "opacus-functorch", "opacus-dpoptimizer"),
    "layers": ("embedding_bag",),
    "opacus": "==1.2.0",
}


DRAWN_MATRIX: tuple[DrawnFailure, ...] = (
    # Old releases first: a model refused as a whole fails so, whatever else its layers would do.
    DrawnFailure(
        layers=(*_TRANSPOSED, "lstm", "rnn", "gru", "mha", "rms_norm", "batch_norm", "embedding_bag"),
        when=lambda layer: layer.has_parameters,  # a normalization without parameters needs no grad sampler
        **OPACUS_NO_FALLBACK,
    ),
    DrawnFailure(
        methods=("*",),
        layers=("conv_transpose1d",),
        precisions=("float32",),
        when=_one_output_channel_per_group,
        error="could not construct a memory descriptor using a format tag",
        reason=(
            "torch 2.0's oneDNN cannot run a grouped ConvTranspose1d with a 1-wide kernel, one output channel and "
            "several input channels per group, and output_padding < stride, in float32 (the forward fails, for every "
            "method), where ATen hands it to oneDNN: on more than one torch thread, or with a stride or dilation above "
            "1 (on one thread, as under -n, stride 1 and dilation 1 pass). Measured with a repro "
            "(docs/findings.md): torch 2.0.1 fails at every ONEDNN_MAX_CPU_ISA cap; 2.1.2, 2.2.2 and 2.14.0 pass"
        ),
        link="https://github.com/pytorch/pytorch/issues/108676",
        torch="==2.0.*",
    ),
    DrawnFailure(
        methods=("opacus-hooks", "opacus-ghost", "opacus-dpoptimizer"),
        layers=("embedding_bag",),
        precisions=("float64",),
        when=_one_plain_bag,
        error=r"in float32, less precise than the case's float64|assigned grad has data of a different type",
        reason=(
            "Opacus' EmbeddingBag grad sampler builds its per-sample gradients in float32 (torch.zeros without a "
            "dtype, as its embedding sampler did: fixed for both in 1.6.0). Seen on Opacus 1.5.3 (torch 2.0.1); "
            "other releases before 1.6.0 not run"
        ),
        opacus="==1.5.3",
    ),
    DrawnFailure(
        methods=("opacus-ghost",),
        layers=("embedding",),
        precisions=("float64",),
        error=r"index_add_\(\): self \(Float\) and source \(Double\) must have the same scalar type",
        reason=(
            "Opacus' ghost clipping norm sampler for nn.Embedding adds float64 values into a float32 buffer, as its "
            "grad sampler did (fixed for both in 1.6.0). Seen on Opacus 1.5.3 (torch 2.0.1); other releases before "
            "1.6.0 not run"
        ),
        opacus="==1.5.3",
    ),
    DrawnFailure(layers=("batch_norm",), **OPACUS_REFUSES_BATCHNORM),
    DrawnFailure(layers=("batch_norm",), **BATCHNORM_EXPANDED_WEIGHTS),
    DrawnFailure(
        layers=("lstm",),
        **LSTM_VMAP_FLOAT64,
    ),
    DrawnFailure(
        methods=_VMAP_FAMILY + _OPACUS,
        layers=("lstm",),
        precisions=("float32", "tf32"),
        when=_lstm_projects,
        error=VMAP_RECURRENT_ERROR,
        reason=(
            "vmap over nn.LSTM(proj_size > 0) fails on the CPU in float32 too (without a projection only in "
            "float64); Opacus has no grad sampler for nn.LSTM and falls back to the same vmap. Seen on torch 2.0.1 "
            "and 2.14.0 (2.1 to 2.13 not run)"
        ),
        devices=("cpu",),
        torch=">=2.0",
    ),
    DrawnFailure(
        layers=("lstm",),
        **LSTM_OPACUS_FALLBACK,
    ),
    # BackPACK. Rows for failures it raises come before the row for parameters it leaves without a
    # result, and those before wrong results: in a drawn stack the raising layer fails first.
    DrawnFailure(
        methods=("backpack",),
        layers=("conv2d",),
        checks=("norms",),
        when=lambda layer: isinstance(layer.kwargs["padding"], str),
        error=_BACKPACK_CONV_RAISES,
        reason=(
            "BackPACK's BatchL2Grad hands a Conv2d's padding to im2col as it is: a string padding ('same', "
            "'valid') is a TypeError (Conv1d and Conv3d go another way, and their norms are right). Seen on "
            "BackPACK 1.7.1 with torch 2.14.0; no upstream report found (docs/findings.md)"
        ),
        backpack=">=1.6",
    ),
    DrawnFailure(
        when=lambda layer: layer.kwargs["padding"] == "same" and max(layer.each("dilation")) > 1,
        error=_BACKPACK_CONV_RAISES,
        **_BACKPACK_SAME,
    ),
    DrawnFailure(
        methods=("backpack",),
        layers=_TRANSPOSED,
        when=lambda layer: any(layer.each("output_padding")),
        error=_BACKPACK_CONV_RAISES + r"|per-sample gradient norms, differs from the reference",
        reason=(
            "BackPACK's ConvTranspose1d/2d/3d extensions do not account for output_padding and fail to reshape "
            "(BatchGrad) or in an einsum (BatchL2Grad; a grouped 1-wide kernel gets wrong norms instead)"
        ),
        backpack=">=1.6",
    ),
    DrawnFailure(
        methods=("backpack",),
        layers=("rnn", "lstm"),
        when=lambda layer: not layer.kwargs["bias"] or layer.kwargs["num_layers"] > 1 or layer.kwargs["bidirectional"]
        or not layer.kwargs["batch_first"] or layer.kwargs.get("nonlinearity") == "relu" or _lstm_projects(layer),
        error=(
            r"has no attribute 'bias_ih_l0'|only num_layers = 1 is supported|only bidirectional = False is supported"
            r"|Batch axis must be first|only nonlinearity = tanh is supported|only proj_size = 0 is supported"
        ),
        reason=(
            "BackPACK's RNN and LSTM extensions support a single unidirectional batch-first layer with biases only, "
            "with tanh (RNN) and without a projection (LSTM); each other setting raises"
        ),
        backpack=">=1.6",
    ),
    DrawnFailure(
        methods=("backpack",),
        layers=("embedding",),
        when=lambda layer: layer.kwargs["padding_idx"] is not None,
        error="Only padding_idx=None supported",
        reason="BackPACK's Embedding extension refuses padding_idx (an error, where Opacus and ExpandedWeights are wrong)",
        backpack=">=1.6",
    ),
    DrawnFailure(
        layers=("embedding",),
        when=lambda layer: layer.in_shape[0] > 1,
        **BACKPACK_EMBEDDING_FLOAT64,
    ),
    DrawnFailure(
        layers=(
            "layer_norm",
            "rms_norm",
            "group_norm",
            "instance_norm",
            "mha",
            "gru",
            "dp_rnn",
            "dp_lstm",
            "dp_gru",
            "dp_mha",
            "embedding_bag",
        ),
        when=lambda layer: layer.has_parameters and (layer.kind != "dp_mha" or layer.kwargs["add_bias_kv"]),
        **BACKPACK_NO_EXTENSION,
    ),
    # Wrong results come last: in a drawn stack, a layer that raises fails first.
    DrawnFailure(
        when=lambda layer: _backpack_misses_same(layer) and max(layer.each("dilation")) == 1,
        error=r"start \(\d+\) \+ length \(\d+\) exceeds dimension size|differs from the reference",
        **_BACKPACK_SAME,
    ),
    DrawnFailure(
        methods=("backpack",),
        layers=_CONVOLUTIONS,
        when=_padded_by_mode,
        error=r"differs from the reference",
        reason=(
            "wrong result, not an error: BackPACK unfolds a convolution's input with zeros whatever its "
            "padding_mode (reflect, replicate, circular), so the per-sample gradients and norms of a padded "
            "convolution are wrong. Seen on BackPACK 1.7.1 with torch 2.14.0; no upstream report found "
            "(docs/findings.md)"
        ),
        backpack=">=1.6",
    ),
    DrawnFailure(
        methods=("backpack",),
        layers=_CONVOLUTIONS + _TRANSPOSED,
        checks=("norms",),
        # with output_padding, the transposed convolution's einsum fails first (the output_padding row); a
        # kernel that never joins an input to an output has a zero gradient, whose norm comes out right
        when=lambda layer: layer.kwargs["groups"] > 1 and _weight_sees_the_input(layer)
        and not any(layer.each("output_padding") if "output_padding" in layer.kwargs else ()),
        error=r"per-sample gradient norms, differs from the reference",
        reason=(
            "wrong result, not an error: BackPACK's BatchL2Grad returns wrong per-sample squared norms for a grouped "
            "convolution (its BatchGrad gradients are right); the drawn conv2d with groups=2 is 155% off. The zoo's "
            "conv1d row, on every drawn convolution. Seen on BackPACK 1.7.1 with torch 2.14.0"
        ),
        backpack=">=1.6",
    ),
    # Found by the property suite.
    DrawnFailure(
        methods=_VMAP_FAMILY + _OPACUS,
        layers=("rnn", "gru"),
        error=VMAP_RECURRENT_ERROR,
        reason=(
            "vmap over nn.RNN and nn.GRU fails on the CPU in every precision (nn.LSTM only in "
            "float64); Opacus has no grad sampler for them and falls back to the same vmap"
        ),
        devices=("cpu",),
        torch=">=2.0",
    ),
    DrawnFailure(layers=("mha",), **MHA_OPACUS_FALLBACK),
    DrawnFailure(layers=("mha",), **MHA_EXPANDED_WEIGHTS),
    DrawnFailure(layers=("mha",), **SDPA_VMAP_NO_FALLBACK),
    DrawnFailure(
        methods=_EXPANDED_WEIGHTS,
        layers=_TRANSPOSED,
        error=r"Expanded Weights encountered but cannot handle function conv_transpose[123]d",
        reason="ExpandedWeights has no rule for conv_transpose1d, conv_transpose2d or conv_transpose3d",
        torch=">=2.0",
    ),
    DrawnFailure(
        methods=_EXPANDED_WEIGHTS,
        layers=("embedding_bag",),
        error="Expanded Weights encountered but cannot handle function embedding_bag",
        reason="ExpandedWeights has no rule for embedding_bag. Seen on torch 2.0.1 and 2.14.0 (2.1 to 2.13 not run)",
        torch=">=2.0",
    ),
    DrawnFailure(
        methods=_EXPANDED_WEIGHTS,
        layers=("group_norm",),
        when=lambda layer: layer.kwargs["affine"] and not layer.kwargs.get("bias", True),
        error="'GroupNormPerSampleGradBackward' object has no attribute 'bias'",
        reason=(
            "ExpandedWeights' group_norm rule reads the bias of a GroupNorm(bias=False) (the argument torch 2.12 "
            "added, pytorch/pytorch#176573), which has none. Seen on every release that has the argument, 2.12.1 "
            "to 2.15 (the release history); no upstream report found (docs/findings.md)"
        ),
        torch=">=2.12",
    ),
    DrawnFailure(
        methods=_EXPANDED_WEIGHTS,
        layers=("rms_norm",),
        when=lambda layer: layer.kwargs["elementwise_affine"],
        error="Expanded Weights encountered but cannot handle function rms_norm",
        reason="ExpandedWeights has no rule for rms_norm (Opacus' hooks have one)",
        torch=">=2.4",
    ),
    DrawnFailure(
        methods=_EXPANDED_WEIGHTS,
        layers=("lstm",),
        precisions=("float32", "tf32"),
        when=lambda layer: not _lstm_projects(layer),  # with a projection, no oneDNN kernel: it passes
        error="Expanded Weights encountered but cannot handle function (size|mkldnn_rnn_layer)",
        reason=(
            "ExpandedWeights has no rule for the float32 nn.LSTM CPU kernel (aten::mkldnn_rnn_layer) "
            "or, by configuration, the `size` call before it; torch 2.0 passes (it has no such kernel)"
        ),
        torch=">=2.1",
    ),
    DrawnFailure(
        methods=_EXPANDED_WEIGHTS,
        layers=("conv3d",),
        when=lambda layer: max(layer.each("dilation")) > 1 and layer.kwargs["groups"] > 1,
        error=r"dilation=\(\d+, \d+, \d+\) not supported",
        reason=(
            "ExpandedWeights' unfold3d raises NotImplementedError for a dilated Conv3d; it takes that path "
            "for groups > 1 (and for any Conv3d at batch size 32 or more, which the property suite does not draw)"
        ),
        torch=">=2.0",
    ),
    DrawnFailure(
        methods=("opacus-hooks",),
        layers=("conv3d",),
        when=lambda layer: max(layer.each("dilation")) > 1,
        error=r"dilation=\(\d+, \d+, \d+\) not supported",
        reason="Opacus before 1.1.1 has no dilated Conv3d in its unfold3d (NotImplementedError; measured on every release 1.0.0 to 1.1.0)",
        opacus="<1.1.1",
    ),
    # After the dilated-Conv3d refusal before 1.1.1 (unfold3d checks the dilation first), before the
    # float64 one from 1.1.1 and the padding_mode row: a string padding fails before either matters.
    DrawnFailure(
        methods=("opacus-hooks", "opacus-dpoptimizer"),
        layers=_CONVOLUTIONS,
        when=lambda layer: isinstance(layer.kwargs["padding"], str),
        error=(
            r"im2col\(\): argument 'padding'|unsupported operand type\(s\) for \+: 'int' and 'str'"
            r"|pad\(\): argument 'pad' \(position 2\) must be tuple of ints"
        ),
        reason=(
            "Opacus' convolution grad sampler before 1.2 adds the layer's padding to sizes as a number: a string "
            "padding ('same', 'valid') is a TypeError (Conv3d's unfold3d hands the string's characters to F.pad). "
            "Support came with https://github.com/meta-pytorch/opacus/pull/451 (in 1.2.0). Seen by the release "
            "history on 1.0.0 to 1.1.x, F.pad's wording by the direct runs of 1.1.1 and 1.1.2"
        ),
        opacus="<1.2",
    ),
    DrawnFailure(
        methods=("opacus-hooks",),
        layers=("conv3d",),
        precisions=("float64",),
        when=lambda layer: max(layer.each("dilation")) > 1,
        error=r"expected scalar type (Float but found Double|Double but found Float)|expected m1 and m2 to have the same dtype",
        reason=(
            "Opacus' unfold3d for a dilated Conv3d builds its dilation index in float32, so a float64 model fails; "
            "measured on every release 1.1.1 to 1.4.1"
        ),
        opacus=">=1.1.1,<1.5",
    ),
    DrawnFailure(layers=("embedding",), **OPACUS_EMBEDDING_FLOAT64),
    DrawnFailure(
        methods=("opacus-hooks",),
        layers=("embedding",),
        when=lambda layer: layer.kwargs["padding_idx"] is not None,
        **EMBEDDING_PADDING_IGNORED,
        opacus=">=1.0",
    ),
    DrawnFailure(
        methods=_EXPANDED_WEIGHTS,
        layers=("embedding",),
        when=lambda layer: layer.kwargs["padding_idx"] is not None,
        **EMBEDDING_PADDING_IGNORED,
        torch=">=2.0",
    ),
    DrawnFailure(
        methods=("opacus-hooks",),
        layers=("layer_norm",),
        when=lambda layer: layer.kwargs["elementwise_affine"] and not layer.kwargs.get("bias", True),
        error="'NoneType' object has no attribute '(requires_grad|dim)'",
        reason=(
            "Opacus' LayerNorm grad sampler reads layer.bias (bias.dim() to 1.1.2, bias.requires_grad from 1.1.3); "
            "LayerNorm(bias=False) has no bias. Measured on every release 1.0.0 to 1.6.0"
        ),
        torch=">=2.1",  # LayerNorm takes bias from torch 2.1
        opacus=">=1.0",
    ),
    DrawnFailure(
        methods=("opacus-ghost", "opacus-dpoptimizer"),
        layers=("layer_norm",),
        checks=("norms", "clipped"),
        when=lambda layer: layer.kwargs["elementwise_affine"] and not layer.kwargs.get("bias", True),
        error="'NoneType' object has no attribute '(requires_grad|dim)'",
        reason=(
            "The row above through ghost clipping's norm sampler and the DP optimizer's hooks: LayerNorm(bias=False) "
            "has no bias, which they read. Seen on Opacus 1.6.0 with torch 2.14.0; the range is the hooks' (the same "
            "grad sampler), measured on every release"
        ),
        torch=">=2.1",
        opacus=">=1.0",
    ),
    DrawnFailure(
        methods=("opacus-ghost",),
        layers=("linear",),
        checks=("norms", "clipped"),
        # a sample with a sequence dimension: the layer's input is (B, T, F)
        when=lambda layer: layer.kwargs["bias"] and len(layer.in_shape) > 1,
        error=r"differs from the reference: worst at (layers\.\d+\.(weight|bias)|\|\|g\|\|), sample \d+",
        reason=(
            "wrong result, not an error: before Opacus 1.5.4 ghost clipping's linear norm sampler, on a sequence "
            "(a 3-D input), takes the bias's squared norm as vec(G)^T vec(G) for G = g g^T where vec(G)^T vec(1) is "
            "due, so the per-sample norms and the clipped step are wrong (41% off on one token). Fixed by "
            "https://github.com/meta-pytorch/opacus/pull/751 (in 1.5.4). Seen on Opacus 1.5.3 with torch 2.0.1 "
            "(ghost clipping runs from 1.5.3 in this harness)"
        ),
        opacus="<1.5.4",
    ),
    DrawnFailure(
        methods=("opacus-dpoptimizer",),
        layers=("embedding",),
        checks=("clipped",),
        when=lambda layer: layer.kwargs["padding_idx"] is not None,
        **_GHOST_EMBEDDING_PADDING,
    ),
    DrawnFailure(
        methods=("opacus-ghost",),
        layers=("embedding",),
        checks=("clipped",),
        # a sequence of one token is all padding: every gradient is zero, and so is the clipped step
        when=lambda layer: layer.kwargs["padding_idx"] is not None and layer.in_shape[0] > 1,
        **_GHOST_EMBEDDING_PADDING,
    ),
    DrawnFailure(
        methods=("opacus-ghost",),
        layers=("embedding",),
        checks=("norms",),
        when=lambda layer: layer.kwargs["padding_idx"] is not None,
        **_GHOST_EMBEDDING_PADDING,
    ),
    DrawnFailure(
        methods=_EXPANDED_WEIGHTS,
        layers=("dp_mha",),
        when=lambda layer: layer.kwargs["batch_first"],
        when_batch=lambda layer, batch_size: batch_size != layer.in_shape[0] or layer.kwargs["add_bias_kv"],
        error=r"Expected ExpandedWeights to have batch size matching input|cannot handle function repeat",
        reason=(
            "Opacus 1.4.1's DPMultiheadAttention(batch_first=True) turns its inputs sequence-first before the "
            "q/k/v projections, and ExpandedWeights takes the first dimension of a Linear's input for the batch "
            "(batch 2 against the sequence length; where they are equal, a layer with add_bias_kv fails at the "
            "`repeat` as on later releases). 1.5 projects first (opacus#650, fixed by the pull request linked). "
            "Found by the direct run of opacus1_4_1; 1.5.0 passes"
        ),
        link="https://github.com/meta-pytorch/opacus/pull/651",
        opacus="==1.4.1",
    ),
    DrawnFailure(
        methods=_OPACUS + _EXPANDED_WEIGHTS,
        layers=("dp_mha",),
        when=lambda layer: layer.kwargs["add_bias_kv"],
        error=(
            r"The expanded size of the tensor|Expected all tensors to have the same size in the mapped dimension"
            r"|cannot handle function repeat"
        ),
        reason=(
            "DPMultiheadAttention(add_bias_kv=True, batch_first=True): Opacus' SequenceBias sampler and "
            "functorch fallback mis-size the bias_k/bias_v per-sample gradients; ExpandedWeights has no "
            "rule for the `repeat` that adds them. Measured on every release 1.4.1 to 1.6.0 (DPMultiheadAttention "
            "takes batch_first from 1.4.1; the property suite draws it only there)"
        ),
        opacus=">=1.4.1",
    ),
    DrawnFailure(
        methods=("opacus-hooks", "opacus-ghost", "opacus-dpoptimizer"),
        layers=_CONVOLUTIONS,
        when=_padded_by_mode,
        error=r"differs from the reference",
        reason=(
            "wrong result, not an error: Opacus' convolution grad sampler (and ghost clipping's norm sampler) "
            "unfolds the input with zeros whatever the padding_mode, so a convolution padding by reflect, "
            "replicate or circular gets wrong per-sample gradients and norms (opacus-functorch is right). Seen on "
            "Opacus 1.5.3 (torch 2.0.1) and 1.6.0 (torch 2.14.0); no release reads padding_mode (every tag's "
            "opacus/grad_sample and tensor_utils, 1.0.0 to 1.6.0), and the release history fails these draws on each"
        ),
        opacus=">=1.0",
    ),
    DrawnFailure(
        methods=("opacus-hooks", "opacus-ghost", "opacus-dpoptimizer"),
        layers=("embedding_bag",),
        when=lambda layer: not _one_plain_bag(layer),
        error=(
            r"not enough values to unpack|index \d+ is out of bounds|returned (norms of )?shape|The size of tensor a"
            r"|differs from the reference|in float32, less precise than the case's float64|assigned grad has data of a"
            r" different type"  # the last two: before 1.6.0 (the row above)
        ),
        reason=(
            "Opacus' EmbeddingBag grad sampler (ghost clipping and the DP optimizer use it too) takes a 1-D input "
            "with offsets, one bag per sample, mode 'sum' or 'mean': a 2-D input fails to unpack (input, offsets), "
            "include_last_offset indexes past the end, several bags per sample give per-bag gradients (a wrong "
            "shape or error); and, a wrong result, not an error, it adds each id's gradient once however often the "
            "bag holds it (a fancy-index +=), and ignores mode 'max', per_sample_weights and padding_idx. Only a "
            "one-id bag of sum or mean passes. Seen on Opacus 1.5.3 (torch 2.0.1) and 1.6.0 (torch 2.14.0); the release "
            "history fails these draws from 1.3.0 on, where the grad sampler came; no upstream report found "
            "(docs/findings.md)"
        ),
        opacus=">=1.3",
    ),
    DrawnFailure(
        **_OPACUS_1_2_ON_BAGS,
        when=lambda layer: layer.kwargs["layout"] == "2d" and layer.in_shape[0] > 1,
        error=r"returned shape \(\d+, \d+, \d+\) for layers\.\d+\.weight, expected|differs from the reference",
        reason=(
            "Opacus 1.2.0's functorch fallback on an nn.EmbeddingBag fed a 2-D input (one bag per sample) of "
            "bags longer than one id returns per-sample gradients of the wrong shape (shape (2, 2, 1) for a "
            "(1, 2, 1) weight at B=1); bags of one id pass. Found by a direct `tox -e opacus1_2_0` (torch 2.14.0)"
        ),
    ),
    DrawnFailure(
        **_OPACUS_1_2_ON_BAGS,
        when=lambda layer: layer.kwargs["layout"] != "2d",
        error=r"vmap: Expected all tensors to have the same size in the mapped dimension",
        reason=(
            "Opacus 1.2.0 has no nn.EmbeddingBag grad sampler (1.3.0 adds one and refuses it in the functorch "
            "path): its functorch fallback maps over every input of the module, and a flat input with offsets "
            "has no batch dimension. Seen by the release history on 1.2.0 (torch 2.14.0)"
        ),
    ),
    DrawnFailure(
        methods=("opacus-functorch",),
        layers=("embedding_bag",),
        error="Functorch does not support EmbeddingBag yet",
        reason=(
            "Opacus' functorch path refuses nn.EmbeddingBag (its own NotImplementedError), though vmap over it "
            "works. Seen on Opacus 1.5.3 (torch 2.0.1) and 1.6.0 (torch 2.14.0), and by the release history from "
            "1.3.0 on (the refusal is in opacus/grad_sample/functorch.py from the v1.3 tag)"
        ),
        opacus=">=1.3",
    ),
)
