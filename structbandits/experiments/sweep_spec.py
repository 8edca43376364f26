"""A sweep's specification: the ``SweepSpec`` (base config, grid, checkpoints) and ``load_sweep``, which reads
a ``[sweep]`` table and ``--grid`` options and validates every cell's config (moved from
``experiments.sweep``, which re-exports the public names; running the cells is there).
"""

from __future__ import annotations

import itertools
import json
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from structbandits.errors import ValidationError, check_integer
from structbandits.experiments.catalog import builtin_sweeps
from structbandits.experiments.config import (
    RUN_KEYS,
    apply_overrides,
    is_builtin_name,
    load_config,
    parse_override_value,
    resolve_config,
)

__all__ = ["SweepSpec", "load_sweep"]

# Not the root seed: every cell uses it (common random numbers); more simulations come from `seeds`.
_SWEEPABLE_RUN_KEYS = sorted(set(RUN_KEYS) - {"name", "description", "seed"})


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep: the base raw config, the grid (key -> values, in order) and the checkpoints."""

    base: dict[str, Any]
    grid: dict[str, list[Any]]
    checkpoints: int = 20

    @property
    def keys(self) -> list[str]:
        return list(self.grid)

    def cells(self) -> list[tuple[Any, ...]]:
        """Every grid point, first key slowest."""
        return list(itertools.product(*self.grid.values()))

    def overrides(self, values: Sequence[Any]) -> list[str]:
        """The ``key=value`` overrides (TOML literals) that turn the base config into one cell's."""
        return [f"{key}={_toml_literal(value)}" for key, value in zip(self.grid, values)]

    def to_dict(self) -> dict[str, Any]:
        return {"base": self.base, "grid": self.grid, "checkpoints": self.checkpoints}



def _toml_literal(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    # `"agents.lints.sigma0" = [...]` is one quoted key; unquoted dotted keys arrive as nested tables.
    flat = {}
    for key, value in table.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _parse_grid_option(item: str) -> tuple[str, list[Any]]:
    key, sep, text = item.partition("=")
    if not sep or not key.strip() or not text.strip():
        raise ValidationError(f"--grid: expected KEY=V1,V2,... (for example agents.lints.sigma0=0.5,1,2), got {item!r}")
    return key.strip(), [parse_override_value(part.strip()) for part in text.split(",")]


def _check_grid_key(base: Mapping[str, Any], key: str, values: Any) -> list[Any]:
    parts = key.split(".")
    if len(parts) == 1:
        if key not in _SWEEPABLE_RUN_KEYS:
            raise ValidationError(f"{key}: not a sweepable key; expected one of {', '.join(_SWEEPABLE_RUN_KEYS)} "
                                  "or envs.NAME.KEY / agents.NAME.KEY")
    elif len(parts) == 3 and parts[0] in ("envs", "agents"):
        tables = base.get(parts[0]) or {}
        if parts[1] not in tables:
            raise ValidationError(f"{key}: the config has no [{parts[0]}.{parts[1]}] table; "
                                  f"its {parts[0]} are {', '.join(tables) or 'none'}")
    else:
        raise ValidationError(f"{key}: expected a run key ({', '.join(_SWEEPABLE_RUN_KEYS)}) "
                              "or envs.NAME.KEY / agents.NAME.KEY")
    if not isinstance(values, list) or not values:
        raise ValidationError(f"{key}: expected a non-empty list of values, got {values!r}")
    for value in values:
        if not isinstance(value, (bool, int, float, str)):
            raise ValidationError(f"{key}: expected numbers, strings or booleans as grid values, got {value!r}")
    return list(values)


def load_sweep(name_or_path: str | Path, overrides: Sequence[str] | None = None, grid: Sequence[str] | None = None,
               *, checkpoints: int = 20) -> SweepSpec:
    """Read a sweep: a built-in sweep name, or any config TOML with a ``[sweep]`` table and/or ``grid``.

    Parameters
    ----------
    name_or_path : a built-in sweep (``builtin_sweeps()``), a built-in config name, or a TOML file.
    overrides : ``key=value`` settings applied to the base config (as ``--set``).
    grid : ``key=v1,v2,...`` grid axes (as ``--grid``); they replace a ``[sweep]`` entry of the same key.
    checkpoints : how many evenly spaced rounds (ending at the horizon) to record per simulation.

    Every cell's config is validated here (unknown keys and bad values raise ``ValidationError``
    naming the key); the components themselves are built when the sweep runs.
    """
    for argument, value, example in (("overrides", overrides, "seeds=50"), ("grid", grid, "agents.lints.sigma0=0.5,1")):
        if isinstance(value, str):  # a string is a sequence too: it would be read character by character
            raise ValidationError(f"{argument}: expected a list of strings such as [{example!r}], got the string "
                                  f"{value!r}")
    sweeps = builtin_sweeps()
    if is_builtin_name(name_or_path) and name_or_path in sweeps:  # a name is a built-in, never a local file
        raw = tomllib.loads(sweeps[str(name_or_path)].read_text())
    else:
        try:
            raw = load_config(name_or_path)
        except ValidationError as err:
            if not is_builtin_name(name_or_path):
                raise
            raise ValidationError(f"{err}; or a built-in sweep ({', '.join(sorted(sweeps))})") from None
    table = raw.pop("sweep", {})
    if not isinstance(table, Mapping):
        raise ValidationError(f"sweep: expected a table of KEY = [values], got {table!r}")
    entries = _flatten(table)
    entries.update(dict(_parse_grid_option(item) for item in grid or []))
    if not entries:
        raise ValidationError("sweep: expected a [sweep] table in the config or --grid KEY=V1,V2, got neither")
    base = apply_overrides(raw, list(overrides or []))
    grid = {key: [_resolved_value(base, key, value) for value in _check_grid_key(base, key, values)]
            for key, values in entries.items()}
    for key, values in grid.items():
        if len({_toml_literal(value) for value in values}) != len(values):
            raise ValidationError(f"{key}: expected distinct grid values, got {entries[key]!r}")
    spec = SweepSpec(base, grid, check_integer("checkpoints", checkpoints, minimum=1))
    for values in spec.cells():
        resolve_config(apply_overrides(spec.base, spec.overrides(values)))
    return spec


def _resolved_value(base: Mapping[str, Any], key: str, value: Any) -> Any:
    """``value`` as the config resolves it (``sigma0 = 2`` is the float 2.0), so each axis has the key's type."""
    resolved: Any = resolve_config(apply_overrides(base, [f"{key}={_toml_literal(value)}"])).to_dict()
    for part in key.split("."):
        resolved = resolved[part]
    return resolved
