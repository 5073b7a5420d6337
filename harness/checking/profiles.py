"""The property suite's Hypothesis profiles, registered under ``psg-`` names so that they neither
take over nor are taken over by a project's own profiles (``ci`` is a common name).

``--hypothesis-profile=psg-nightly`` selects one for a pytest run (the plugin passes it on with
:func:`use_profile`); the property suite runs under ``psg-ci`` otherwise, whatever profile the
project's own tests use.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis.errors import InvalidArgument

_COMMON = dict(deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow])

PROFILES = {
    #: The default, on every machine: the same few examples on every run, nothing written to the
    #: example database. Fresh draws would make a property test's verdict (passed, or xfailed
    #: because every drawn example hit a support-matrix row) differ from one run to the next.
    "psg-ci": settings(derandomize=True, max_examples=5, database=None, **_COMMON),
    #: Exploring: fresh random examples each run; failures are remembered in .hypothesis/.
    "psg-dev": settings(max_examples=5, **_COMMON),
    #: Nightly: hundreds of fresh examples per layer strategy, method and precision.
    "psg-nightly": settings(max_examples=300, **_COMMON),
}
DEFAULT_PROFILE = "psg-ci"

for _name, _profile in PROFILES.items():
    settings.register_profile(_name, _profile)

_active = DEFAULT_PROFILE


def registered_profiles() -> list[str]:
    """The names of every Hypothesis profile registered in this process: the harness's, Hypothesis'
    own (``default``, ``ci``) and those a project registered (in a conftest or a ``-p`` plugin)."""
    return sorted(getattr(settings, "_profiles", PROFILES))


def use_profile(name: str | None) -> None:
    """Run the property suite under the named harness profile; another registered name (a
    project's own profile), or None, leaves the default, ``psg-ci``.

    Raises ValueError, listing the registered profiles, for a name no one registered.
    """
    global _active
    if name is not None:
        try:
            settings.get_profile(name)
        except InvalidArgument:
            theirs = [p for p in registered_profiles() if p not in PROFILES]
            raise ValueError(
                f"unknown Hypothesis profile {name!r}; registered: {', '.join(PROFILES)} (the harness's property "
                f"suite), {', '.join(theirs)}"
            ) from None
    _active = name if name in PROFILES else DEFAULT_PROFILE


def active_profile() -> settings:
    """The settings the property suite draws its examples under."""
    return settings.get_profile(_active)
