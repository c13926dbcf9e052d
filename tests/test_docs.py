"""The documentation speaks to users: no words about how the project was staged or built."""

from __future__ import annotations

import re

import pytest

from .fakes import REPO

PAGES = sorted([REPO / "README.md", *(REPO / "docs").glob("*.md"), REPO / "benchmarks" / "README.md",
                *(REPO / "benchmarks").glob("*.sh")])
#: phrases that describe the making of the software, not the software
STAGING = [r"we aimed", r"to be measured", r"\bbudget\b", r"\.carry\b", r"\$OUT\b", r"before this work",
           r"History:", r"\(3\.11 here\)", r"what \.ci/run does", r"no network here", r"still empty",
           r"64 MiB", r"\bissue #?\d+"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_pages_say_nothing_about_how_the_project_was_made(page):
    text = page.read_text(encoding="utf-8")
    found = [m.group(0) for pattern in STAGING for m in re.finditer(pattern, text, re.IGNORECASE)]
    assert not found, f"{page.relative_to(REPO)}: {found}"


def test_real_data_commands_do_not_point_at_the_projects_test_data():
    """Users have no ../shared: the README's commands use data/lfw (facetransfer data download lfw)."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    commands = [line for line in readme.splitlines() if line.startswith(("facetransfer", "make", "  data ="))]
    assert commands and not [line for line in commands if "../shared" in line]
