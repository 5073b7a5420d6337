"""The README is a short manual: at most 300 lines, a table of contents that matches its headings,
and links to files and headings that exist."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()
MAX_LINES = 300


def anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {anchor(h) for h in re.findall(r"^#{1,6} (.+)$", path.read_text(), flags=re.M)}


def test_the_readme_is_a_short_manual_with_a_table_of_contents():
    assert README.count("\n") <= MAX_LINES, f"README.md has {README.count(chr(10))} lines; move reference material to docs/"
    contents = re.search(r"^## Contents\n\n((?:- .+\n)+)", README, flags=re.M)
    assert contents, "README.md has no '## Contents' list"
    listed = re.findall(r"\]\(#([^)]+)\)", contents.group(1))
    sections = [anchor(h) for h in re.findall(r"^## (.+)$", README, flags=re.M) if h != "Contents"]
    assert listed == sections, f"the table of contents {listed} is not the README's sections {sections}"


def test_the_readme_links_only_to_files_and_headings_that_exist():
    links = re.findall(r"\]\(([^)]+)\)", README)
    missing = []
    for link in links:
        if "://" in link:
            continue
        path, _, fragment = link.partition("#")
        target = REPO / path if path else REPO / "README.md"
        if not target.exists() or (fragment and target.suffix == ".md" and fragment not in anchors(target)):
            missing.append(link)
    assert links and not missing, f"README links to missing files or headings: {missing}"


def test_the_readmes_two_commands_are_what_ci_runs():
    first = re.search(r"```bash\n(.+?)```", README, flags=re.S).group(1).strip().splitlines()
    ci = (REPO / ".ci" / "run").read_text()
    assert first == ["python -m pip install -e . -c constraints/torch-2.14.txt", "python -m pytest"], first
    assert all(command in ci for command in first), "the README's two commands are not .ci/run's"


def test_no_file_named_venv_is_tracked():
    """``python -m venv .venv`` must work in a fresh clone (a tracked .venv file made it fail)."""
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    tracked = subprocess.run(["git", "ls-files", ".venv"], cwd=REPO, capture_output=True, text=True).stdout
    assert not tracked.strip(), f"the repository tracks {tracked.strip()}"
    ignored = subprocess.run(["git", "check-ignore", "-q", ".venv"], cwd=REPO)
    assert ignored.returncode == 0, ".venv is not ignored"
