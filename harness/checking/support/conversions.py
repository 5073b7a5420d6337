"""The support matrix for layer conversions (``ModuleValidator.fix``, the ``opacus.layers`` DP
layers): which conversion is expected not to keep the function, and why. The first row that
covers a conversion decides (the rows a plugin added come first)."""

from __future__ import annotations

from harness.checking.support.rows import ConversionFailure

#: Seen on the project's default releases; the release environments hold the range.
_SEEN_ON = "Seen on Opacus 1.6.0 with torch 2.14.0"

#: Every ModuleValidator.fix fails on these releases (the zoo builds resnet18_gn without it for that reason).
FIX_CLONES_WITH_TORCH_LOAD = ConversionFailure(
    methods=("opacus",),
    conversions=("lstm", "gru", "mha", "instance_norm"),
    error=r"Weights only load failed",
    reason=(
        "ModuleValidator.fix before Opacus 1.5.3 clones the model with torch.load, whose weights_only default "
        "is True from torch 2.6: every fix fails with an UnpicklingError on torch 2.6 and later (fixed by "
        "loading with weights_only=False in 1.5.3). Measured with Opacus 1.0.0, 1.2.0 and 1.4.0 on torch 2.14.0"
    ),
    link="https://github.com/meta-pytorch/opacus/pull/696",
    opacus="<1.5.3",
    torch=">=2.6",
)

CONVERSION_MATRIX: tuple[ConversionFailure, ...] = (
    FIX_CLONES_WITH_TORCH_LOAD,
    ConversionFailure(
        methods=("opacus",),
        conversions=("mha",),
        when=lambda args: args["batch_first"] and args["masks"] in ("attn_mask", "both"),
        error=r"The size of the 2D attn_mask is not correct",
        reason=(
            "DPMultiheadAttention(batch_first=True) checks an attn_mask's size against query.size(0), the batch, not "
            "the target length, and refuses every right mask. " + _SEEN_ON
        ),
        link="https://github.com/meta-pytorch/opacus/issues/774",
        opacus=">=1.5",
    ),
    ConversionFailure(
        methods=("opacus",),
        conversions=("mha",),
        when=lambda args: args["batch_first"],
        error=r"differs from the reference|The expanded size of the tensor",
        reason=(
            "wrong result, not an error: DPMultiheadAttention(batch_first=True) reshapes the heads' outputs "
            "(B * heads, L, head_dim) to (B, L, E) without bringing the heads next to the features, so with more than "
            "one head it mixes heads into positions (outputs about 100% off nn.MultiheadAttention's with the same "
            "weights); with add_bias_kv its per-sample gradients fail in SequenceBias' grad sampler. Fixed upstream "
            "by the pull request linked. " + _SEEN_ON
        ),
        link="https://github.com/meta-pytorch/opacus/pull/825",
        opacus=">=1.5",
    ),
    ConversionFailure(
        methods=("opacus",),
        conversions=("lstm", "gru", "rnn"),
        checks=("forward",),
        when=lambda args: args["unbatched"],
        error=r"returns output of shape \(\d+, \d+, \d+, \d+\), the original's|Dimension out of range",
        reason=(
            "DPLSTM, DPGRU and DPRNN take no unbatched (T, F) input, which nn.LSTM, nn.GRU and nn.RNN take: DPLSTM "
            "and DPRNN return an output with an extra dimension, without an error (wrong shape, not wrong values), "
            "DPGRU raises an IndexError. docs/findings.md has the repro. " + _SEEN_ON
        ),
        opacus=">=1.0",
    ),
    ConversionFailure(
        methods=("opacus",),
        conversions=("gru",),
        checks=("grads",),
        when=lambda args: (
            args.get("num_layers", 1) > 1 and args.get("bidirectional") and args.get("bias", True) and not args.get("batch_first")
        ),
        error=r"output with shape \[1, 4\] doesn't match the broadcast shape \[4, 1, 4\]",
        reason=(
            "DPGRU's per-sample gradients of a 2-layer bidirectional GRU fail (an in-place add of shape [1, 4] "
            "into [4, 1, 4]) in the layout the default run converts (sequence first, with bias; the other layouts not "
            "run on these releases). Seen on Opacus 1.5.3 and 1.5.4, on torch 2.0.1 to 2.5.1 and on 2.14.0; 1.6.0 passes; "
            "releases before 1.5.3 cannot convert on torch 2.14 (the torch.load row) and were not run on an older "
            "torch; no upstream report found. Found by a direct `tox -e torch2_0` run (the release history does "
            "not judge the conversion cells yet)"
        ),
        opacus=">=1.5.3,<1.6",
    ),
    ConversionFailure(
        methods=("opacus",),
        conversions=("lstm",),
        when=lambda args: args.get("proj_size", 0) > 0,
        error=r"size mismatch for weight_hh_l0",
        reason=(
            "ModuleValidator.fix of an nn.LSTM with proj_size builds a DPLSTM without it (DPLSTM has no projection) and "
            "fails loading the weights: a refusal, but through a state_dict size mismatch. " + _SEEN_ON
        ),
        opacus=">=1.0",
    ),
    ConversionFailure(
        methods=("opacus",),
        conversions=("instance_norm",),
        checks=("grads",),
        when=lambda args: args["affine"] and args["track_running_stats"],
        error=r"Model contains a trainable layer with buffers",
        reason=(
            "ModuleValidator.fix of an InstanceNorm with running statistics turns track_running_stats off but keeps its "
            "running_mean and running_var buffers, so GradSampleModule (and make_private) refuse the fixed model as a "
            "trainable layer with buffers; its outputs are right. docs/findings.md has the repro. " + _SEEN_ON
        ),
        opacus=">=1.0",
    ),
)
