"""The norm-wise distance (harness/core/distance.py) at the edges of its bound."""

from __future__ import annotations

import pytest
import torch

from harness.core.distance import assert_close, distance
from harness.core.errors import ToleranceError
from harness.core.tolerances import Tolerance

#: No absolute part: a parameter whose reference is zero (an unused layer) has a zero bound.
RELATIVE_ONLY = Tolerance(rtol=1e-3, atol=0.0)
REFERENCE = {"unused": torch.zeros(3, 2), "w": torch.ones(3, 2)}


def test_a_zero_bound_is_met_by_an_exact_match():
    comparison = distance({"unused": torch.zeros(3, 2), "w": torch.ones(3, 2)}, REFERENCE, RELATIVE_ONLY)
    assert comparison.ok and comparison.worst.ratio == 0.0


def test_a_zero_reference_does_not_hide_an_error_elsewhere():
    with pytest.raises(ToleranceError, match="worst at w, sample 0"):
        assert_close({"unused": torch.zeros(3, 2), "w": 100 * torch.ones(3, 2)}, REFERENCE, RELATIVE_ONLY, "m")


def test_any_error_against_a_zero_bound_fails():
    comparison = distance({"unused": torch.full((3, 2), 1e-9), "w": torch.ones(3, 2)}, REFERENCE, RELATIVE_ONLY)
    assert not comparison.ok and comparison.worst.param == "unused" and comparison.worst.ratio == float("inf")
