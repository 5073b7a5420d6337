"""Conversions keep the function: each layer Opacus converts (``ModuleValidator.fix``, ``DPRNN``),
given the same weights, computes what the original computes, and its per-sample gradients are the
oracle's of the original.

Ids read ``test_conversion_forward[float64-mha-bias-batch_first-both]``: the precision the
converted layer computes in (the forward check only), the original layer's kind, its arguments
that are on (or off, where on is the default), the masks. The default run keeps one layout per
kind in float64; ``-m slow`` runs every layout and mask, and the outputs in float32 too.
"""

import pytest

from harness.checking.conversions import check_forward, check_grads, conversions
from harness.pytest_plugin import expected_marks

#: The precisions the converted layer's outputs are computed in (the original's are float64's):
#: float32 runs under ``slow``.
PRECISIONS = ("float64", "float32")


def _params(check: str) -> list:
    return [
        pytest.param(conversion, id=conversion.id, marks=expected_marks(conversion.expected(check), conversion.slow))
        for conversion in conversions()
    ]


@pytest.mark.parametrize(
    ("conversion", "precision"),
    [
        pytest.param(
            conversion,
            precision,
            id=f"{precision}-{conversion.id}",
            marks=expected_marks(conversion.expected("forward", precision), conversion.slow or precision != "float64"),
        )
        for precision in PRECISIONS
        for conversion in conversions()
    ],
)
def test_conversion_forward(conversion, precision, psg_record):
    psg_record("max_rel_err", check_forward(conversion, precision).max_rel_err)


@pytest.mark.parametrize("conversion", _params("grads"))
def test_conversion_grads(conversion, psg_record):
    psg_record("max_rel_err", check_grads(conversion).max_rel_err)
