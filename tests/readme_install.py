"""Run a command of the package as the README's demo install would have it: only the
distributions ``pip install -e '.[<the README's extras>]'`` brings can be imported.

:func:`readme_demo_extras` reads the extras from the README's demo command,
:func:`installed_by` resolves what ``pyproject.toml``'s dependencies and those extras
install (their own requirements followed through the installed metadata), and
:func:`as_installed_by` is the ``python`` command line of a child that sees only those
distributions (the test environment has every extra; the child sees what a user who
followed the README has).
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - pytest brings tomli before 3.11
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "lwa-middleware"


def readme_demo_extras() -> frozenset[str]:
    """The extras of the README's demo command (``pip install -e '.[emulator]' && ...
    lwa-middleware demo``)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    lines = [line for line in readme.splitlines() if "lwa-middleware demo" in line]
    found = [re.search(r"install[^&]*\.\[([a-z0-9_,-]+)\]", line) for line in lines]
    extras = [match.group(1) for match in found if match]
    assert len(extras) == 1, f"the README's demo command is not one pip install: {lines}"
    return frozenset(extras[0].split(","))


def _pyproject() -> dict[str, object]:
    with (ROOT / "pyproject.toml").open("rb") as file:
        project: dict[str, object] = tomllib.load(file)["project"]
    return project


def installed_by(extras: frozenset[str]) -> frozenset[str]:
    """The distributions (canonical names) that installing the project with ``extras``
    brings: ``pyproject.toml``'s requirements, then theirs, from the installed metadata."""
    project = _pyproject()
    optional: dict[str, list[str]] = project["optional-dependencies"]  # type: ignore[assignment]
    wanted: list[Requirement] = []
    seen_extras: set[str] = set()
    pending = [*extras]
    wanted += [Requirement(text) for text in project["dependencies"]]  # type: ignore[attr-defined]
    while pending:
        extra = pending.pop()
        if extra in seen_extras:
            continue
        seen_extras.add(extra)
        for text in optional[extra]:
            requirement = Requirement(text)
            if canonicalize_name(requirement.name) == PROJECT:
                pending += requirement.extras
            else:
                wanted.append(requirement)
    found = {PROJECT}
    while wanted:
        requirement = wanted.pop()
        name = canonicalize_name(requirement.name)
        if name in found:
            continue
        found.add(name)
        try:
            nested = [Requirement(text) for text in importlib.metadata.requires(name) or []]
        except importlib.metadata.PackageNotFoundError:
            continue  # not installed here: the child cannot import it either
        environments = [{"extra": extra} for extra in requirement.extras] or [{"extra": ""}]
        wanted += [
            each
            for each in nested
            if each.marker is None or any(each.marker.evaluate(env) for env in environments)
        ]
    return frozenset(found)


def site_of(extras: frozenset[str], where: Path) -> Path:
    """A ``site-packages`` at ``where`` holding only what installing the project with
    ``extras`` brings: links to those distributions' top-level files (modules, packages,
    ``.dist-info``) in this environment."""
    where.mkdir(parents=True, exist_ok=True)
    for name in installed_by(extras) - {PROJECT}:
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        tops = {Path(str(file)).parts[0] for file in dist.files or ()}
        for top in tops - {"..", "__pycache__"}:
            source = Path(str(dist.locate_file(top)))
            if source.exists() and not (where / top).exists():
                (where / top).symlink_to(source)
    return where


def as_installed_by(
    extras: frozenset[str], where: Path, module: str, *args: str
) -> tuple[list[str], dict[str, str]]:
    """``python -m module args`` and its environment, seeing only the standard library,
    this package's sources and what an install with ``extras`` brings (``-S``: not this
    environment's site-packages)."""
    site = site_of(extras, where)
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{site}"}
    return [sys.executable, "-S", "-m", module, *args], env
