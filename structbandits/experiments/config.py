"""Experiment configs: TOML files, ``--set key=value`` overrides, validation and resolution.

A config declares the run and the components by kind::

    name = "demo"
    description = "LinTS against uniform random on a 10-arm linear bandit"
    horizon = 500          # rounds per simulation
    seeds = 20             # independent simulations per agent and environment
    seed = 0               # root seed; simulation i uses fold_in(PRNGKey(seed), i)

    [envs.linear]          # table name = environment name; kind defaults to it
    num_actions = 10
    noise_scale = 0.5

    [agents.lints]         # table name = agent name; kind defaults to it
    sigma0 = 1.0
    noise_scale = 0.5

    [agents.random]

Every key is checked against the builder of its kind (``experiments.registry``); errors name the
full key (``agents.lints.sigma0``) and raise ``ValidationError``.
"""

from __future__ import annotations

import inspect
import json
import os
import tomllib
import typing
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from structbandits.experiments.catalog import builtin_configs  # noqa: F401  (re-exported)
from structbandits.errors import MAX_ELEMENTS, ValidationError, check_integer, check_num_elements
from structbandits.experiments.registry import AGENTS, ENVIRONMENTS, EnvironmentMismatch

__all__ = [
    "RUN_KEYS",
    "ComponentSpec",
    "ExperimentConfig",
    "apply_overrides",
    "build_components",
    "builtin_configs",
    "is_builtin_name",
    "load_config",
    "parse_override_value",
    "resolve_config",
]

# The top-level keys of a config (besides the envs and agents tables) and their types.
RUN_KEYS = {"name": str, "description": str, "horizon": int, "seeds": int, "seed": int, "seed_batch": int}
_REQUIRED_RUN_KEYS = ("horizon", "seeds")


@dataclass(frozen=True)
class ComponentSpec:
    """An environment or agent: its registered ``kind`` and its validated keyword arguments."""

    kind: str
    params: dict[str, Any]


@dataclass(frozen=True)
class ExperimentConfig:
    """A resolved, validated experiment (defaults filled in)."""

    name: str
    description: str
    horizon: int
    seeds: int
    seed: int
    seed_batch: int
    envs: dict[str, ComponentSpec]
    agents: dict[str, ComponentSpec]

    def to_dict(self) -> dict[str, Any]:
        """The config as plain data, in the TOML layout (with ``kind`` in each table)."""
        tables = {
            group: {name: {"kind": spec.kind, **spec.params} for name, spec in getattr(self, group).items()}
            for group in ("envs", "agents")
        }
        run = {key: getattr(self, key) for key in RUN_KEYS}
        return {**run, **tables}




def is_builtin_name(name_or_path: str | Path) -> bool:
    """Whether ``name_or_path`` is a name rather than a path: a string without a path separator or a
    suffix (``demo``, ``mets-linear``). Names are looked up among the built-ins only, so a file or
    folder called ``demo`` in the working directory never hides the built-in ``demo``; a file there is
    reached as ``./demo`` or by its suffix (``demo.toml``). A ``Path`` object is always a path."""
    if not isinstance(name_or_path, str):
        return False
    separators = {"/", os.sep, os.altsep} - {None}
    return not any(sep in name_or_path for sep in separators) and not Path(name_or_path).suffix


def _unknown_config(name_or_path: str | Path, builtins: Mapping[str, Path]) -> ValidationError:
    text = str(name_or_path)
    hint = ""
    if is_builtin_name(name_or_path) and Path(text).is_file():
        hint = f" (a name is a built-in; for the file in this folder write ./{text})"
    elif Path(text).is_dir():
        saved = Path(text) / "config.json"
        hint = f" (a folder; its saved config is {saved})" if saved.is_file() else " (a folder)"
    return ValidationError(f"config: expected a TOML file or a built-in name ({', '.join(sorted(builtins))}), "
                           f"got {text!r}{hint}")


def load_config(name_or_path: str | Path) -> dict[str, Any]:
    """Read a built-in config by name, a TOML file by path, or the ``config.json`` of a results folder
    (whose resolved config and seed reproduce that run), as a raw dict (not yet validated).

    A string without a path separator or suffix is a built-in name (``is_builtin_name``); anything
    else is a path to an existing file."""
    builtins = builtin_configs()
    if is_builtin_name(name_or_path):
        if name_or_path not in builtins:
            raise _unknown_config(name_or_path, builtins)
        path = builtins[name_or_path]
    else:
        path = Path(name_or_path)
        if not path.exists() or path.is_dir():
            raise _unknown_config(name_or_path, builtins)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ValidationError(f"config: expected a readable UTF-8 text file, got {str(path)!r} ({err})") from None
    if path.suffix == ".json":
        try:
            record = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValidationError(f"config: {path} is not valid JSON: {err}") from None
        config = record.get("config", record) if isinstance(record, dict) else record
        if not isinstance(config, dict):
            raise ValidationError(f"config: expected a JSON object (or a results config.json), got {type(config).__name__}")
        return config
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ValidationError(f"config: {path} is not valid TOML: {err}") from None


def parse_override_value(text: str) -> Any:
    """A ``--set``/``--grid`` value: a TOML literal (``0.5``, ``[1, 2]``, ``"a"``), else the bare word as a string."""
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text  # a bare word is a string: --set envs.linear.kind=linear


