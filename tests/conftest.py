"""Fixtures shared by the self-tests of the harness; every self-test is a harness item (``psg``)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness import register_method
from harness.methods import unregister_method


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The self-tests run with the harness's warning filters and fresh torch state, as the suite
    does (and, like its slow cases, the ``integration`` ones only when ``-m`` names them)."""
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.psg)


@pytest.fixture
def method() -> Iterator[Callable[..., Callable]]:
    """Register throw-away methods (default name 'selftest') for one test, and remove them afterwards.

    ``method(fn, name="selftest", **options)`` takes ``register_method``'s keywords (``returns``, ``clip_eps``).
    """
    added = []

    def register(fn: Callable, name: str = "selftest", **options) -> Callable:
        register_method(name, fn, replace=True, **options)
        added.append(name)
        return fn

    yield register
    for name in added:
        unregister_method(name)


@pytest.fixture
def subprocess_env() -> dict[str, str]:
    """The environment for a pytest run in a subprocess: this one's, less pytest-xdist's worker
    variables (pytest-benchmark disables itself where it sees them, and the harness would take a
    worker's share of the cores)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST_")}
