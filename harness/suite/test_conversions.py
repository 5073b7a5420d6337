"""Conversions keep the function: each layer Opacus converts (``ModuleValidator.fix``, ``DPRNN``),
given the same weights, computes what the original computes, and its per-sample gradients are the
oracle's of the original.

Ids read ``test_conversion_forward[mha-bias-batch_first-both]``: the original layer's kind, its
arguments that are on (or off, where on is the default), the masks. The default run keeps one
layout per kind; ``-m slow`` runs every layout and mask.
"""

import pytest

from harness.checking.conversions import check_forward, check_grads, conversions
from harness.pytest_plugin import expected_marks


def _params(check: str) -> list:
    return [
        pytest.param(conversion, id=conversion.id, marks=expected_marks(conversion.expected(check), conversion.slow))
        for conversion in conversions()
    ]


@pytest.mark.parametrize("conversion", _params("forward"))
def test_conversion_forward(conversion, psg_record):
    psg_record("max_rel_err", check_forward(conversion).max_rel_err)


@pytest.mark.parametrize("conversion", _params("grads"))
def test_conversion_grads(conversion, psg_record):
    psg_record("max_rel_err", check_grads(conversion).max_rel_err)
