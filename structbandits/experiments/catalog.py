"""The built-in experiment configs and sweeps shipped with the package (``experiments/configs``,
``experiments/sweeps``), found without importing JAX, so ``structbandits list`` answers at once."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["builtin_configs", "builtin_sweeps"]


def _shipped_tomls(folder: str) -> dict[str, Path]:
    """name -> path of every ``*.toml`` in the package folder ``experiments/<folder>``."""
    root = resources.files("structbandits.experiments") / folder
    return {Path(entry.name).stem: Path(str(entry)) for entry in root.iterdir() if entry.name.endswith(".toml")}


def builtin_configs() -> dict[str, Path]:
    """Built-in configs shipped with the package: name -> path."""
    return _shipped_tomls("configs")


def builtin_sweeps() -> dict[str, Path]:
    """Built-in sweep configs shipped with the package: name -> path."""
    return _shipped_tomls("sweeps")
