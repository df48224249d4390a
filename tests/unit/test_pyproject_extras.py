"""Every extra pyproject.toml asks of a dependency is one that dependency provides.

pip only warns ("does not provide the extra ...") and installs the package without
what the extra would have pulled in, so a misspelt extra shows up later as a missing
import. pip matches the spelling in the package's metadata; so does this test.
"""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def requirements_with_extras() -> list[Requirement]:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    lines = list(project.get("dependencies", []))
    for group in project.get("optional-dependencies", {}).values():
        lines.extend(group)
    return [req for req in map(Requirement, lines) if req.extras]


def test_pyproject_asks_for_extras_at_all() -> None:
    assert requirements_with_extras(), "nothing to check: the test below would pass vacuously"


@pytest.mark.parametrize("requirement", requirements_with_extras(), ids=str)
def test_every_requested_extra_exists(requirement: Requirement) -> None:
    try:
        provided = importlib.metadata.metadata(requirement.name).get_all("Provides-Extra") or []
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(f"{requirement.name} is not installed here")
    missing = sorted(requirement.extras - set(provided))
    assert not missing, f"{requirement.name} provides the extras {provided}, not {missing}"
