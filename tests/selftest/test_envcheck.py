"""The torch/torchvision guard names the pair and why it cannot work."""

from __future__ import annotations

import sys

import pytest

from harness.core import environment as envcheck
from harness.core import releases
from harness.core.environment import BrokenEnvironment, check_torch_pair


@pytest.fixture(autouse=True)
def _forget_faked_versions():
    """The tests fake importlib.metadata, which releases.installed_version (and the import it
    guards, releases._import) caches: forget what they saw, or a later test on this process finds
    Opacus "not installed"."""
    yield
    releases.installed_version.cache_clear()
    releases._import.cache_clear()


def fake_versions(monkeypatch, torch: str, torchvision: str, pin: str) -> None:
    versions = {"torch": torch, "torchvision": torchvision}
    monkeypatch.setattr(envcheck.metadata, "version", lambda name: versions[name])
    monkeypatch.setattr(envcheck.metadata, "requires", lambda name: [f"torch (=={pin})", "numpy"])


def test_this_environment_has_a_working_pair():
    assert check_torch_pair().startswith("torch ")


def test_a_version_mismatch_names_the_pair(monkeypatch):
    fake_versions(monkeypatch, "2.13.0+cpu", "0.29.0", "2.14.0")
    with pytest.raises(BrokenEnvironment, match=r"torch 2\.13\.0\+cpu with torchvision 0\.29\.0: .*requires torch==2\.14\.0"):
        check_torch_pair()


def test_a_pair_that_does_not_import_names_the_cpu_wheel_trap(monkeypatch):
    fake_versions(monkeypatch, "2.13.0+cpu", "0.28.0", "2.13.0")
    monkeypatch.setitem(sys.modules, "torchvision", None)  # makes `import torchvision` raise
    with pytest.raises(BrokenEnvironment, match=r"torch 2\.13\.0\+cpu with torchvision 0\.28\.0 do not import together.*no CPU build"):
        check_torch_pair()


def test_check_env_command_exits_2_with_the_reason(monkeypatch, capsys):
    fake_versions(monkeypatch, "2.13.0+cpu", "0.29.0", "2.14.0")
    assert envcheck.main([]) == 2
    assert "error: torch 2.13.0+cpu with torchvision 0.29.0" in capsys.readouterr().err


def test_constraints_catch_an_installer_that_ignored_them(monkeypatch, tmp_path, capsys):
    constraints = tmp_path / "torch-2.6.txt"
    constraints.write_text("# the oldest pair\ntorch==2.6.0\ntorchvision==0.21.0  # its torchvision\nnot-installed==1\n")
    monkeypatch.setattr(envcheck, "check_torch_pair", lambda: "torch 2.15.0 with torchvision 0.29.2")
    versions = {"torch": "2.15.0", "torchvision": "0.29.2"}

    def version(name):
        if name not in versions:
            raise envcheck.metadata.PackageNotFoundError(name)
        return versions[name]

    monkeypatch.setattr(envcheck.metadata, "version", version)
    assert envcheck.main(["--constraints", str(constraints)]) == 2
    assert "torch 2.15.0 with torchvision 0.29.2: " in capsys.readouterr().err
    versions.update(torch="2.6.0+cu124", torchvision="0.21.0")
    assert envcheck.main(["--constraints", str(constraints)]) == 0


@pytest.mark.parametrize(
    "text, message",
    [(None, "missing.txt: cannot be read (No such file or directory)"), ("torch==\n", "'torch==' is not a requirement (")],
)
def test_a_constraints_file_that_cannot_be_read_is_one_line(tmp_path, capsys, text, message):
    constraints = tmp_path / "missing.txt"
    if text is not None:
        constraints.write_text(text)
    assert envcheck.main(["--constraints", str(constraints)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err


def test_options_in_a_constraints_file_are_not_requirements(tmp_path):
    constraints = tmp_path / "torch.txt"
    constraints.write_text(f"-c other.txt\ntorch=={envcheck.metadata.version('torch')}\n")
    envcheck.check_constraints(str(constraints), "this pair")


def test_a_method_library_that_does_not_import_is_one_warning_line_and_not_an_error(monkeypatch, capsys):
    broken = "Opacus 1.5.4 does not import with torch 2.0.1 (AttributeError: module 'torch.nn' has no attribute 'RMSNorm')"
    monkeypatch.setattr(envcheck, "import_problem", lambda name: broken if name == "opacus" else None)
    assert envcheck.main([]) == 0
    out, err = capsys.readouterr()
    assert err == f"warning: {broken}; its methods are skipped\n"
    assert out.splitlines()[-1].startswith("BackPACK ") and out.splitlines()[-1].endswith(" imports")
