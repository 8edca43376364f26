"""PEP 562 hooks for a package whose public names live in its submodules and are imported on first use.

    __getattr__, __dir__ = lazy_exports(__name__, {"run_sweep": "sweep", ...})

Importing such a package imports none of its submodules (``structbandits list`` reads the built-in
configs without loading JAX; a study's worker process does not pay for pandas and SciPy). A name is
imported from ``<package>.<submodule>`` the first time it is asked for and then bound on the package,
so later lookups are plain attribute reads.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The package's ``__getattr__`` and ``__dir__``: ``exports`` maps each public name to the submodule
    (relative to ``package``) that defines it."""
    module = sys.modules[package]

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        setattr(module, name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(module)) | set(exports))

    return __getattr__, __dir__
