"""The support matrix for the zoo: which method is expected to fail on which model, and why."""

from __future__ import annotations

from harness.checking.support.families import (
    BACKPACK_EMBEDDING_FLOAT64,
    BACKPACK_NO_EXTENSION,
    LSTM_OPACUS_FALLBACK,
    LSTM_VMAP_FLOAT64,
    MHA_EXPANDED_WEIGHTS,
    MHA_OPACUS_FALLBACK,
    SEEN_ON_BOTH,
)
from harness.checking.support.families import EXPANDED_WEIGHTS as _EXPANDED_WEIGHTS
from harness.checking.support.families import OPACUS as _OPACUS
from harness.checking.support.rows import ZooFailure

#: What torch raises where a hooked module's output is modified in place.
_IN_PLACE_ON_HOOKED_OUTPUT = "Output 0 of BackwardHookFunction(Backward)? is a view and is being modified inplace"

ZOO_MATRIX: tuple[ZooFailure, ...] = (
    ZooFailure(
        methods=("vmap", "vmap-chunked", "functorch"),
        models=("bn_eval",),
        precisions=("bf16",),
        error="expected scalar type BFloat16 but found Float",
        reason=(
            "vmap over BatchNorm in eval mode under CPU autocast to bfloat16: the batched batch_norm gets "
            "bfloat16 inputs and float32 running statistics and refuses them (the loop, unbatched, and vmap under "
            "torch.compile work). Seen on torch 2.0.1 and 2.14 (2.1 to 2.13 not run here)"
        ),
        devices=("cpu",),
        torch=">=2.0",
    ),
    ZooFailure(
        methods=("backpack",),
        models=("resnet18_gn",),
        error=_IN_PLACE_ON_HOOKED_OUTPUT,
        reason=(
            "BackPACK wraps modules in full backward hooks; torchvision's BasicBlock modifies hooked outputs in "
            "place (ReLU(inplace=True) and `out += identity` on the GroupNorm output). Seen on torch 2.6, 2.14, "
            "2.15 and on torch 2.0.1 (BackPACK 1.6.0); resnet18_gn_noinplace is the same model without them"
        ),
        link="https://github.com/pytorch/pytorch/issues/61519",
        torch=">=2.0",
    ),
    ZooFailure(
        methods=_OPACUS,
        models=("resnet18_gn",),
        error=_IN_PLACE_ON_HOOKED_OUTPUT,
        reason=(
            "Opacus' hooks refuse torchvision's BasicBlock, which modifies hooked outputs in place (ReLU(inplace=True) "
            "and `out += identity` on the GroupNorm output): Opacus' own change in 1.5.4, not torch's (Opacus 1.5.3 "
            "passes on torch 2.0.1 and on torch 2.14); resnet18_gn_noinplace is the same model without them"
        ),
        link="https://github.com/pytorch/pytorch/issues/61519",
        opacus=">=1.5.4",
    ),
    ZooFailure(
        methods=("opacus-hooks",),
        models=("resnet18_gn",),
        precisions=("bf16",),
        checks=("grads",),
        error=r"differs from the reference along it: at layer4\.1\.conv\d\.weight, the error projects onto the reference as <g - g\*, g\*> / <g\*, g\*> = -1\.000e\+00",
        reason=(
            "wrong result, not an error: under CPU autocast to bfloat16, Opacus 1.5.3's hooks on resnet18_gn "
            "give per-sample gradients of zero for the last block's convolutions (float32 and float64 pass). Seen "
            "only on torch 2.0.1 with Opacus 1.5.3 (Opacus 1.6.0 refuses the model, the row above)"
        ),
        devices=("cpu",),
        torch="==2.0.*",
        opacus="==1.5.3",
    ),
    ZooFailure(models=("lstm_text",), **LSTM_VMAP_FLOAT64),
    ZooFailure(models=("lstm_text",), **LSTM_OPACUS_FALLBACK),
    ZooFailure(
        methods=("opacus-ghost",),
        models=("transformer",),
        error="'Parameter' object has no attribute 'grad_sample'",
        reason=(
            "Opacus 1.5.3's ghost clipping has no norm sampler for nn.MultiheadAttention and looks for the "
            "grad_sample its functorch fallback never wrote (later releases fail in the fallback itself, the row below)"
        ),
        opacus="<1.5.4",
    ),
    ZooFailure(models=("transformer",), **MHA_OPACUS_FALLBACK),
    ZooFailure(models=("transformer",), **MHA_EXPANDED_WEIGHTS),
    ZooFailure(
        methods=_OPACUS,
        models=("bn_eval",),
        error="Model contains a trainable layer with buffers",
        reason="Opacus' validation rejects BatchNorm (a trainable layer with buffers), even in eval mode. "
        + SEEN_ON_BOTH,
        opacus=">=1.5.3",
    ),
    ZooFailure(
        methods=_EXPANDED_WEIGHTS,
        models=("bn_eval",),
        error="Expanded Weights encountered but cannot handle function batch_norm",
        reason="ExpandedWeights has no rule for batch_norm, even with running statistics. " + SEEN_ON_BOTH,
        torch=">=2.0",
    ),
    ZooFailure(models=("lstm_text",), **BACKPACK_EMBEDDING_FLOAT64),
    ZooFailure(models=("resnet18_gn_noinplace", "transformer"), **BACKPACK_NO_EXTENSION),
    ZooFailure(
        methods=("backpack",),
        models=("conv1d",),
        checks=("norms",),
        error=r"per-sample gradient norms, differs from the reference(: worst at| along it: at) \|\|g\|\|",
        reason=(
            "wrong result, not an error: BackPACK 1.7.1's BatchL2Grad returns wrong per-sample squared norms for a "
            "grouped convolution (groups=2 here: the layer's own norm is off by up to 150%, the total by 4.8%), "
            "while its BatchGrad gradients are right. In float32 the norm-wise bound for models with kinks (5e-2) "
            "is wider than the error, and the check along the reference catches it (the norms lean 2.8% along). "
            "BackPACK 1.6.0 gives the same wrong norms"
        ),
        backpack=">=1.6",
    ),
    ZooFailure(
        methods=("vmap",),
        models=("lstm_text",),
        checks=("batching-rule",),
        error=r"no batching rule for aten::mkldnn_rnn_layer",
        reason=(
            "vmap has no batching rule for the CPU (oneDNN) LSTM kernel and loops over samples. Seen on torch 2.6 "
            "and later and on torch 2.0.1 (2.1 to 2.5 not run)"
        ),
        devices=("cpu",),
        torch=">=2.0",
    ),
    ZooFailure(
        methods=("vmap",),
        models=("transformer",),
        checks=("batching-rule",),
        error=r"no batching rule for aten::_scaled_dot_product_flash_attention_for_cpu",
        reason="vmap has no batching rule for the CPU flash-attention kernel behind scaled_dot_product_attention",
        devices=("cpu",),
        torch=">=2.6",
    ),
)
