"""What each release has (harness/core/releases.py) and the support-matrix rows' release ranges."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from packaging.version import Version

from harness.checking.checks import check_property
from harness.checking.support import ZooFailure
from harness.checking.support.conversions import FIX_CLONES_WITH_TORCH_LOAD
from harness.checking.trials import PropertyTrial
from harness.core import releases
from harness.core.errors import MethodUnavailable
from harness.core.releases import DEFAULT_RELEASES, Feature, Versions, installed_version, library
from harness.problems.drawn import LAYER_KINDS, LayerKind

FEATURES = [value for value in vars(releases).values() if isinstance(value, Feature)]


@pytest.mark.parametrize("feature", FEATURES, ids=lambda feature: feature.what)
def test_a_feature_is_there_exactly_from_the_release_it_names(feature):
    """The capability check and the release a reason names agree on the installed release."""
    if feature.library != "torch" and (problem := releases.import_problem(feature.library)):
        pytest.skip(problem)
    installed = Version(installed_version(feature.library))
    assert feature.available == (installed >= Version(feature.since)), (feature, installed)
    assert (feature.missing() is None) == feature.available


def test_a_missing_feature_is_a_skip_naming_what_and_both_releases():
    absent = Feature("nn.Nothing", "torch", "9.9", lambda: False)
    reason = f"nn.Nothing needs torch 9.9; this is {Version(torch.__version__).base_version}"
    assert absent.missing() == reason
    with pytest.raises(MethodUnavailable, match=reason):
        absent.require()


def test_a_library_that_does_not_import_is_one_line_naming_the_pair_and_the_error(monkeypatch):
    monkeypatch.setitem(releases.LIBRARIES, "no_such_module_xyz", ("pytest", "Nowhere"))
    with pytest.raises(MethodUnavailable) as raised:
        library("no_such_module_xyz")
    assert str(raised.value) == (
        f"Nowhere {installed_version('no_such_module_xyz')} does not import with torch {torch.__version__} "
        "(ModuleNotFoundError: No module named 'no_such_module_xyz')"
    )
    assert Feature("a layer", "no_such_module_xyz", "1.0", lambda: True).missing() == str(raised.value)


def test_a_library_that_is_not_installed_says_so(monkeypatch):
    monkeypatch.setitem(releases.LIBRARIES, "not_installed_xyz", ("not-installed-xyz", "Absent"))
    with pytest.raises(MethodUnavailable, match="^Absent is not installed$"):
        library("not_installed_xyz")


def test_a_layer_kind_the_release_lacks_skips_its_property_tests_with_the_reason(monkeypatch):
    absent = Feature("nn.Linear", "torch", "9.9", lambda: False)
    monkeypatch.setitem(LAYER_KINDS, "linear", LayerKind(torch.nn.Linear, needs=(absent,)))
    with pytest.raises(MethodUnavailable, match=r"^nn.Linear needs torch 9.9; this is "):
        check_property(PropertyTrial("linear", "float64", "cpu", "loop"))


def _row(**ranges: str) -> ZooFailure:
    return ZooFailure(methods=("opacus-hooks",), models=("mlp",), error="x", reason="y", **ranges)


@pytest.mark.parametrize(
    "ranges, versions, holds",
    [
        ({}, Versions("2.0.1", None, None), True),
        ({"opacus": "<1.6"}, Versions("2.14.0", "1.5.3", "1.7.1"), True),
        ({"opacus": "<1.6"}, Versions("2.14.0", "1.6.0", "1.7.1"), False),
        ({"opacus": "<1.6"}, Versions("2.14.0", None, "1.7.1"), False),
        ({"backpack": ">=1.7"}, Versions("2.0.1+cu117", "1.5.3", "1.6.0"), False),
        ({"backpack": ">=1.7", "torch": ">=2.6"}, Versions("2.14.0+cpu", "1.6.0", "1.7.1"), True),
        ({"backpack": ">=1.7", "torch": ">=2.6"}, Versions("2.0.1", "1.6.0", "1.7.1"), False),
    ],
)
def test_a_row_holds_only_inside_every_release_range_it_names(ranges, versions, holds):
    row = _row(**ranges)
    assert row.holds_for(versions) is holds
    assert row.applies("opacus-hooks", "mlp", "float64", "cpu", "grads", versions) is holds


@pytest.mark.parametrize("flags, holds", [(frozenset({"avx512_bf16", "amx_bf16"}), True), (frozenset({"avx512_bf16"}), False)])
def test_a_row_seen_on_some_cpus_holds_only_where_the_cpu_has_its_flag(flags, holds):
    row = _row(torch=">=2.0", cpu="amx_bf16")
    assert row.holds_for(Versions("2.0.1", "1.5.3", "1.6.0", flags)) is holds
    assert row.scope() == "torch>=2.0, on CPUs with amx_bf16"


def test_a_row_seen_on_some_cpus_is_judged_on_this_machine_by_default(monkeypatch):
    from harness.checking.support import rows

    monkeypatch.setattr(rows, "cpu_flags", lambda: frozenset({"amx_bf16"}))
    assert _row(cpu="amx_bf16").holds_for(Versions("2.0.1"))
    monkeypatch.setattr(rows, "cpu_flags", lambda: frozenset({"avx2"}))
    assert not _row(cpu="amx_bf16").holds_for(Versions("2.0.1"))


def test_a_torch_version_alone_stands_for_the_installed_libraries():
    assert Versions.of("2.0.1") == Versions("2.0.1", installed_version("opacus"), installed_version("backpack"))
    assert Versions.of(None) == Versions.installed()


@pytest.mark.parametrize("field", ["torch", "opacus", "backpack"])
def test_a_row_with_a_range_that_is_not_one_is_refused(field):
    with pytest.raises(ValueError, match=rf"{field}='1.6' is not a version range"):
        _row(**{field: "1.6"})


def test_resnet18_gn_is_the_model_opacus_fixer_makes():
    """The zoo builds resnet18_gn without Opacus; it must stay the model ModuleValidator.fix gives."""
    from torchvision.models import resnet18

    from harness.problems.zoo import resnet18_gn

    if problem := releases.import_problem("opacus"):
        pytest.skip(problem)
    if FIX_CLONES_WITH_TORCH_LOAD.holds_for(Versions.installed()):
        pytest.skip(f"ModuleValidator.fix fails on {FIX_CLONES_WITH_TORCH_LOAD.scope()}: {FIX_CLONES_WITH_TORCH_LOAD.link}")
    from opacus.validators import ModuleValidator

    torch.manual_seed(0)
    ours = resnet18_gn()
    torch.manual_seed(0)
    opacus_fixed = ModuleValidator.fix(resnet18(num_classes=10))
    assert str(ours) == str(opacus_fixed)
    theirs = opacus_fixed.state_dict()
    assert list(ours.state_dict()) == list(theirs)
    assert all(torch.equal(value, theirs[name]) for name, value in ours.state_dict().items())


def test_the_default_releases_are_the_default_constraints_file():
    pins = dict(
        line.split("==")
        for line in (Path(__file__).parents[2] / "constraints" / "torch-2.14.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    assert DEFAULT_RELEASES == Versions(pins["torch"], pins["opacus"], pins["backpack-for-pytorch"])
