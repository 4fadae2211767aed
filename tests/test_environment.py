"""environment.yml (conda users) and pyproject.toml (pip) ask for the same packages."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_agrees_with_pyproject() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = set(project["dependencies"]) | set(project["optional-dependencies"]["dev"])
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    listed = {r for r in pip_section if not r.startswith("-e")}
    assert listed == wanted, f"only in environment.yml: {listed - wanted}; only in pyproject: {wanted - listed}"
    assert "python=3.11" in env["dependencies"]
    assert "-e ." in pip_section


def test_installed_versions_meet_the_declared_bounds() -> None:
    """The suite runs on what pyproject.toml declares: no bound above what is installed here."""
    from importlib.metadata import version

    from packaging.requirements import Requirement

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requirements = [Requirement(r) for r in [*project["dependencies"], *project["optional-dependencies"]["dev"]]]
    unmet = {str(r): version(r.name) for r in requirements if not r.specifier.contains(version(r.name), prereleases=True)}
    assert not unmet, f"declared vs installed: {unmet}"


def test_torch_is_pinned_exactly() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    torch = [r for r in project["dependencies"] if _name(r) == "torch"]
    assert torch == ["torch==2.13.0"], "a ranged torch resolves to a multi-GB CUDA build"
