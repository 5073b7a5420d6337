"""Top-level pytest configuration: the harness plugin (markers, grids, global state) and the
Hypothesis profiles of the property suite, chosen with ``--hypothesis-profile``."""

import os

from hypothesis import HealthCheck, settings

pytest_plugins = ("harness.pytest_plugin",)

_COMMON = dict(deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow])

#: CI: the same examples on every run, few of them, nothing written to the example database.
settings.register_profile("ci", derandomize=True, max_examples=5, database=None, **_COMMON)
#: A developer's run: fresh random examples each time; failures are remembered in .hypothesis/.
settings.register_profile("dev", max_examples=5, **_COMMON)
#: Nightly: hundreds of examples per layer strategy, method and precision.
settings.register_profile("nightly", max_examples=300, **_COMMON)

settings.load_profile("ci" if os.environ.get("CI", "").lower() in ("1", "true", "yes") else "dev")
