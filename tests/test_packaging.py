"""Packaging: the license file matches pyproject, the package is typed, the version lives in one place."""

import importlib.metadata
import re
import tomllib
from pathlib import Path

import structbandits

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_license_file_matches_pyproject():
    project = PYPROJECT["project"]
    assert project["license"] == "MIT"
    assert project["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")


def test_the_package_ships_py_typed():
    assert (ROOT / "structbandits" / "py.typed").is_file()
    assert "py.typed" in PYPROJECT["tool"]["setuptools"]["package-data"]["structbandits"]


def test_the_version_is_written_once():
    assert "version" not in PYPROJECT["project"] and "version" in PYPROJECT["project"]["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "structbandits.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+([a-z0-9.+-]*)", structbandits.__version__)
    assert importlib.metadata.version("structbandits") == structbandits.__version__
    literal = re.compile(r"""['"]%s['"]""" % re.escape(structbandits.__version__))
    others = [path for path in [*ROOT.glob("structbandits/**/*.py"), ROOT / "pyproject.toml"]
              if path.name != "__init__.py" and literal.search(path.read_text())]
    assert others == []
