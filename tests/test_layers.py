"""The import graph follows DESIGN.md's data path: imports point down, never up or sideways.

models ← inference ← planning ← agents; models ← envs (environments and agents never import each
other); diagnostics may use models, inference and agents; experiments joins agents, envs and
diagnostics; cli on top. Builders of shipped data (``structbandits.tools``) sit outside the library
layers: only the CLI imports them. Every ``import`` statement counts, a lazy one inside a function
too. Oracle: the source files' syntax trees (``ast``), not the package's own code.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "structbandits"
TOP = {"agents", "envs", "experiments", "diagnostics", "study", "cli", "tools"}
FORBIDDEN = {
    "models": TOP | {"inference", "planning", "structure", "data"},
    "inference": TOP | {"planning"},
    "planning": TOP,
    "envs": TOP - {"envs"},
    "agents": {"experiments", "study", "cli", "tools", "envs", "diagnostics"},
    "diagnostics": {"experiments", "study", "cli", "tools", "envs"},
    "data": TOP | {"structure", "models", "inference", "planning"},
    "structure": TOP,
    "experiments": {"study", "cli", "tools"},
    "study": {"experiments", "cli", "tools", "envs"},
}


def _imported_layers(path: Path) -> list[tuple[str, int]]:
    """(first sub-package of structbandits, line) of every import of structbandits.* in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names
                                     if node.module == "structbandits"]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "structbandits" and len(parts) > 1:
                found.append((parts[1], node.lineno))
    return found


def _violations(layer: str) -> list[str]:
    forbidden = FORBIDDEN[layer]
    return [f"{path.relative_to(PACKAGE.parent)}:{line} imports structbandits.{target}"
            for path in sorted((PACKAGE / layer).rglob("*.py"))
            for target, line in _imported_layers(path) if target in forbidden]


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_point_down(layer):
    assert (PACKAGE / layer).is_dir()
    assert _violations(layer) == []


def test_only_the_cli_imports_the_tools():
    importers = sorted(str(path.relative_to(PACKAGE.parent)) for path in PACKAGE.rglob("*.py")
                       if path.parent.name != "tools" and any(t == "tools" for t, _ in _imported_layers(path)))
    assert importers == ["structbandits/cli.py"]


def test_the_checker_sees_lazy_and_aliased_imports(tmp_path):
    source = tmp_path / "module.py"
    source.write_text("import structbandits.agents as a\n"
                      "from structbandits import diagnostics\n"
                      "def f():\n    from structbandits.experiments.runner import seed_keys\n")
    assert _imported_layers(source) == [("agents", 1), ("diagnostics", 2), ("experiments", 4)]
