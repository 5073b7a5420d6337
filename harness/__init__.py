"""Per-sample-gradient regression harness: every method checked against a float64 loop.

The public API, for plugins and users' own code, is imported from here; it loads lazily, so
that the command-line tools that need no torch (``report``, ``compare``) do not import it.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public name -> the module that defines it.
_PUBLIC = {
    "Case": "harness.core.case",
    "HarnessError": "harness.core.errors",
    "MethodFailed": "harness.core.errors",
    "MethodLeftState": "harness.core.errors",
    "MethodOutputError": "harness.core.errors",
    "MethodUnavailable": "harness.core.errors",
    "ModelBroken": "harness.core.errors",
    "ToleranceError": "harness.core.errors",
    "build_case": "harness.problems.build",
    "EveryExampleExpected": "harness.core.errors",
    "MethodReport": "harness.checking.method_check",
    "check_method": "harness.checking.method_check",
    "DrawnFailure": "harness.checking.support",
    "ZooFailure": "harness.checking.support",
    "add_expected_failures": "harness.checking.support",
    "parametrize_with_checks": "harness.pytest_plugin",
    "METHODS": "harness.methods",
    "get_method": "harness.methods",
    "register_method": "harness.methods",
    "MODELS": "harness.problems.zoo",
    "ModelSpec": "harness.problems.zoo",
    "get_model": "harness.problems.zoo",
    "register_model": "harness.problems.zoo",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'harness' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
