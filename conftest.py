"""This repository's pytest configuration. The harness's plugin (markers, options, grids,
Hypothesis profiles, warning filters) is not loaded from here but through the ``pytest11``
entry point of the installed package, as in any project that installs it: a checkout that was
not installed stops here with the command that fixes it."""

from importlib.metadata import PackageNotFoundError, entry_points, version

import pytest

try:
    version("psg-harness")
    _PLUGIN = any(ep.value == "harness.pytest_plugin" for ep in entry_points(group="pytest11"))
except PackageNotFoundError:
    _PLUGIN = False
if not _PLUGIN:
    raise pytest.UsageError(
        "psg-harness is not installed in this environment (its pytest plugin loads through the package's "
        "entry point): python -m pip install -e . -c constraints/torch-2.14.txt"
    )
