"""Guard against a broken torch/torchvision pair before anything runs.

torchvision's wheels pin one torch release and import only with the registry's regular build
of it: with the CPU-only ``torch==2.13.0+cpu`` wheel, ``import torchvision`` fails with
"operator torchvision::nms does not exist" although the versions match. Such an environment
must stop the run with a message naming the pair, not fail or pass in some confusing way.
With ``--constraints FILE`` the pair must also be the one FILE pins: an installer that ignores
the constraints (uv reads ``UV_CONSTRAINT``, not ``PIP_CONSTRAINT``) would otherwise test the
newest torch under an environment named for an old one.

Opacus and BackPACK are different: a release that does not import with the installed torch
(Opacus 1.5.4 with torch 2.0.1 fails on ``nn.RMSNorm``) stops nothing. ``check-env`` names the
pair and the import error on one line, and that library's methods are skipped with the same
line while the rest of the suite runs (:mod:`harness.core.releases`).

    python -m harness check-env [--constraints constraints/torch-2.6.txt]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib import metadata

from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import Version

from harness.core.releases import LIBRARIES, import_problem, installed_version


class BrokenEnvironment(Exception):
    """The installed torch and torchvision do not work together."""


def _pinned_torch() -> Requirement | None:
    for text in metadata.requires("torchvision") or ():
        req = Requirement(text)
        if req.name == "torch" and req.marker is None:
            return req
    return None


def check_torch_pair() -> str:
    """Return ``"torch X with torchvision Y"`` if they import together; raise :class:`BrokenEnvironment` if not."""
    try:
        torch_version = metadata.version("torch")
        vision_version = metadata.version("torchvision")
    except metadata.PackageNotFoundError as exc:
        raise BrokenEnvironment(f"{exc.name} is not installed; install the project with a constraints file") from None
    pair = f"torch {torch_version} with torchvision {vision_version}"
    pinned = _pinned_torch()
    if pinned is not None and Version(torch_version) not in pinned.specifier:
        raise BrokenEnvironment(
            f"{pair}: torchvision {vision_version} requires torch{pinned.specifier}; "
            "install a matching pair (constraints/torch-*.txt)"
        )
    try:
        import torchvision  # noqa: F401
    except Exception as exc:  # a mismatched build fails in operator registration, not with ImportError alone
        raise BrokenEnvironment(
            f"{pair} do not import together ({type(exc).__name__}: {exc}). torchvision has no CPU build: "
            "it needs the registry's regular torch of its version, not the +cpu wheel "
            "(install with -c constraints/torch-*.txt)"
        ) from None
    return pair


def library_lines() -> list[tuple[bool, str]]:
    """Per method library (Opacus, BackPACK): whether it imports, and the line that says so or why not."""
    lines = []
    for name in ("opacus", "backpack"):
        problem = import_problem(name)
        if problem is None:
            lines.append((True, f"{LIBRARIES[name][1]} {installed_version(name)} imports"))
        else:
            lines.append((False, f"{problem}; its methods are skipped"))
    return lines


def check_constraints(path: str, pair: str) -> None:
    """Raise :class:`BrokenEnvironment` if an installed package is not the version the constraints file pins."""
    try:
        with open(path) as file:
            lines = [line.split("#", 1)[0].strip() for line in file]
    except OSError as exc:
        raise BrokenEnvironment(f"{path}: cannot be read ({exc.strerror})") from None
    requirements = []
    for line in lines:
        if not line or line.startswith("-"):  # blank, or an option such as -c other.txt
            continue
        try:
            requirements.append(Requirement(line))
        except InvalidRequirement as exc:
            raise BrokenEnvironment(f"{path}: {line!r} is not a requirement ({str(exc).splitlines()[0]})") from None
    for req in requirements:
        try:
            installed = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            continue  # a constraint limits what is installed; it installs nothing
        if not req.specifier.contains(Version(installed), prereleases=True):
            raise BrokenEnvironment(
                f"{pair}: {path} pins {req}, but {req.name} {installed} is installed; "
                "the installer did not apply the constraints (pip reads PIP_CONSTRAINT, uv UV_CONSTRAINT)"
            )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m harness check-env``: 0 and the pair if it works, 2 and why if not; then a line
    per method library (a warning, still 0, where one does not import)."""
    parser = argparse.ArgumentParser(prog="python -m harness check-env", description="Check the torch/torchvision pair.")
    parser.add_argument("--constraints", metavar="FILE", help="also require the versions this constraints file pins")
    args = parser.parse_args(argv)
    try:
        pair = check_torch_pair()
        if args.constraints:
            check_constraints(args.constraints, pair)
        print(pair, "import together")
        for imports, line in library_lines():
            print(line if imports else f"warning: {line}", file=sys.stdout if imports else sys.stderr)
    except BrokenEnvironment as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
