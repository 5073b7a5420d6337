"""The support matrix for the zoo: which method is expected to fail on which model, and why."""

from __future__ import annotations

from typing import Any

from harness.checking.support.families import (
    BACKPACK_EMBEDDING_FLOAT64,
    BACKPACK_NO_EXTENSION,
    BATCHNORM_EXPANDED_WEIGHTS,
    LSTM_OPACUS_FALLBACK,
    LSTM_VMAP_FLOAT64,
    MHA_EXPANDED_WEIGHTS,
    MHA_OPACUS_FALLBACK,
    OPACUS_CLOSE_DELETES_GRAD_SAMPLE,
    OPACUS_EMBEDDING_FLOAT64,
    OPACUS_EMPTY_BATCH_RESHAPE,
    OPACUS_FALLBACK_DOUBLE_COUNTS,
    OPACUS_NO_FALLBACK,
    OPACUS_REFUSES_BATCHNORM,
    OPACUS_TIED_LIST,
    SDPA_VMAP_NO_FALLBACK,
    SEEN_ON_2_14,
)
from harness.checking.support.families import EXPANDED_WEIGHTS as _EXPANDED_WEIGHTS
from harness.checking.support.families import OPACUS as _OPACUS
from harness.checking.support.rows import CHECKS, EMPTY_BATCH, ZooFailure
from harness.quantities import QUANTITIES

#: BackPACK on a parameter a module uses in its own forward, next to its child modules.
_BACKPACK_OWN_PARAMETER: dict[str, Any] = {
    "methods": ("backpack",),
    "error": r"returned no gradient for 0\.gain|BatchL2Grad computed nothing for 0\.gain",
    "reason": (
        "BackPACK computes per-sample quantities in extensions of the modules it knows: a parameter a module "
        "uses directly in its forward (a layer scale next to a child Linear) gets no grad_batch / batch_l2, "
        "with only a warning. " + SEEN_ON_2_14
    ),
    "backpack": ">=1.6",
}

#: Opacus' ghost clipping on a parameter shared by two modules.
_GHOST_TIED: dict[str, Any] = {
    "methods": ("opacus-ghost",),
    "error": "Parameter tying is not supported with Ghost Clipping",
    "reason": (
        "Opacus' ghost clipping refuses a parameter shared by two modules (a clear NotImplementedError): "
        "it adds up per-layer norms, which a per-sample gradient summed over two layers breaks. Opacus' hooks "
        "and its DPOptimizer sum the two layers' per-sample gradients and pass. " + SEEN_ON_2_14
    ),
    "opacus": ">=1.5",
}

#: Old torch: vmap over an empty batch through a convolution.
_EMPTY_CONV_CRASH: dict[str, Any] = {
    "error": "Floating point exception",
    "reason": (
        "vmap over a batch of size 0 through a convolution kills the process with SIGFPE (seen under -n, "
        "where the crash is reported: innermost frame nn.Conv's _conv_forward): torch 2.0.1 directly, and "
        "through Opacus' functorch mode (whose per-sample convolution has groups = B = 0) on every release 2.0.1 "
        "to 2.9.1 (the release history); from 2.10 torch raises 'expected groups to be greater than 0' instead"
    ),
    "crash": "SIGFPE",
}

#: How Opacus' validator refuses BatchNorm: "that Opacus doesn't currently support" to 1.4, "with buffers" later.
_OPACUS_REFUSES_BATCHNORM = OPACUS_REFUSES_BATCHNORM["error"]

#: What torch raises where a hooked module's output is modified in place.
_IN_PLACE_ON_HOOKED_OUTPUT = "Output 0 of BackwardHookFunction(Backward)? is a view and is being modified inplace"

