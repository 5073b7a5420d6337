"""The repository's copy of the design notes is kept in step with the project's DESIGN.md."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROJECT_DESIGN = REPO.parent / "shared" / "DESIGN.md"


def test_docs_design_is_the_projects_design_notes():
    if not PROJECT_DESIGN.is_file():
        pytest.skip(f"no project DESIGN.md at {PROJECT_DESIGN} to compare with (outside the project's checkout)")
    assert (REPO / "docs" / "design.md").read_text() == PROJECT_DESIGN.read_text(), (
        "docs/design.md differs from ../shared/DESIGN.md: copy it over"
    )


def test_the_readme_links_only_to_files_that_exist():
    readme = (REPO / "README.md").read_text()
    links = re.findall(r"\]\(([^)#]+)\)", readme)
    missing = [link for link in links if "://" not in link and not (REPO / link).exists()]
    assert links and not missing, f"README links to missing files: {missing}"
