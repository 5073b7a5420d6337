"""What rows of the support matrix share: groups of methods that fail alike, and the failures seen
on zoo models and drawn layers alike (the fields of both rows but the models or layers)."""

from typing import Any

#: Opacus' hook-based paths: grad samples (hooks, functorch fallback), DPOptimizer over them,
#: and ghost clipping share the wrapping, the validation and the fallbacks, so they fail alike.
OPACUS = ("opacus-hooks", "opacus-functorch", "opacus-ghost", "opacus-dpoptimizer")
EXPANDED_WEIGHTS = ("opacus-ew", "expanded-weights")
VMAP_FAMILY = ("vmap", "vmap-chunked", "vmap-compiled", "functorch")

#: The two release sets a range below torch 2.6 (or an Opacus / BackPACK range) was measured on.
SEEN_ON_BOTH = "Seen on torch 2.0.1 (Opacus 1.5.3, BackPACK 1.6.0) and torch 2.14 (Opacus 1.6.0, BackPACK 1.7.1)"

#: What the rows about model features (tied and own parameters, language-model losses) and empty
#: batches were first measured on; their ranges are each library's, held by the release environments.
SEEN_ON_2_14 = "Seen on torch 2.14.0 with Opacus 1.6.0 and BackPACK 1.7.1; the release environments (tox -m torch, -m libraries) hold the range"

#: Each of these is one failure, seen on a zoo model and on a drawn layer: the fields of both rows
#: but their models or layers (and a drawn row's ``when``).
#: What vmap raises over a recurrent layer it cannot batch (nn.LSTM in float64, nn.RNN and nn.GRU always).
VMAP_RECURRENT_ERROR = r"output with shape \[\d+, \d+\] doesn't match the broadcast shape"

LSTM_VMAP_FLOAT64: dict[str, Any] = {
    "methods": VMAP_FAMILY + OPACUS,
    "precisions": ("float64",),
    "error": VMAP_RECURRENT_ERROR,
    "reason": (
        "vmap over nn.LSTM fails in float64 on the CPU (works in float32); Opacus has no grad "
        "sampler for nn.LSTM and falls back to the same vmap. Seen on torch 2.6, 2.13, 2.14, 2.15, "
        "and on torch 2.0.1 (2.1 to 2.5 not run)"
    ),
    "devices": ("cpu",),
    "torch": ">=2.0",
}

LSTM_OPACUS_FALLBACK: dict[str, Any] = {
    "methods": OPACUS,
    "precisions": ("float32", "tf32", "bf16"),
    "error": "only integer tensors of a single element can be converted to an index",
    "reason": (
        "Opacus' functorch fallback (no grad sampler for nn.LSTM) multiplies the module's "
        "output by the backprops, but nn.LSTM returns a tuple; Opacus expects its DPLSTM. Since the fallback "
        "came, in 1.2.0 (measured on every release 1.2.0 to 1.6.0). " + SEEN_ON_BOTH
    ),
    "opacus": ">=1.2",
}

BACKPACK_EMBEDDING_FLOAT64: dict[str, Any] = {
    "methods": ("backpack",),
    "precisions": ("float64",),
    "error": "expected scalar type (Double but found Float|Float but found Double)",
    "reason": (
        "BackPACK's Embedding extension mixes float32 into a float64 model's computation on sequences "
        "longer than one token (float32 works). " + SEEN_ON_BOTH
    ),
    "backpack": ">=1.6",
}

BACKPACK_NO_EXTENSION: dict[str, Any] = {
    "methods": ("backpack",),
    "error": "returned no gradient for|BatchL2Grad computed nothing for",
    "reason": (
        "BackPACK has no first-order extension for GroupNorm, LayerNorm, RMSNorm, InstanceNorm, "
        "MultiheadAttention, GRU, EmbeddingBag, or Opacus' DP layers (RNNLinear cells, SequenceBias): their parameters "
        "get no grad_batch / batch_l2, with only a warning. " + SEEN_ON_BOTH
    ),
    "backpack": ">=1.6",
}

