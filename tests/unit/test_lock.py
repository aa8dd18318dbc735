"""requirements.lock, the image's pinned dependencies, matches pyproject.toml.

``make lock`` writes it (pip-compile, with hashes, for the image's Python); the Dockerfile
installs exactly it. This check needs no network: every dependency of the project (and of the
``flower`` extra, which the image carries) is pinned at a version its range accepts, nothing
pinned for the project is a dependency it no longer has, and every pin has hashes.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements.lock"
_PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^\s\\]+)")


def declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = project["dependencies"] + project["optional-dependencies"]["flower"]
    return [Requirement(line) for line in lines]


def entries() -> list[list[str]]:
    """The lock's entries: each pin line with its continuation and comment lines."""
    found: list[list[str]] = []
    for line in LOCK.read_text().splitlines():
        if _PIN.match(line):
            found.append([line])
        elif found and line.startswith(" "):
            found[-1].append(line)
    return found


def pins() -> dict[str, Version]:
    return {
        canonicalize_name(m.group(1)): Version(m.group(2))
        for entry in entries()
        if (m := _PIN.match(entry[0]))
    }


def test_every_declared_dependency_is_pinned_within_its_range() -> None:
    locked = pins()
    for requirement in declared():
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{name} is not in requirements.lock: run `make lock`"
        assert requirement.specifier.contains(locked[name], prereleases=True), (
            f"requirements.lock pins {name}=={locked[name]}, outside {requirement}: run `make lock`"
        )


def test_nothing_is_pinned_for_a_dependency_the_project_dropped() -> None:
    names = {canonicalize_name(r.name) for r in declared()}
    for entry in entries():
        name = canonicalize_name(_PIN.match(entry[0]).group(1))  # type: ignore[union-attr]
        if any("via imagegen-queue (pyproject.toml)" in line for line in entry):
            assert name in names, f"{name} is no longer a dependency: run `make lock`"


def test_every_pin_has_hashes_and_the_lock_includes_the_flower_extra() -> None:
    assert all(any("--hash=sha256:" in line for line in entry) for entry in entries())
    assert "--extra=flower" in LOCK.read_text()