ZOO_MATRIX: tuple[ZooFailure, ...] = (
    # Old releases first: where one holds, its failure comes before what later releases' rows expect.
    ZooFailure(models=("bn_eval", "transformer", "lstm_text", "own_param"), checks=CHECKS, **OPACUS_NO_FALLBACK),
    ZooFailure(
        methods=("opacus-hooks", "opacus-dpoptimizer"),
        models=("conv1d", "lm_padded", "simple_cnn", "smooth_cnn", "tied_lm"),
        checks=EMPTY_BATCH,
        **OPACUS_EMPTY_BATCH_RESHAPE,
    ),
    ZooFailure(
        methods=("opacus-dpoptimizer",),
        models=("mlp", "ignored_targets", "own_param"),
        checks=EMPTY_BATCH,
        **OPACUS_EMPTY_BATCH_RESHAPE,
    ),
    # from 1.2 the frozen model's empty batch fails on the clean-up first (the OPACUS_CLOSE_DELETES_GRAD_SAMPLE row)
    ZooFailure(
        methods=("opacus-dpoptimizer",),
        models=("frozen_mlp",),
        checks=EMPTY_BATCH,
        **{**OPACUS_EMPTY_BATCH_RESHAPE, "opacus": "<1.2"},
    ),
    ZooFailure(methods=("opacus-hooks", "opacus-dpoptimizer"), models=("tied_lm",), precisions=("float32", "bf16"), **OPACUS_TIED_LIST),
    ZooFailure(
        methods=("opacus-dpoptimizer",),
        models=("mlp", "conv1d", "ignored_targets", "lm_padded", "own_param", "simple_cnn", "smooth_cnn", "tied_lm"),
        checks=EMPTY_BATCH,
        precisions=("float64",),
        error="both inputs should have same dtype",
        reason=(
            "Opacus' DP optimizer on an empty batch of a float64 model: the per-sample clip factors of no samples "
            "are made in the default dtype (float32) and opt_einsum's contract with the float64 per-sample "
            "gradients refuses them; 1.5.2 computes it with torch.einsum, which promotes (Opacus' release commit "
            "#663). Measured on every release 1.3.0 (the first to take empty batches) to 1.5.1"
        ),
        link="https://github.com/meta-pytorch/opacus/pull/663",
        opacus=">=1.3,<1.5.2",
    ),
    ZooFailure(methods=_OPACUS, models=("own_param",), **OPACUS_FALLBACK_DOUBLE_COUNTS),
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
            "only on torch 2.0.1 with Opacus 1.5.3 (Opacus 1.6.0 refuses the model, the row above), and only on an "
            "Intel Xeon with AMX (amx_bf16; two runs): on an AMD EPYC with AVX-512 BF16 and no AMX it passes, "
            "serially and under -n 2, at every ONEDNN_MAX_CPU_ISA cap"
        ),
        devices=("cpu",),
        cpu="amx_bf16",
        torch="==2.0.*",
        opacus="==1.5.3",
    ),
    ZooFailure(models=("lstm_text",), **LSTM_VMAP_FLOAT64),
    ZooFailure(models=("lstm_text",), **LSTM_OPACUS_FALLBACK),
    ZooFailure(
        methods=("opacus-ghost",), models=("transformer",), checks=CHECKS, **OPACUS_CLOSE_DELETES_GRAD_SAMPLE
    ),
    ZooFailure(
        methods=(*_OPACUS, "opacus-ew"), models=("frozen_mlp",), checks=CHECKS, **OPACUS_CLOSE_DELETES_GRAD_SAMPLE
    ),
    ZooFailure(models=("transformer",), **MHA_OPACUS_FALLBACK),
    ZooFailure(models=("transformer",), **MHA_EXPANDED_WEIGHTS),
    ZooFailure(models=("transformer",), checks=(*QUANTITIES, "batching-rule"), **SDPA_VMAP_NO_FALLBACK),
    ZooFailure(models=("bn_eval",), **OPACUS_REFUSES_BATCHNORM),
    ZooFailure(models=("bn_eval",), **BATCHNORM_EXPANDED_WEIGHTS),
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
        reason=(
            "vmap has no batching rule for the CPU flash-attention kernel behind scaled_dot_product_attention "
            "(measured from torch 2.3; 2.1 and 2.2 have no fallback at all, the row above)"
        ),
        devices=("cpu",),
        torch=">=2.3",
    ),
    ZooFailure(
        methods=("vmap", "functorch"),
        models=("transformer",),
        checks=EMPTY_BATCH,
        error=r"Batching rule not implemented for aten::_scaled_dot_product_flash_attention_for_cpu\. The fallback path",
        reason=(
            "vmap over an empty batch through the CPU flash-attention kernel: torch 2.3's per-sample fallback "
            "refuses it (a batch of one and more works); measured on torch 2.3.1 only (2.2 has no fallback at all, "
            "2.4 and later pass)"
        ),
        devices=("cpu",),
        torch="==2.3.*",
    ),
    # Model features: tied, frozen and own parameters, language-model losses with ignored targets.
    ZooFailure(models=("lm_padded", "tied_lm"), **BACKPACK_EMBEDDING_FLOAT64),
    ZooFailure(
        methods=("backpack",),
        models=("tied_lm",),
        precisions=("float32", "bf16"),
        error=r"differs from the reference(: worst at| along it: at) (embedding\.weight|\|\|g\|\|)",
        reason=(
            "wrong result, not an error: BackPACK assumes each parameter belongs to one module use; with the output "
            "projection tied to the input embedding, grad_batch keeps one module's part of each per-sample gradient, "
            "not the sum of both (82% off on embedding.weight in float32; in float64 the Embedding row above fails "
            "first). " + SEEN_ON_2_14
        ),
        link="https://github.com/f-dangel/backpack/issues/248",
        backpack=">=1.6",
    ),
    ZooFailure(models=("tied_lm",), **_GHOST_TIED),
    ZooFailure(
        methods=_EXPANDED_WEIGHTS,
        models=("own_param",),
        error="Expanded Weights encountered but cannot handle function mul",
        reason=(
            "ExpandedWeights has rules for a fixed list of functions (linear, convolutions, embedding, norms); a "
            "module's own parameter used in a product (a layer scale) has none. " + SEEN_ON_2_14
        ),
        torch=">=2.0",
    ),
    ZooFailure(models=("own_param",), **_BACKPACK_OWN_PARAMETER),
    # Empty batches (B=0): only rows naming the empty-batch checks cover them; the first match decides.
    ZooFailure(
        methods=_EXPANDED_WEIGHTS,
        models=("*",),
        checks=EMPTY_BATCH,
        error="Batch size must be positive, got 0",
        reason=(
            "ExpandedWeights refuses an empty batch with a clear error (call_for_per_sample_grads checks the batch "
            "size): the caller must skip an empty Poisson batch. " + SEEN_ON_2_14
        ),
        torch=">=2.0",
    ),
    ZooFailure(
        methods=("vmap", "functorch"),
        models=("simple_cnn", "smooth_cnn", "conv1d", "bn_eval"),
        checks=EMPTY_BATCH,
        torch="<2.1",
        **_EMPTY_CONV_CRASH,
    ),
    ZooFailure(
        methods=("opacus-functorch",),
        models=("lm_padded", "tied_lm"),
        checks=EMPTY_BATCH,
        torch="<2.1",
        **_EMPTY_CONV_CRASH,
    ),
    ZooFailure(
        methods=("opacus-functorch",),
        models=("simple_cnn", "smooth_cnn", "conv1d"),
        checks=EMPTY_BATCH,
        link="https://github.com/pytorch/pytorch/issues/71080",
        torch="<2.10",
        **_EMPTY_CONV_CRASH,
    ),
    ZooFailure(
        methods=("vmap", "functorch"),
        models=("mlp", "own_param", "frozen_mlp", "transformer"),
        checks=EMPTY_BATCH,
        error=r"select\(\): index 0 out of range for tensor of size \[0\]",
        reason="torch 2.0's vmap fails on a batch of size 0 (an index into the empty batch); torch 2.14 passes these",
        torch="<2.1",
    ),
    ZooFailure(
        methods=("vmap-chunked",),
        models=("*",),
        checks=EMPTY_BATCH,
        # torch 2.0's assertion has no message; 2.10 fails a step later, on the missing output structure
        error=r"arg_spec must not be None|raised AssertionError: ?$|'NoneType' object has no attribute 'num_leaves'",
        reason=(
            "vmap with a chunk_size over a dimension of size 0 fails with an AssertionError from inside "
            "torch.func's chunking (there is no chunk to take the output structure from); docs/findings.md. "
            + SEEN_ON_2_14
        ),
        torch=">=2.0",
    ),
    ZooFailure(models=("transformer",), checks=EMPTY_BATCH, **SDPA_VMAP_NO_FALLBACK),
    ZooFailure(
        methods=("vmap", "vmap-compiled", "functorch"),
        models=("simple_cnn", "smooth_cnn", "conv1d", "bn_eval"),
        checks=EMPTY_BATCH,
        error=r"Expected input batch_size \(0\) to match target batch_size \(1\)",
        reason=(
            "vmap over a batch of size 0 through a convolution gives each sample's output a batch of 0, not 1 "
            "(Conv2d on x.unsqueeze(0) returns [0, 0, C, H, W] for inputs [0, 1, C, H, W]), and the loss then sees "
            "no output for its one target; docs/findings.md. " + SEEN_ON_2_14
        ),
        torch=">=2.0",
    ),
    ZooFailure(
        methods=("vmap", "vmap-compiled", "functorch"),
        models=("lm_padded", "tied_lm"),
        checks=EMPTY_BATCH,
        error=r"cannot reshape tensor of 0 elements into shape \[0, 1, 16, 1, -1\]",
        reason=(
            "vmap over a batch of size 0 of cross_entropy over [1, V, T] logits fails in an ambiguous reshape of "
            "the empty tensor; docs/findings.md. " + SEEN_ON_2_14
        ),
        torch=">=2.0",
    ),
    ZooFailure(
        methods=("vmap", "vmap-compiled", "functorch"),
        models=("transformer",),
        checks=EMPTY_BATCH,
        error="The fallback path does not support vmap over dims of size 0",
        reason=(
            "vmap has no batching rule for the CPU flash-attention kernel, and its slow per-sample fallback "
            "refuses a dimension of size 0 (a deliberate error since pytorch#46846). " + SEEN_ON_2_14
        ),
        link="https://github.com/pytorch/pytorch/pull/46846",
        devices=("cpu",),
        torch=">=2.0",
    ),
    ZooFailure(models=("lstm_text",), checks=EMPTY_BATCH, **LSTM_VMAP_FLOAT64),
    ZooFailure(models=("transformer",), checks=EMPTY_BATCH, **MHA_OPACUS_FALLBACK),
    ZooFailure(models=("transformer",), checks=EMPTY_BATCH, **BACKPACK_NO_EXTENSION),
    ZooFailure(models=("own_param",), checks=EMPTY_BATCH, **_BACKPACK_OWN_PARAMETER),
    ZooFailure(models=("tied_lm",), checks=EMPTY_BATCH, **_GHOST_TIED),
    ZooFailure(
        methods=_OPACUS,
        models=("bn_eval",),
        checks=EMPTY_BATCH,
        error=_OPACUS_REFUSES_BATCHNORM,
        reason="Opacus' validation rejects BatchNorm (a trainable layer with buffers), an empty batch too (measured "
        "on every release 1.2.0 to 1.6.0). " + SEEN_ON_2_14,
        opacus=">=1.2",
    ),
    ZooFailure(
        methods=("opacus-functorch",),
        models=("simple_cnn", "smooth_cnn", "conv1d", "lm_padded", "tied_lm"),
        checks=EMPTY_BATCH,
        error="expected groups to be greater than 0, but got groups=0|Function EmbeddingBackward0 returned an invalid gradient",
        reason=(
            "Opacus' functorch grad sampler fails on an empty batch in convolutions (a grouped convolution with "
            "groups = B = 0) and embeddings (a gradient of the wrong shape), where its hooks (opacus-hooks) return "
            "well-formed empty per-sample gradients. " + SEEN_ON_2_14
        ),
        opacus=">=1.0",
        torch=">=2.1",  # torch 2.0 kills the process there instead (the SIGFPE rows)
    ),
    ZooFailure(
        methods=("opacus-ghost",),
        models=("lm_padded",),
        checks=EMPTY_BATCH,
        error=r"cannot reshape tensor of 0 elements into shape \[0, -1\]",
        reason=(
            "Opacus' embedding norm sampler for ghost clipping reshapes the input ids to [B, -1], ambiguous for "
            "B = 0; the other layers' norm samplers handle an empty batch; docs/findings.md. " + SEEN_ON_2_14
        ),
        opacus=">=1.0",
    ),
    ZooFailure(
        methods=("backpack",),
        models=("simple_cnn", "smooth_cnn", "conv1d", "bn_eval"),
        checks=("empty-grads",),
        error="non-positive groups is not supported",
        reason=(
            "BackPACK's BatchGrad for convolutions fails on an empty batch (a grouped convolution with groups = B = 0); "
            "its BatchL2Grad passes there but for conv1d's grouped convolution, the row below. " + SEEN_ON_2_14
        ),
        backpack=">=1.6",
    ),
    ZooFailure(
        methods=("backpack",),
        models=("conv1d",),
        checks=("empty-norms",),
        error=r"cannot reshape tensor of 0 elements into shape \[0, 24",
        reason="BackPACK's BatchL2Grad for a grouped Conv1d fails on an empty batch in an ambiguous reshape. " + SEEN_ON_2_14,
        backpack=">=1.6",
    ),
    # Found by the release sweep (tox -m torch, tox -m libraries): the model features on older releases.
    ZooFailure(models=("lm_padded", "tied_lm"), **OPACUS_EMBEDDING_FLOAT64),
    ZooFailure(
        methods=("opacus-ghost",),
        models=("lm_padded",),
        precisions=("float64",),
        error=r"index_add_\(\): self \(Float\) and source \(Double\)",
        reason=(
            "Opacus' embedding norm sampler for ghost clipping adds float64 norms into a float32 buffer; seen on "
            "Opacus 1.5.3, right in 1.6.0 (which made the samplers keep the model's dtype)"
        ),
        link="https://github.com/meta-pytorch/opacus/pull/764",
        opacus="<1.6",
    ),
    ZooFailure(
        methods=("opacus-ghost",),
        models=("lm_padded",),
        precisions=("float32",),
        error=r"differs from the reference",
        reason=(
            "wrong result, not an error: Opacus 1.5.3's ghost clipping on a language model whose padding targets "
            "are ignored gives wrong per-sample norms, so the wrong samples are clipped (1.5.4 and 1.6.0 are right)"
        ),
        opacus="<1.5.4",
    ),
    ZooFailure(
        methods=("vmap", "vmap-chunked", "functorch"),
        models=("lm_padded", "tied_lm", "ignored_targets"),
        checks=(*QUANTITIES, "batching-rule"),
        error=r"index -100 is out of bounds for dimension",
        reason=(
            "vmap over cross_entropy with ignored targets (ignore_index=-100) fails in torch 2.0: the batched "
            "loss gathers at the ignored index instead of masking it; later releases are right"
        ),
        torch="<2.1",
    ),
)
