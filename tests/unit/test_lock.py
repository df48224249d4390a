"""requirements/test.lock is in step with pyproject.toml and with what the tests run on.

scripts/test installs with the lock as constraints; a dependency added to
pyproject without re-locking (python3 scripts/lock) would go unpinned.
"""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements" / "test.lock"


def locked() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version.strip()
    return pins


def direct_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = project["dependencies"] + project["optional-dependencies"]["test"]
    return [
        requirement
        for requirement in map(Requirement, lines)
        if requirement.marker is None or requirement.marker.evaluate()
    ]


def test_every_direct_dependency_is_locked_within_its_range() -> None:
    pins = locked()
    for requirement in direct_requirements():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is not in requirements/test.lock: run python3 scripts/lock"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"requirements/test.lock has {name}=={pins[name]}, outside pyproject's {requirement}"
        )


def test_the_tests_run_on_the_locked_versions() -> None:
    differing = {
        name: (version, importlib.metadata.version(name))
        for name, version in locked().items()
        if importlib.metadata.version(name) != version
    }
    assert not differing, f"installed versions differ from the lock (locked, installed): {differing}"
