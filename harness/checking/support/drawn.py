"""The support matrix for drawn layers (the property suite): which method is expected to fail on
which layer configuration, and why. For a drawn stack, the first row that covers any of its
layers decides (the rows a plugin added come before these)."""

from __future__ import annotations

from harness.checking.support.families import (
    BACKPACK_EMBEDDING_FLOAT64,
    BACKPACK_NO_EXTENSION,
    EMBEDDING_PADDING_IGNORED,
    LSTM_OPACUS_FALLBACK,
    LSTM_VMAP_FLOAT64,
    MHA_EXPANDED_WEIGHTS,
    MHA_OPACUS_FALLBACK,
    OPACUS_EMBEDDING_FLOAT64,
    OPACUS_NO_FALLBACK,
    SDPA_VMAP_NO_FALLBACK,
    VMAP_RECURRENT_ERROR,
)
from harness.checking.support.families import EXPANDED_WEIGHTS as _EXPANDED_WEIGHTS
from harness.checking.support.families import OPACUS as _OPACUS
from harness.checking.support.families import VMAP_FAMILY as _VMAP_FAMILY
from harness.checking.support.rows import DrawnFailure

DRAWN_MATRIX: tuple[DrawnFailure, ...] = (
    # Old releases first: a model refused as a whole fails so, whatever else its layers would do.
    DrawnFailure(layers=("conv_transpose2d", "lstm", "mha", "rms_norm"), **OPACUS_NO_FALLBACK),
    DrawnFailure(
        layers=("lstm",),
        **LSTM_VMAP_FLOAT64,
    ),
    DrawnFailure(
        layers=("lstm",),
        **LSTM_OPACUS_FALLBACK,
    ),
    DrawnFailure(
        methods=("backpack",),
        layers=("conv1d", "conv2d", "conv3d", "conv_transpose2d"),
        checks=("norms",),
        # with output_padding, the transposed convolution's einsum fails first (the output_padding row)
        when=lambda layer: layer.kwargs["groups"] > 1 and layer.kwargs.get("output_padding", 0) == 0,
        error=r"per-sample gradient norms, differs from the reference",
        reason=(
            "wrong result, not an error: BackPACK's BatchL2Grad returns wrong per-sample squared norms for a grouped "
            "convolution (its BatchGrad gradients are right); the drawn conv2d with groups=2 is 155% off. The zoo's "
            "conv1d row, on every drawn convolution. Seen on BackPACK 1.7.1 with torch 2.14.0"
        ),
        backpack=">=1.6",
    ),
    # BackPACK. Rows for failures it raises come before the row for
    # parameters it leaves without a result: in a drawn stack the raising layer fails first.
    DrawnFailure(
        methods=("backpack",),
        layers=("conv_transpose2d",),
        when=lambda layer: layer.kwargs["output_padding"] > 0,
        error=r"shape '\[[\d, ]+\]' is invalid for input of size \d+|Size of label 'i' for operand \d+ \(\d+\) does not match",
        reason=(
            "BackPACK's ConvTranspose2d extension does not account for output_padding and fails to reshape "
            "(BatchGrad) or in an einsum (BatchL2Grad)"
        ),
        backpack=">=1.6",
    ),
    DrawnFailure(
        methods=("backpack",),
        layers=("rnn", "lstm"),
        when=lambda layer: not layer.kwargs["bias"] or layer.kwargs["num_layers"] > 1 or layer.kwargs["bidirectional"],
        error=r"has no attribute 'bias_ih_l0'|only num_layers = 1 is supported|only bidirectional = False is supported",
        reason="BackPACK's RNN and LSTM extensions support a single unidirectional layer with biases only",
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
        ),
        when=lambda layer: layer.kind != "dp_mha" or layer.kwargs["add_bias_kv"],
        **BACKPACK_NO_EXTENSION,
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
        layers=("conv_transpose2d",),
        error="Expanded Weights encountered but cannot handle function conv_transpose2d",
        reason="ExpandedWeights has no rule for conv_transpose2d",
        torch=">=2.0",
    ),
    DrawnFailure(
        methods=_EXPANDED_WEIGHTS,
        layers=("rms_norm",),
        error="Expanded Weights encountered but cannot handle function rms_norm",
        reason="ExpandedWeights has no rule for rms_norm (Opacus' hooks have one)",
        torch=">=2.4",
    ),
    DrawnFailure(
        methods=_EXPANDED_WEIGHTS,
        layers=("lstm",),
        precisions=("float32", "tf32"),
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
        when=lambda layer: layer.kwargs["dilation"] > 1 and layer.kwargs["groups"] > 1,
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
        when=lambda layer: layer.kwargs["dilation"] > 1,
        error=r"dilation=\(\d+, \d+, \d+\) not supported",
        reason="Opacus before 1.1.1 has no dilated Conv3d in its unfold3d (NotImplementedError; measured on every release 1.0.0 to 1.1.0)",
        opacus="<1.1.1",
    ),
    DrawnFailure(
        methods=("opacus-hooks",),
        layers=("conv3d",),
        precisions=("float64",),
        when=lambda layer: layer.kwargs["dilation"] > 1,
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
        when=lambda layer: not layer.kwargs.get("bias", True),
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
        when=lambda layer: not layer.kwargs.get("bias", True),
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
        methods=("opacus-ghost", "opacus-dpoptimizer"),
        layers=("embedding",),
        checks=("norms", "clipped"),
        when=lambda layer: layer.kwargs["padding_idx"] is not None,
        error=r"differs from the reference: worst at (layers\.0\.weight|\|\|g\|\|), sample \d+",
        reason=(
            "wrong result, not an error: ghost clipping's embedding norm sampler ignores padding_idx too (its own "
            "code, not the grad sampler's), so the per-sample norms count the padding row and the wrong samples "
            "are clipped; the DP optimizer clips the hooks' per-sample gradients, which ignore it (the row above, "
            "measured on every release). Seen on Opacus 1.6.0 with torch 2.14.0; docs/findings.md has the grad "
            "sampler's repro"
        ),
        opacus=">=1.0",
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
)
