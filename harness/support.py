"""The support matrix: which method is expected to fail on which case, and why.

Every expected failure of the suite lives here and nowhere else. Each entry becomes a
strict xfail: the failure must happen, and must match ``error`` (a different failure is a
real failure), so a fix upstream shows as XPASS and the entry is then narrowed or removed.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from harness.methods import QUANTITIES

if TYPE_CHECKING:
    from harness.drawn import Layer, Problem

#: What a check does with a method: ``grads``, ``norms``, ``clipped`` compare the quantity the
#: method gives (see :mod:`harness.methods`) to the oracle's; ``batching-rule`` runs vmap with
#: the slow-fallback warning turned into an error. A row covers every quantity by default: a
#: method that fails to compute per-sample gradients fails their norms and clipped step too.
#: No row may rest on float32 rounding (which branch a kink takes depends on the CPU's kernels):
#: the seeds' element-wise claims are recorded by their tests, not expected to fail here.
CHECKS = (*QUANTITIES, "batching-rule")

#: Opacus' hook-based paths: grad samples (hooks, functorch fallback), DPOptimizer over them,
#: and ghost clipping share the wrapping, the validation and the fallbacks, so they fail alike.
_OPACUS = ("opacus-hooks", "opacus-functorch", "opacus-ghost", "opacus-dpoptimizer")
_EXPANDED_WEIGHTS = ("opacus-ew", "expanded-weights")
_VMAP_FAMILY = ("vmap", "vmap-chunked", "vmap-compiled", "functorch")


@dataclass(frozen=True)
class ExpectedFailure:
    """One row: patterns (fnmatch) for method, model, precision, device, and a torch version range.

    For drawn problems (the property suite) ``models`` names layer kinds, and ``when`` may
    narrow the row to the layer configurations it holds for.
    """

    methods: tuple[str, ...]
    models: tuple[str, ...]
    error: str
    reason: str
    link: str = ""
    precisions: tuple[str, ...] = ("*",)
    devices: tuple[str, ...] = ("*",)
    torch: str = ""
    checks: tuple[str, ...] = QUANTITIES
    when: Callable[[Layer], bool] | None = field(default=None, compare=False)

    def applies(self, method: str, model: str, precision: str, device: str, check: str, torch_version: str) -> bool:
        """Whether this row covers the cell."""

        def hit(value: str, patterns: tuple[str, ...]) -> bool:
            return any(fnmatch.fnmatchcase(value, p) for p in patterns)

        return (
            check in self.checks
            and hit(method, self.methods)
            and hit(model, self.models)
            and hit(precision, self.precisions)
            and hit(device, self.devices)
            and Version(Version(torch_version).base_version) in SpecifierSet(self.torch)
        )

    def describe(self) -> str:
        """Reason and link, as shown in the xfail."""
        return f"{self.reason} ({self.link})" if self.link else self.reason


SUPPORT_MATRIX: tuple[ExpectedFailure, ...] = (
    ExpectedFailure(
        methods=(*_OPACUS, "backpack"),
        models=("resnet18_gn",),
        error="Output 0 of BackwardHookFunction(Backward)? is a view and is being modified inplace",
        reason=(
            "Opacus and BackPACK wrap modules in full backward hooks; torchvision's BasicBlock modifies hooked "
            "outputs in place (ReLU(inplace=True) and `out += identity` on the GroupNorm output). "
            "Seen on torch 2.6, 2.14, 2.15; resnet18_gn_noinplace is the same model without them"
        ),
        link="https://github.com/pytorch/pytorch/issues/61519",
        torch=">=2.6",
    ),
    ExpectedFailure(
        methods=_VMAP_FAMILY + _OPACUS,
        models=("lstm_text", "lstm"),
        precisions=("float64",),
        error=r"output with shape \[1, \d+\] doesn't match the broadcast shape",
        reason=(
            "vmap over nn.LSTM fails in float64 on the CPU (works in float32); Opacus has no grad "
            "sampler for nn.LSTM and falls back to the same vmap. Seen on torch 2.6, 2.13, 2.14, 2.15"
        ),
        devices=("cpu",),
        torch=">=2.6",
    ),
    ExpectedFailure(
        methods=_OPACUS,
        models=("lstm_text", "lstm"),
        precisions=("float32", "tf32"),
        error="only integer tensors of a single element can be converted to an index",
        reason=(
            "Opacus' functorch fallback (no grad sampler for nn.LSTM) multiplies the module's "
            "output by the backprops, but nn.LSTM returns a tuple; Opacus expects its DPLSTM"
        ),
        torch=">=2.6",
    ),
    ExpectedFailure(
        methods=_OPACUS,
        models=("transformer",),
        error=r"MultiheadAttention.forward\(\) missing 2 required positional arguments",
        reason=(
            "Opacus' functorch fallback (no grad sampler for nn.MultiheadAttention) calls the module "
            "with its first input only; Opacus expects its DPMultiheadAttention"
        ),
        torch=">=2.6",
    ),
    ExpectedFailure(
        methods=_EXPANDED_WEIGHTS,
        models=("transformer",),
        error="Expanded Weights encountered but cannot handle function multi_head_attention_forward",
        reason="ExpandedWeights has no rule for multi_head_attention_forward",
        torch=">=2.6",
    ),
    ExpectedFailure(
        methods=_OPACUS,
        models=("bn_eval",),
        error="Model contains a trainable layer with buffers",
        reason="Opacus' validation rejects BatchNorm (a trainable layer with buffers), even in eval mode",
        torch=">=2.6",
    ),
    ExpectedFailure(
        methods=_EXPANDED_WEIGHTS,
        models=("bn_eval",),
        error="Expanded Weights encountered but cannot handle function batch_norm",
        reason="ExpandedWeights has no rule for batch_norm, even with running statistics",
        torch=">=2.6",
    ),
    # BackPACK, on the zoo and on drawn layers. Rows for failures it raises come before the row for
    # parameters it leaves without a result: in a drawn stack the raising layer fails first.
    ExpectedFailure(
        methods=("backpack",),
        models=("conv_transpose2d",),
        when=lambda layer: layer.kwargs["output_padding"] > 0,
        error=r"shape '\[[\d, ]+\]' is invalid for input of size \d+",
        reason="BackPACK's ConvTranspose2d extension does not account for output_padding and fails to reshape",
        torch=">=2.6",
    ),
    ExpectedFailure(
        methods=("backpack",),
        models=("rnn", "lstm"),
        when=lambda layer: not layer.kwargs["bias"] or layer.kwargs["num_layers"] > 1 or layer.kwargs["bidirectional"],
        error=r"has no attribute 'bias_ih_l0'|only num_layers = 1 is supported|only bidirectional = False is supported",
        reason="BackPACK's RNN and LSTM extensions support a single unidirectional layer with biases only",
        torch=">=2.6",
    ),
    ExpectedFailure(
        methods=("backpack",),
        models=("embedding",),
        when=lambda layer: layer.kwargs["padding_idx"] is not None,
        error="Only padding_idx=None supported",
        reason="BackPACK's Embedding extension refuses padding_idx (an error, where Opacus and ExpandedWeights are wrong)",
        torch=">=2.6",
    ),
    ExpectedFailure(
        methods=("backpack",),
        models=("lstm_text", "embedding"),
        precisions=("float64",),
        when=lambda layer: layer.in_shape[0] > 1,
        error="expected scalar type (Double but found Float|Float but found Double)",
        reason=(
            "BackPACK's Embedding extension mixes float32 into a float64 model's computation on sequences "
            "longer than one token (float32 works)"
        ),
        torch=">=2.6",
    ),
    ExpectedFailure(
        methods=("backpack",),
        models=(
            "resnet18_gn_noinplace", "transformer", "layer_norm", "rms_norm", "group_norm", "instance_norm",
            "mha", "gru", "dp_rnn", "dp_lstm", "dp_gru", "dp_mha",
        ),
        when=lambda layer: layer.kind != "dp_mha" or layer.kwargs["add_bias_kv"],
        error="returned no gradient for|BatchL2Grad computed nothing for",
        reason=(
            "BackPACK has no first-order extension for GroupNorm, LayerNorm, RMSNorm, InstanceNorm, "
            "MultiheadAttention, GRU, or Opacus' DP layers (RNNLinear cells, SequenceBias): their parameters "
            "get no grad_batch / batch_l2, with only a warning"
        ),
        torch=">=2.6",
    ),
    ExpectedFailure(
        methods=("backpack",),
        models=("conv1d",),
        checks=("norms",),
        precisions=("float64",),
        error=r"per-sample gradient norms, differs from the reference: worst at \|\|g\|\|",
        reason=(
            "wrong result, not an error: BackPACK 1.7.1's BatchL2Grad returns wrong per-sample squared norms for a "
            "grouped convolution (groups=2 here: the layer's own norm is off by up to 150%, the total by 4.8%), "
            "while its BatchGrad gradients are right. Float32 passes only because its bound for models with kinks "
            "(5e-2) is wider than the error"
        ),
        torch=">=2.6",
    ),
    # Found by the property suite (drawn layers; ``models`` names layer kinds).
    ExpectedFailure(
        methods=_VMAP_FAMILY + _OPACUS,
        models=("rnn", "gru"),
        error=r"output with shape \[1, \d+\] doesn't match the broadcast shape",
        reason=(
            "vmap over nn.RNN and nn.GRU fails on the CPU in every precision (nn.LSTM only in "
            "float64); Opacus has no grad sampler for them and falls back to the same vmap"
        ),
        devices=("cpu",),
        torch=">=2.6",
    ),
    ExpectedFailure(
        methods=_OPACUS,
        models=("mha",),
        error=r"MultiheadAttention.forward\(\) missing 2 required positional arguments",
        reason="no grad sampler for nn.MultiheadAttention; Opacus wants its DPMultiheadAttention",
        torch=">=2.6",
    ),
    ExpectedFailure(
        methods=_EXPANDED_WEIGHTS,
        models=("mha",),
        error="Expanded Weights encountered but cannot handle function multi_head_attention_forward",
        reason="ExpandedWeights has no rule for multi_head_attention_forward",
        torch=">=2.6",
    ),
    ExpectedFailure(
        methods=_EXPANDED_WEIGHTS,
        models=("conv_transpose2d",),
        error="Expanded Weights encountered but cannot handle function conv_transpose2d",
        reason="ExpandedWeights has no rule for conv_transpose2d",
        torch=">=2.6",
    ),
    ExpectedFailure(
        methods=_EXPANDED_WEIGHTS,
        models=("rms_norm",),
        error="Expanded Weights encountered but cannot handle function rms_norm",
        reason="ExpandedWeights has no rule for rms_norm (Opacus' hooks have one)",
        torch=">=2.6",
    ),
    ExpectedFailure(
        methods=_EXPANDED_WEIGHTS,
        models=("lstm",),
        precisions=("float32", "tf32"),
        error="Expanded Weights encountered but cannot handle function (size|mkldnn_rnn_layer)",
        reason=(
            "ExpandedWeights has no rule for the float32 nn.LSTM CPU kernel (aten::mkldnn_rnn_layer) "
            "or, by configuration, the `size` call before it"
        ),
        torch=">=2.6",
    ),
    ExpectedFailure(
        methods=_EXPANDED_WEIGHTS,
        models=("conv3d",),
        when=lambda layer: layer.kwargs["dilation"] > 1 and layer.kwargs["groups"] > 1,
        error=r"dilation=\(\d+, \d+, \d+\) not supported",
        reason=(
            "ExpandedWeights' unfold3d raises NotImplementedError for a dilated Conv3d; it takes that path "
            "for groups > 1 (and for any Conv3d at batch size 32 or more, which the property suite does not draw)"
        ),
        torch=">=2.6",
    ),
    ExpectedFailure(
        methods=("opacus-hooks", "opacus-ew", "expanded-weights"),
        models=("embedding",),
        when=lambda layer: layer.kwargs["padding_idx"] is not None,
        error=r"differs from the reference: worst at layers\.0\.weight, sample \d+",
        reason=(
            "wrong result, not an error: Opacus' embedding grad sampler and ExpandedWeights' embedding "
            "rule ignore padding_idx, so the padding row gets a non-zero per-sample gradient where "
            "autograd (and opacus-functorch, vmap) give zero; DP-SGD then trains the padding vector"
        ),
        torch=">=2.6",
    ),
    ExpectedFailure(
        methods=("opacus-hooks",),
        models=("layer_norm",),
        when=lambda layer: not layer.kwargs["bias"],
        error="'NoneType' object has no attribute 'requires_grad'",
        reason="Opacus' LayerNorm grad sampler reads layer.bias.requires_grad; LayerNorm(bias=False) has no bias",
        torch=">=2.6",
    ),
    ExpectedFailure(
        methods=_OPACUS + _EXPANDED_WEIGHTS,
        models=("dp_mha",),
        when=lambda layer: layer.kwargs["add_bias_kv"],
        error=(
            r"The expanded size of the tensor|Expected all tensors to have the same size in the mapped dimension"
            r"|cannot handle function repeat"
        ),
        reason=(
            "DPMultiheadAttention(add_bias_kv=True, batch_first=True): Opacus' SequenceBias sampler and "
            "functorch fallback mis-size the bias_k/bias_v per-sample gradients; ExpandedWeights has no "
            "rule for the `repeat` that adds them"
        ),
        torch=">=2.6",
    ),
    ExpectedFailure(
        methods=("vmap",),
        models=("lstm_text",),
        checks=("batching-rule",),
        error=r"no batching rule for aten::mkldnn_rnn_layer",
        reason="vmap has no batching rule for the CPU (oneDNN) LSTM kernel and loops over samples",
        devices=("cpu",),
        torch=">=2.6",
    ),
    ExpectedFailure(
        methods=("vmap",),
        models=("transformer",),
        checks=("batching-rule",),
        error=r"no batching rule for aten::_scaled_dot_product_flash_attention_for_cpu",
        reason="vmap has no batching rule for the CPU flash-attention kernel behind scaled_dot_product_attention",
        devices=("cpu",),
        torch=">=2.6",
    ),
)


def expected_failure(
    method: str,
    model: str,
    precision: str,
    device: str,
    check: str = "grads",
    torch_version: str | None = None,
) -> ExpectedFailure | None:
    """The support-matrix row covering this cell, or None if every check must pass."""
    if check not in CHECKS:
        raise ValueError(f"unknown check {check!r}; known: {', '.join(CHECKS)}")
    version = torch_version or torch.__version__
    for row in SUPPORT_MATRIX:
        if row.applies(method, model, precision, device, check, version):
            return row
    return None


def expected_failure_drawn(
    method: str, problem: Problem, precision: str, device: str, torch_version: str | None = None
) -> ExpectedFailure | None:
    """The support-matrix row covering a drawn problem: one that applies to any of its layers."""
    version = torch_version or torch.__version__
    for row in SUPPORT_MATRIX:
        for layer in problem.layers:
            if row.applies(method, layer.kind, precision, device, "grads", version) and (
                row.when is None or row.when(layer)
            ):
                return row
    return None