#: Opacus' embedding grad sampler and ExpandedWeights' embedding rule, on an nn.Embedding with padding_idx.
EMBEDDING_PADDING_IGNORED: dict[str, Any] = {
    "error": r"differs from the reference: worst at layers\.0\.weight, sample \d+",
    "reason": (
        "wrong result, not an error: Opacus' embedding grad sampler and ExpandedWeights' embedding "
        "rule ignore padding_idx, so the padding row gets a non-zero per-sample gradient where "
        "autograd (and opacus-functorch, vmap) give zero; DP-SGD then trains the padding vector. " + SEEN_ON_BOTH
    ),
}

#: Opacus before 1.2: a module without a grad sampler is refused (no functorch fallback yet).
OPACUS_NO_FALLBACK: dict[str, Any] = {
    "methods": OPACUS,
    "error": r"grad sampler is not yet implemented for|Model contains a trainable layer that Opacus doesn't currently support",
    "reason": (
        "Opacus before 1.2 computes per-sample gradients only for the modules it has a grad sampler for and "
        "refuses a model with any other trainable module (nn.MultiheadAttention, nn.LSTM, nn.RNN, nn.GRU, nn.RMSNorm, "
        "nn.ConvTranspose1d/2d/3d, BatchNorm, nn.EmbeddingBag, a module with its own nn.Parameter): 'grad sampler is not yet "
        "implemented' to 1.1.0, its validator's 'Model contains a trainable layer that Opacus doesn't currently "
        "support' in 1.1.1 to 1.1.3. The functorch fallback for such modules came in 1.2.0. Measured on every "
        "release 1.0.0 to 1.2.0 (torch 2.14)"
    ),
    "link": "https://github.com/meta-pytorch/opacus/pull/445",
    "opacus": "<1.2",
}

#: Opacus before 1.3: an empty batch.
OPACUS_EMPTY_BATCH_RESHAPE: dict[str, Any] = {
    "precisions": ("float64",),
    "error": r"cannot reshape tensor of 0 elements into shape \[0, -1",
    "reason": (
        "Opacus before 1.3 fails on an empty batch (B=0, which Poisson sampling draws): its convolution and "
        "embedding grad samplers and its DP optimizer's clipping reshape to [B, -1, ...], ambiguous for B=0. "
        "Empty batches are supported from 1.3.0 (measured: fails on every release 1.0.0 to 1.2.0)"
    ),
    "link": "https://github.com/meta-pytorch/opacus/pull/530",
    "opacus": "<1.3",
}

#: Opacus before 1.1.2: a parameter shared by two modules.
OPACUS_TIED_LIST: dict[str, Any] = {
    "error": r"'list' object has no attribute 'detach'|stack expects each tensor to be equal size",
    "reason": (
        "Opacus before 1.1.2 keeps the per-sample gradients of a parameter shared by two modules as a list "
        "(one entry per module) instead of summing them, and fails where it reads them (opacus#413, fixed by "
        "#417 in 1.1.2; measured: fails on every release 1.0.0 to 1.1.1). In float64 its embedding grad sampler "
        "fails first (the float64 Embedding row)"
    ),
    "link": "https://github.com/meta-pytorch/opacus/issues/413",
    "opacus": "<1.1.2",
}

#: Opacus 1.2.0: the functorch fallback on a module with its own parameter and child modules.
OPACUS_FALLBACK_DOUBLE_COUNTS: dict[str, Any] = {
    "error": r"differs from the reference",
    "reason": (
        "wrong result, not an error: Opacus 1.2.0's functorch fallback on a module with both its own "
        "nn.Parameter and child modules computes the children's per-sample gradients too, while their own hooks "
        "compute them again, and the two are added up (opacus#510, fixed in 1.3.0; measured: wrong on 1.2.0 "
        "only)"
    ),
    "link": "https://github.com/meta-pytorch/opacus/pull/510",
    "opacus": "==1.2.0",
}

#: Opacus before 1.5.4: GradSampleModule's clean-up deletes grad_sample from every parameter.
OPACUS_CLOSE_DELETES_GRAD_SAMPLE: dict[str, Any] = {
    "error": "'Parameter' object has no attribute 'grad_sample'",
    "reason": (
        "Opacus' clean-up (GradSampleModule._close, to_standard_module) deletes grad_sample from every "
        "parameter and raises where one has none: a frozen parameter, or one ghost clipping computes no "
        "per-sample gradient for. Measured on every release 1.2.0 to 1.5.3 (1.0.0 to 1.1.3 pass); fixed in "
        "1.5.4 (it deletes only what is there)"
    ),
    "link": "https://github.com/meta-pytorch/opacus/pull/754",
    "opacus": ">=1.2,<1.5.4",
}

