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
VMAP_RECURRENT_ERROR = r"output with shape \[1, \d+\] doesn't match the broadcast shape"

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
        "output by the backprops, but nn.LSTM returns a tuple; Opacus expects its DPLSTM. " + SEEN_ON_BOTH
    ),
    "opacus": ">=1.5.3",
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
        "MultiheadAttention, GRU, or Opacus' DP layers (RNNLinear cells, SequenceBias): their parameters "
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

#: Opacus before 1.5.4: GradSampleModule's clean-up deletes grad_sample from every parameter.
OPACUS_CLOSE_DELETES_GRAD_SAMPLE: dict[str, Any] = {
    "error": "'Parameter' object has no attribute 'grad_sample'",
    "reason": (
        "Opacus' clean-up (GradSampleModule._close, to_standard_module) deletes grad_sample from every "
        "parameter and raises where one has none: a frozen parameter, or one ghost clipping computes no "
        "per-sample gradient for. Seen on Opacus 1.5.3; fixed in 1.5.4 (it deletes only what is there)"
    ),
    "link": "https://github.com/meta-pytorch/opacus/pull/754",
    "opacus": "<1.5.4",
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

#: torch 2.1 to 2.3: vmap over scaled_dot_product_attention on the CPU.
SDPA_VMAP_NO_FALLBACK: dict[str, Any] = {
    "methods": ("vmap", "vmap-chunked", "functorch"),
    "error": r"Batching rule not implemented for aten::_scaled_dot_product_flash_attention\. We could not generate a fallback",
    "reason": (
        "vmap over nn.MultiheadAttention fails on the CPU: torch 2.1 sends scaled_dot_product_attention to a "
        "new CPU flash-attention kernel that vmap has neither a batching rule nor a fallback for (torch 2.0 "
        "passes; vmap under torch.compile passes). Measured: fails on 2.1.2, 2.2.2, 2.3.1; 2.4.1 computes "
        "it by the slow per-sample fallback (the batching-rule row); batching rules for the SDPA kernels "
        "came with pytorch/pytorch#133964"
    ),
    "link": "https://github.com/pytorch/pytorch/pull/133964",
    "devices": ("cpu",),
    "torch": ">=2.1,<2.4",
}

MHA_OPACUS_FALLBACK: dict[str, Any] = {
    "methods": OPACUS,
    "error": r"MultiheadAttention.forward\(\) missing 2 required positional arguments",
    "reason": (
        "Opacus' functorch fallback (no grad sampler for nn.MultiheadAttention) calls the module "
        "with its first input only; Opacus expects its DPMultiheadAttention. " + SEEN_ON_BOTH
    ),
    "opacus": ">=1.5.3",
}

MHA_EXPANDED_WEIGHTS: dict[str, Any] = {
    "methods": EXPANDED_WEIGHTS,
    "error": "Expanded Weights encountered but cannot handle function multi_head_attention_forward",
    "reason": "ExpandedWeights has no rule for multi_head_attention_forward. " + SEEN_ON_BOTH,
    "torch": ">=2.0",
}
