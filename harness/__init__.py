"""Per-sample-gradient regression harness: every method checked against a float64 loop."""

from harness.case import Case, build_case
from harness.errors import (
    HarnessError,
    MethodFailed,
    MethodLeftState,
    MethodOutputError,
    MethodUnavailable,
    ToleranceError,
)
from harness.methods import METHODS, get_method, register_method
from harness.models import MODELS, ModelSpec, get_model, register_model

__all__ = [
    "Case",
    "HarnessError",
    "METHODS",
    "MODELS",
    "MethodFailed",
    "MethodLeftState",
    "MethodOutputError",
    "MethodUnavailable",
    "ModelSpec",
    "ToleranceError",
    "build_case",
    "get_method",
    "get_model",
    "register_method",
    "register_model",
]