def apply_overrides(raw: Mapping[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides to a raw config; values are TOML literals or bare strings."""
    config = _deep_copy(raw)
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValidationError(f"--set: expected KEY=VALUE (for example horizon=200), got {item!r}")
        *parents, leaf = key.split(".")
        table = config
        for depth, part in enumerate(parents):
            node = table.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValidationError(f"--set {key}: {'.'.join(parents[:depth + 1])} is a value, not a table")
            table = node
        table[leaf] = parse_override_value(text.strip())
    return config


def _deep_copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _deep_copy(v) for k, v in value.items()}
    return value


def _coerce(key: str, value: Any, annotation: Any) -> Any:
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if annotation in (int, float, str, bool) and (type(value) is not annotation):
        names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
        raise ValidationError(f"{key}: expected {names[annotation]}, got {value!r}")
    return value


def _resolve_component(group: str, name: str, table: Any, registry: Mapping[str, Callable]) -> ComponentSpec:
    path = f"{group}.{name}"
    if not isinstance(table, Mapping):
        raise ValidationError(f"{path}: expected a table of settings, got {table!r}")
    kind = table.get("kind", name)
    if not isinstance(kind, str) or kind not in registry:
        raise ValidationError(f"{path}.kind: expected one of {', '.join(sorted(registry))}, got {kind!r}")
    builder = registry[kind]
    hints = typing.get_type_hints(builder)
    parameters = [p for p in inspect.signature(builder).parameters.values() if p.default is not inspect.Parameter.empty]
    allowed = {p.name: p.default for p in parameters}
    unknown = sorted(set(table) - set(allowed) - {"kind"})
    if unknown:
        expected = ", ".join(sorted(allowed)) or "no settings"
        raise ValidationError(f"{path}.{unknown[0]}: unknown key for kind {kind!r}; expected one of: {expected}")
    params = {key: _coerce(f"{path}.{key}", table.get(key, default), hints.get(key)) for key, default in allowed.items()}
    return ComponentSpec(kind, params)


def resolve_config(raw: Mapping[str, Any]) -> ExperimentConfig:
    """Validate a raw config dict and fill in defaults."""
    unknown = sorted(set(raw) - set(RUN_KEYS) - {"envs", "agents"})
    if unknown:
        raise ValidationError(
            f"{unknown[0]}: unknown top-level key; expected one of: {', '.join(sorted([*RUN_KEYS, 'envs', 'agents']))}"
        )
    for key in _REQUIRED_RUN_KEYS:
        if key not in raw:
            raise ValidationError(f"{key}: required, missing from the config")
    run = {key: _coerce(key, raw[key], kind) for key, kind in RUN_KEYS.items() if key in raw}
    horizon = check_integer("horizon", run["horizon"], minimum=1)
    seeds = check_integer("seeds", run["seeds"], minimum=1)
    seed = check_integer("seed", run.get("seed", 0), minimum=0, maximum=2**63 - 1)  # a jax.random.PRNGKey seed
    seed_batch = check_integer("seed_batch", run.get("seed_batch", min(seeds, 50)), minimum=1)
    check_num_elements("horizon, seeds", (horizon, seeds), limit=10 * MAX_ELEMENTS)
    groups = {}
    for group, registry in (("envs", ENVIRONMENTS), ("agents", AGENTS)):
        tables = raw.get(group)
        if not isinstance(tables, Mapping) or not tables:
            raise ValidationError(f"{group}: expected at least one [{group}.NAME] table, got {tables!r}")
        if "" in tables:
            raise ValidationError(f"{group}: expected non-empty table names ([{group}.NAME]), got an empty name")
        groups[group] = {name: _resolve_component(group, name, table, registry) for name, table in tables.items()}
    for name, spec in groups["envs"].items():
        late = [r for r in spec.params.get("change_rounds", ()) if isinstance(r, int) and r > horizon]
        if late:
            warnings.warn(f"envs.{name}.change_rounds: {late} come after the horizon ({horizon} rounds), so those "
                          "changes never happen in this run", UserWarning, stacklevel=2)
    return ExperimentConfig(
        name=run.get("name", "experiment"),
        description=run.get("description", ""),
        horizon=horizon,
        seeds=seeds,
        seed=seed,
        seed_batch=seed_batch,
        **groups,
    )


def _build(path: str, builder: Callable, *args: Any, **params: Any) -> Any:
    try:
        return builder(*args, **params)
    except ValidationError as err:
        # Builders name their own argument first ("noise_scale: ..."); prefix the table it came from.
        raise type(err)(f"{path}.{err}") from None


def build_components(config: ExperimentConfig) -> tuple[dict[str, Any], dict[str, Callable[[Any], Any]]]:
    """Build the environments and agent factories (environment -> Policy) of a resolved config.

    Every agent is built once against every environment here, so a bad value fails before any
    simulation starts.
    """
    envs = {name: _build(f"envs.{name}", ENVIRONMENTS[spec.kind], **spec.params) for name, spec in config.envs.items()}
    agents = {}
    for name, spec in config.agents.items():
        builder = AGENTS[spec.kind]
        run_params = {"horizon": config.horizon} if "horizon" in inspect.signature(builder).parameters else {}

        def factory(env, _path=f"agents.{name}", _builder=builder, _params={**spec.params, **run_params}):
            return _build(_path, _builder, env, **_params)

        for env_name, env in envs.items():
            try:
                factory(env)
            except EnvironmentMismatch as err:  # the agent's kind cannot run on this environment: name it
                raise ValidationError(f"{err} (env {env_name!r})") from None
        agents[name] = factory
    return envs, agents
