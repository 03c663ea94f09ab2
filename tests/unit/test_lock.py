"""The lock files (`requirements.lock`, `requirements-dev.lock`) satisfy pyproject.toml, pin
every file by its hash, name no package index, and are what `.venv` has installed.

`./dev lock --check` runs these; `./dev lock` refreshes the files after a change to the
dependencies. Nothing here needs the network.
"""

from __future__ import annotations

import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
LOCKS = {"application": ROOT / "requirements.lock", "development": ROOT / "requirements-dev.lock"}
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)")


def pins(path: Path) -> dict[str, tuple[str, int]]:
    """Each locked package: (version, how many hashes)."""
    found: dict[str, tuple[str, int]] = {}
    current = None
    for line in path.read_text().splitlines():
        if match := PIN.match(line):
            current = canonicalize_name(match[1])
            found[current] = (match[2], 0)
        elif current is not None and line.strip().startswith("--hash=sha256:"):
            version, hashes = found[current]
            found[current] = (version, hashes + 1)
        elif line and not line.startswith((" ", "#")):
            current = None
    return found


def wanted(*, dev: bool) -> list[Requirement]:
    """pyproject.toml's requirements that apply here (markers evaluated), with the build's."""
    listed = [*PYPROJECT["project"]["dependencies"], *PYPROJECT["build-system"]["requires"]]
    if dev:
        listed += PYPROJECT["project"]["optional-dependencies"]["dev"]
    # Marker.evaluate() evaluates in this process's environment (default_environment()),
    # with no extra
    return [
        requirement
        for requirement in map(Requirement, listed)
        if requirement.marker is None or requirement.marker.evaluate()
    ]


@pytest.mark.parametrize(("lock", "dev"), [("application", False), ("development", True)])
def test_the_lock_satisfies_every_requirement_of_pyproject(lock: str, dev: bool) -> None:
    locked = pins(LOCKS[lock])

    unmet = [
        str(requirement)
        for requirement in wanted(dev=dev)
        if (name := canonicalize_name(requirement.name)) not in locked
        or not requirement.specifier.contains(locked[name][0], prereleases=True)
    ]

    assert unmet == [], f"{LOCKS[lock].name} does not satisfy these: run ./dev lock"


@pytest.mark.parametrize("lock", LOCKS)
def test_every_locked_file_is_pinned_by_hash_and_no_index_is_named(lock: str) -> None:
    text = LOCKS[lock].read_text()
    locked = pins(LOCKS[lock])

    assert locked
    assert [name for name, (_, hashes) in locked.items() if hashes == 0] == []
    assert "://" not in text
    options = [line for line in text.splitlines() if line.startswith("-")]
    assert options == []


def test_both_locks_pin_the_same_versions() -> None:
    application, development = pins(LOCKS["application"]), pins(LOCKS["development"])

    assert set(application) <= set(development)
    assert {n: v for n, (v, _) in application.items()} == {
        n: development[n][0] for n in application
    }


def test_the_development_lock_holds_every_dependency_of_what_it_locks() -> None:
    """Complete: each locked package's own requirements are locked too (as `.venv`, which
    `./dev setup` installed from it, describes them)."""
    locked = pins(LOCKS["development"])
    missing = set()
    for name in locked:
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue  # not installed here (a build-only package, say): checked below
        for text in requires:
            requirement = Requirement(text)
            # in this process's environment, with no extra (as Marker.evaluate() has it)
            applies = requirement.marker is None or requirement.marker.evaluate()
            if applies and canonicalize_name(requirement.name) not in locked:
                missing.add(f"{requirement.name} (for {name})")

    assert sorted(missing) == []


def test_the_virtual_environment_has_what_the_development_lock_pins() -> None:
    if not sys.prefix.endswith(".venv"):
        pytest.skip(f"not run from ./dev's .venv ({sys.prefix})")
    locked = pins(LOCKS["development"])
    build_only = {"setuptools", "wheel", "pip"}

    differing = {
        name: (version, installed)
        for name, (version, _) in locked.items()
        if name not in build_only and (installed := _installed(name)) != version
    }

    assert differing == {}, "run ./dev setup (or ./dev lock, if pyproject.toml changed)"


def _installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