#: Opacus before 1.6: its embedding grad sampler in float64.
OPACUS_EMBEDDING_FLOAT64: dict[str, Any] = {
    "methods": ("opacus-hooks", "opacus-dpoptimizer"),
    "precisions": ("float64",),
    "error": r"scatter\(\): Expected self.dtype to be equal to src.dtype",
    "reason": (
        "Opacus' embedding grad sampler scatters the float64 backprops into a float32 buffer "
        "(torch.zeros without a dtype) and fails on every float64 model; fixed in Opacus 1.6.0"
    ),
    "link": "https://github.com/meta-pytorch/opacus/pull/764",
    "opacus": "<1.6",
}

#: torch 2.1 and 2.2: vmap over scaled_dot_product_attention on the CPU.
SDPA_VMAP_NO_FALLBACK: dict[str, Any] = {
    "methods": ("vmap", "vmap-chunked", "functorch"),
    "error": r"Batching rule not implemented for aten::_scaled_dot_product_flash_attention\. We could not generate a fallback",
    "reason": (
        "vmap over nn.MultiheadAttention fails on the CPU: torch 2.1 sends scaled_dot_product_attention to a "
        "new CPU flash-attention kernel that vmap has neither a batching rule nor a fallback for (torch 2.0 "
        "passes; vmap under torch.compile passes). Measured by the release history: fails on 2.1.2 and 2.2.2; "
        "2.3.1 (whose kernel is aten::_scaled_dot_product_flash_attention_for_cpu) and later compute it by the "
        "slow per-sample fallback (the batching-rule row; an earlier run on 2.3.1 that said it fails was made "
        "while the zoo changed under it); batching rules for the SDPA kernels came with pytorch/pytorch#133964"
    ),
    "link": "https://github.com/pytorch/pytorch/pull/133964",
    "devices": ("cpu",),
    "torch": ">=2.1,<2.3",
}

MHA_OPACUS_FALLBACK: dict[str, Any] = {
    "methods": OPACUS,
    "error": r"MultiheadAttention.forward\(\) missing 2 required positional arguments",
    "reason": (
        "Opacus' functorch fallback (no grad sampler for nn.MultiheadAttention) calls the module "
        "with its first input only; Opacus expects its DPMultiheadAttention. Since the fallback came, in 1.2.0 "
        "(measured on every release 1.2.0 to 1.6.0). " + SEEN_ON_BOTH
    ),
    "opacus": ">=1.2",
}

MHA_EXPANDED_WEIGHTS: dict[str, Any] = {
    "methods": EXPANDED_WEIGHTS,
    "error": "Expanded Weights encountered but cannot handle function multi_head_attention_forward",
    "reason": "ExpandedWeights has no rule for multi_head_attention_forward. " + SEEN_ON_BOTH,
    "torch": ">=2.0",
}

#: Opacus' validation on a model with a BatchNorm (a zoo model in eval mode, a drawn one).
OPACUS_REFUSES_BATCHNORM: dict[str, Any] = {
    "methods": OPACUS,
    "error": "Model contains a trainable layer (with buffers|that Opacus doesn't currently support)",
    "reason": (
        "Opacus' validation rejects BatchNorm (a trainable layer with buffers), even in eval mode (measured on "
        "every release 1.2.0 to 1.6.0; before 1.2 the row for modules without a grad sampler). " + SEEN_ON_BOTH
    ),
    "opacus": ">=1.2",
}

BATCHNORM_EXPANDED_WEIGHTS: dict[str, Any] = {
    "methods": EXPANDED_WEIGHTS,
    "error": "Expanded Weights encountered but cannot handle function batch_norm",
    "reason": "ExpandedWeights has no rule for batch_norm, even with running statistics. " + SEEN_ON_BOTH,
    "torch": ">=2.0",
}
