"""Fixtures shared by the self-tests of the harness; every self-test is a harness item (``psg``)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness import register_method
from harness.methods import unregister_method

#: Self-tests slow by nature (they start other processes: pytest or Python in a subprocess,
#: valgrind, a new virtual environment) run only when ``-m`` names this marker; .ci/run runs
#: them after the README's command.
INTEGRATION = "integration"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{INTEGRATION}: a self-test that starts other processes (pytest in a subprocess, valgrind, a new virtual "
        "environment); "
        f"left out unless -m names it (python -m pytest -m {INTEGRATION})",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The self-tests run with the harness's warning filters and fresh torch state, as the suite
    does; the ``integration`` ones only when the ``-m`` expression names them."""
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.psg)
    if re.search(rf"\b{INTEGRATION}\b", config.getoption("markexpr") or ""):
        return
    left_out = [item for item in items if item.get_closest_marker(INTEGRATION)]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if not item.get_closest_marker(INTEGRATION)]


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
