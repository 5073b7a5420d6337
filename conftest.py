"""Top-level pytest configuration: the harness plugin (markers, grids, global state) and the
Hypothesis profiles of the property suite, chosen with ``--hypothesis-profile``."""

from hypothesis import HealthCheck, settings

pytest_plugins = ("harness.pytest_plugin",)

_COMMON = dict(deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow])

#: The default, on every machine: the same few examples on every run, nothing written to the
#: example database. Fresh draws would make a property test's verdict (passed, or xfailed because
#: every drawn example hit a support-matrix row) differ from one run to the next.
settings.register_profile("ci", derandomize=True, max_examples=5, database=None, **_COMMON)
#: Exploring: fresh random examples each run; failures are remembered in .hypothesis/.
settings.register_profile("dev", max_examples=5, **_COMMON)
#: Nightly: hundreds of fresh examples per layer strategy, method and precision.
settings.register_profile("nightly", max_examples=300, **_COMMON)

settings.load_profile("ci")
