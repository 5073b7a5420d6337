"""The support matrix for the entry points users call (``make_private``, its training paths, the
clean-up after it): which ``grad_sample_mode`` is expected to fail where, and why. A model the
mode's method cannot run at all is its zoo rows' (``opacus-ghost`` stands for
``grad_sample_mode="ghost"``): they come before these, as that failure comes first."""

from __future__ import annotations

from harness.checking.support.families import EXPANDED_WEIGHTS as _EXPANDED_WEIGHTS
from harness.checking.support.rows import EntryPointFailure

#: Seen on the project's default releases; the release environments hold the range.
_SEEN_ON = "Seen on Opacus 1.6.0 with torch 2.14.0"

ENTRY_POINT_MATRIX: tuple[EntryPointFailure, ...] = (
    EntryPointFailure(
        methods=("opacus-hooks", "opacus-functorch", "opacus-ghost"),
        checks=("leftovers",),
        error=r"left state behind on the model: attributes (\w+, )*summed_grad(, \w+)* on parameters; .*attributes activations on module ",
        reason=(
            "Opacus' clean-up (to_standard_module, GradSampleModule._close) removes the parameter attributes it lists in "
            "OPACUS_PARAM_MONKEYPATCH_ATTRS (grad_sample, _forward_counter, _current_grad_sample, _norm_sample) and its "
            "hooks, but not the DP optimizer's summed_grad (a tensor of each parameter's size, on every trainable "
            "parameter after a step) nor the activations list its forward hooks put on every hooked module; "
            "summed_grad is in no release's clean-up list (1.6.0's, and the shorter lists of earlier releases). "
            "docs/findings.md has the repro. " + _SEEN_ON
        ),
        opacus=">=1.0",
    ),
    EntryPointFailure(
        methods=tuple(m for m in _EXPANDED_WEIGHTS if m.startswith("opacus")),
        checks=("leftovers",),
        error=r"left state behind on the model: attributes (\w+, )*summed_grad(, \w+)* on parameters",
        reason=(
            "Opacus' clean-up (to_standard_module) leaves the DP optimizer's summed_grad on every trainable parameter "
            "(in grad_sample_mode 'ew' no hooks, so nothing on the modules); docs/findings.md has the repro. " + _SEEN_ON
        ),
        opacus=">=1.2",
    ),
    EntryPointFailure(
        methods=("opacus-ghost",),
        paths=("accumulate",),
        checks=("step",),
        error=r"its step times .* differs from the reference",
        reason=(
            "wrong result, not an error: ghost clipping's loss.backward() calls optimizer.zero_grad() between its "
            "two backward passes, so backward on several batches before one optimizer.step() keeps the clipped "
            "gradient of the last batch only (and the optimizer divides by one batch's expected size); the "
            "maintainers say accumulation is not supported with ghost clipping and point to BatchMemoryManager, "
            "which passes. " + _SEEN_ON
        ),
        link="https://github.com/meta-pytorch/opacus/issues/683",
        opacus=">=1.5",
    ),
    EntryPointFailure(
        methods=tuple(m for m in _EXPANDED_WEIGHTS if m.startswith("opacus")),
        paths=("accumulate",),
        checks=("step",),
        error=r"Current Expanded Weights accumulates the gradients, which will be incorrect for multiple calls",
        reason=(
            "a clear refusal: in grad_sample_mode 'ew', ExpandedWeights refuses a second backward before the "
            "per-sample gradients are cleared, so gradient accumulation by several backward passes needs "
            "BatchMemoryManager (which passes: it steps, and clears, after each physical batch). " + _SEEN_ON
        ),
        torch=">=2.0",
        opacus=">=1.2",
    ),
)
