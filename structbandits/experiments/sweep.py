"""Sweeps: a grid over any config keys × environments × agents × seeds, persisted cell by cell.

A sweep is an experiment config plus a grid, from a ``[sweep]`` table in the TOML and/or ``--grid``::

    [sweep]
    "agents.lints.sigma0" = [0.3, 1.0, 3.0]
    "envs.linear.noise_scale" = [0.5, 1.0]

Each grid point (a *cell*) is the config with those keys set. Cells whose configs differ only in
the agents' value keys (``registry.VALUE_KEYS``: prior scales, noise scales, δ — numbers that enter
``Policy.params``) form a *program group*: every agent of the group is compiled once, and its
cells × seeds run as one vmapped batch (rounds scanned), each cell with its own params, in chunks of
at most ``max_cells_per_call`` cells sized to bound memory. Any other key (an environment setting, the
horizon, a structural agent option) starts a new group and so a new program. Each cell's metrics at
the round checkpoints are written as soon as its chunk finishes to ``cells/cell-NNNNN.parquet``
(atomically: a temporary file, then a rename). ``resume=True`` skips the cells already on disk, so a
killed sweep loses at most the cells in flight. Every cell uses
the config's root seed, so simulation i of every cell sees the same ground truth and noise draws
where the environment is unchanged (common random numbers across the grid), and a cell's results
do not depend on which other cells ran, where, or in what order.

When every cell is done the folder gets ``sweep.parquet`` (tidy: one row per grid point, env,
agent, seed and checkpoint round), ``sweep.nc`` (an xarray Dataset with one dimension per grid key
plus env, agent, seed and round, and the final-round metrics), ``sweep_summary.csv`` (mean and
standard error over seeds), one sensitivity plot per grid key, and ``report.html``.

Layout: ``SweepSpec`` and ``load_sweep`` (reading and validating the grid) are in
``experiments.sweep_spec`` and re-exported here; running the cells and writing the folder are here.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from tqdm import tqdm

from structbandits.errors import ValidationError, check_integer
from structbandits.experiments.config import apply_overrides, build_components, resolve_config
from structbandits.experiments.executors import check_executor, run_tasks
from structbandits.experiments.pipeline import check_output_dir
from structbandits.agents.protocol import stack_params
from structbandits.experiments.registry import VALUE_KEYS
from structbandits.experiments.results import library_versions
from structbandits.experiments.catalog import builtin_sweeps  # noqa: F401  (re-exported)
from structbandits.experiments.runner import _check_actions, _policy_for, _tidy, batched_simulator
from structbandits.seeding import seed_keys
from structbandits.experiments.sweep_outputs import METRICS, write_sweep_outputs
from structbandits.experiments.sweep_spec import SweepSpec, load_sweep  # re-exported
from structbandits.compiled_memory import release_compiled_programs
from structbandits.runtime import ensure_configured

__all__ = ["METRICS", "SweepResult", "SweepSpec", "builtin_sweeps", "checkpoint_metrics", "checkpoint_rounds",
           "load_sweep", "program_groups", "run_cells", "run_sweep", "validate_cells"]

MANIFEST = "sweep.json"
CELLS = "cells"


@dataclass(frozen=True)
class SweepResult:
    """A finished sweep: the tidy frame, the Dataset, the summary and the folder they are in."""

    frame: pd.DataFrame
    dataset: Any
    summary: pd.DataFrame
    folder: Path
    wall_s: float  # this call's
    cells_run: int = 0
    cells_resumed: int = 0
    plots: list[Path] = field(default_factory=list)
    total_wall_s: float = 0.0  # every call's on this folder, interrupted ones included (sweep.json's invocations)


def checkpoint_rounds(horizon: int, count: int) -> np.ndarray:
    """``count`` evenly spaced rounds in 1..horizon, the last one the horizon itself (fewer if horizon < count)."""
    return np.unique(np.ceil(np.linspace(horizon / count, horizon, count)).astype(int))


# Built components by their resolved spec, per process: cells that share an environment or an
# agent reuse the same objects, so JAX's compilation cache (keyed on them) is hit across cells.
_COMPONENTS: dict[tuple, Any] = {}


def _spec_key(*parts: Any) -> tuple:
    return tuple(json.dumps(part, sort_keys=True, default=str) for part in parts)


def _cell_components(config) -> tuple[dict[str, Any], dict[tuple[str, str], Any]]:
    envs, factories = build_components(config)  # validates every agent on every environment
    env_keys = {name: _spec_key(spec.kind, spec.params) for name, spec in config.envs.items()}
    envs = {name: _COMPONENTS.setdefault(("env", *env_keys[name]), env) for name, env in envs.items()}
    policies = {}
    for agent, spec in config.agents.items():
        for name, env in envs.items():
            key = ("agent", *_spec_key(spec.kind, spec.params, config.horizon), *env_keys[name])
            if key not in _COMPONENTS:
                _COMPONENTS[key] = factories[agent](env)
            policies[agent, name] = _COMPONENTS[key]
    return envs, policies


def checkpoint_metrics(results: pd.DataFrame, rounds: np.ndarray) -> pd.DataFrame:
    """The runner's per-round frame reduced to ``rounds``: cumulative expected and realised regret and
    the running mean reward, one row per (env, agent, seed, checkpoint round)."""
    grouped = results.groupby(["env", "agent", "seed"], sort=False)
    frame = results[["env", "agent", "seed", "round", "cumulative_regret"]].copy()
    frame["cumulative_realized_regret"] = grouped["realized_regret"].cumsum()
    frame["mean_reward"] = grouped["reward"].cumsum() / frame["round"]
    return frame[frame["round"].isin(rounds)].reset_index(drop=True)


# Bytes one call of a group's compiled program may hold for its per-simulation arrays (states and
# per-round records), which bounds how many cells × seeds are vmapped together.
CALL_BYTES = 1 << 29


def program_key(config) -> str:
    """The cell's resolved config without its agents' value keys: cells with the same key share programs."""
    record = config.to_dict()
    for name, spec in config.agents.items():
        for key in VALUE_KEYS.get(spec.kind, ()):
            record["agents"][name].pop(key, None)
    return json.dumps(record, sort_keys=True, default=str)


def program_groups(spec: SweepSpec, indices: Sequence[int]) -> list[list[int]]:
    """``indices`` of cells grouped by ``program_key``, in grid order (first key slowest)."""
    groups: dict[str, list[int]] = {}
    cells = spec.cells()
    for index in indices:
        config = resolve_config(apply_overrides(spec.base, spec.overrides(cells[index])))
        groups.setdefault(program_key(config), []).append(index)
    return list(groups.values())


def _bytes_per_simulation(config, envs, policies) -> int:
    """The largest per-simulation footprint over the cell's (env, agent) pairs: state, env state, records."""
    key = jax.random.PRNGKey(0)
    largest = 0
    for (agent, name), policy in policies.items():
        shapes = [jax.eval_shape(lambda k: policy.init(k), key), jax.eval_shape(envs[name].init, key)]
        state = sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(shapes))
        largest = max(largest, 4 * state + 8 * 8 * config.horizon)
    return largest


def max_cells_per_call(spec: SweepSpec, index: int) -> int:
    """How many cells of cell ``index``'s group one vmapped call may hold under ``CALL_BYTES`` (>= 1)."""
    config = resolve_config(apply_overrides(spec.base, spec.overrides(spec.cells()[index])))
    envs, policies = _cell_components(config)
    return max(1, CALL_BYTES // (config.seeds * _bytes_per_simulation(config, envs, policies)))


def run_cells(base: dict[str, Any], overrides: list[list[str]], checkpoints: int, pad_to: int = 0) -> list[pd.DataFrame]:
    """Run the cells ``overrides`` (one list of ``key=value`` per cell) of one program group in one vmapped
    call per (env, agent); their checkpoint metrics, one frame per cell.

    ``pad_to`` repeats the last cell up to that many cells (their results dropped), so the chunks of a
    group all have one shape and share one compiled program.
    """
    ensure_configured()
    configs = [resolve_config(apply_overrides(base, cell)) for cell in overrides]
    keys = {program_key(config) for config in configs}
    if len(keys) != 1:
        raise ValidationError("overrides: expected cells that differ only in value keys (one program group), "
                              f"got {len(keys)} groups")
    components = [_cell_components(config) for config in configs]
    padded = components + [components[-1]] * max(0, pad_to - len(components))
    first, group = configs[0], keys.pop()
    rounds = checkpoint_rounds(first.horizon, checkpoints)
    simulation_keys = seed_keys(first.seed, first.seeds)
    frames: list[list[pd.DataFrame]] = [[] for _ in configs]
    for name, env in components[0][0].items():
        for agent in first.agents:
            # One policy's functions per program group and process, whichever cells come first, so later
            # chunks and later sweeps of the same group reuse its compiled program.
            representative = _COMPONENTS.setdefault(("program", group, agent, name), components[0][1][agent, name])
            policy = _policy_for(agent, representative, name, env)
            cell_params = stack_params([policies[agent, name].params for _, policies in padded])
            params = jax.tree.map(lambda leaf: jnp.repeat(leaf, first.seeds, axis=0), cell_params)
            keys_all = jnp.tile(simulation_keys, (len(padded), 1))
            trajectory = batched_simulator(policy, env, first.horizon)(keys_all, params, params_batched=True)
            trajectory = jax.tree.map(lambda leaf: np.asarray(leaf).reshape(len(padded), first.seeds, -1), trajectory)
            for cell in range(len(configs)):
                records = jax.tree.map(lambda leaf: leaf[cell], trajectory)
                _check_actions(records.action, agent, name, env.num_actions)
                metrics = checkpoint_metrics(_tidy(records, name, agent, 0), rounds)
                frames[cell].append(_with_decisions(metrics, records, rounds, env.num_actions))
        release_compiled_programs()
    return [pd.concat(cell, ignore_index=True) for cell in frames]


def _with_decisions(metrics: pd.DataFrame, records, rounds: np.ndarray, num_actions: int) -> pd.DataFrame:
    """``metrics`` (one env and agent; rows seed-major, then checkpoint) with what the decisions were in
    each window (previous checkpoint, checkpoint]: ``window_propensity``, the mean logged probability of
    the chosen actions (NaN where the agent reports none), and ``action_counts``, how often each action
    0..K-1 was chosen (a list of K counts)."""
    actions, propensity = np.asarray(records.action), np.asarray(records.propensity, dtype=float)
    window = np.searchsorted(rounds, np.arange(1, actions.shape[1] + 1))  # round t -> its checkpoint window
    counts = np.zeros((actions.shape[0], len(rounds), num_actions), dtype=np.int64)
    np.add.at(counts, (np.arange(actions.shape[0])[:, None], window[None, :], actions), 1)
    reported = ~np.isnan(propensity)
    sums, numbers = np.zeros(counts.shape[:2]), np.zeros(counts.shape[:2])
    np.add.at(sums, (np.arange(actions.shape[0])[:, None], window[None, :]), np.where(reported, propensity, 0.0))
    np.add.at(numbers, (np.arange(actions.shape[0])[:, None], window[None, :]), reported)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_propensity = np.where(numbers > 0, sums / numbers, np.nan)
    metrics = metrics.copy()
    metrics["window_propensity"] = mean_propensity.reshape(-1)
    metrics["action_counts"] = list(counts.reshape(-1, num_actions))
    return metrics


def _chunks(spec: SweepSpec, todo: list[int], workers: int, cells_per_call: int | None = None
            ) -> list[tuple[list[int], int]]:
    """The cells to run as (cells of one program group, cells to pad the call to): each group split into
    calls of at most ``max_cells_per_call`` (and ``cells_per_call``) cells, and into at least ``workers``
    calls when it can be."""
    chunks = []
    for group in program_groups(spec, todo):
        size = min(max_cells_per_call(spec, group[0]), -(-len(group) // workers), cells_per_call or len(group))
        pieces = [group[i:i + size] for i in range(0, len(group), size)]
        chunks.extend((piece, size if len(pieces) > 1 else len(piece)) for piece in pieces)
    return chunks


def _cell_path(folder: Path, index: int) -> Path:
    return folder / CELLS / f"cell-{index:05d}.parquet"


def _write_atomically(frame: pd.DataFrame, path: Path) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    frame.to_parquet(partial, index=False)
    os.replace(partial, path)


def _open_folder(spec: SweepSpec, folder: Path, resume: bool) -> None:
    manifest = folder / MANIFEST
    recorded = {"sweep": spec.to_dict(), "cells": [dict(zip(spec.keys, values)) for values in spec.cells()]}
    if manifest.exists():
        if not resume:
            raise ValidationError(f"out: {folder} already holds a sweep; pass --resume to continue it "
                                  "or choose another folder")
        previous = json.loads(manifest.read_text())
        if json.dumps(previous.get("sweep"), sort_keys=True) != json.dumps(recorded["sweep"], sort_keys=True):
            raise ValidationError(f"resume: {folder} holds a different sweep (config, grid or checkpoints "
                                  "differ); expected the same sweep to continue")
        return
    (folder / CELLS).mkdir(parents=True, exist_ok=True)
    record = {**recorded, "versions": library_versions(),
              "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    _write_manifest(folder, record)


def validate_cells(spec: SweepSpec) -> None:
    """Build every cell's environments and agents, so that a bad value raises ``ValidationError`` naming
    its key before anything runs (the components are cached: ``run_sweep`` reuses them)."""
    for values in spec.cells():
        _cell_components(resolve_config(apply_overrides(spec.base, spec.overrides(values))))


def run_sweep(spec: SweepSpec, out_dir: str | Path, *, resume: bool = False, executor: str = "inprocess",
              workers: int | None = None, address: str | None = None, progress: bool = True,
              cells_per_call: int | None = None) -> SweepResult:
    """Run every cell of ``spec`` not yet on disk in ``out_dir``, then write the sweep's outputs there.

    Parameters
    ----------
    spec : from ``load_sweep``.
    out_dir : the sweep folder (created).
    resume : continue a sweep already in ``out_dir`` (the same spec); without it such a folder is an error.
    executor, workers, address : where cells run (``executors.run_tasks``): "inprocess", "processes", "dask".
    progress : a tqdm bar over cells (done / total, ETA).
    cells_per_call : at most this many cells in one vmapped call (>= 1; default: as many as
        ``CALL_BYTES`` of per-simulation arrays allow). Results do not depend on it; fewer cells per
        call means less memory and a finer resume (cells are written as their call ends).

    Returns
    -------
    ``SweepResult`` with the tidy frame (grid keys, env, agent, seed, round, metrics), the xarray
    Dataset, the summary, and how many cells ran now and how many were already on disk.
    """
    check_executor(executor, workers, address)
    if cells_per_call is not None:
        cells_per_call = check_integer("cells_per_call", cells_per_call, minimum=1)
    folder = Path(out_dir)
    check_output_dir(folder, "out_dir", sweep=True, resume=resume)  # never write into another run's folder
    cells = spec.cells()
    validate_cells(spec)  # before anything is written
    _open_folder(spec, folder, resume)
    todo = [index for index in range(len(cells)) if not _cell_path(folder, index).exists()]
    start = time.perf_counter()
    invocation = _start_invocation(folder)
    chunks = _chunks(spec, todo, 1 if executor == "inprocess" else workers or 1, cells_per_call)
    tasks = [(spec.base, [spec.overrides(cells[index]) for index in chunk], spec.checkpoints, pad_to)
             for chunk, pad_to in chunks]
    with tqdm(total=len(cells), initial=len(cells) - len(todo), desc="sweep", unit="cell",
              disable=not progress) as bar:
        for position, cell_frames in run_tasks(run_cells, tasks, executor=executor, workers=workers, address=address):
            for index, frame in zip(chunks[position][0], cell_frames):
                frame = pd.concat([pd.DataFrame(dict(zip(spec.keys, cells[index])), index=frame.index), frame], axis=1)
                _write_atomically(frame, _cell_path(folder, index))
                bar.update()
            _record_invocation(folder, invocation, cells_run=len(chunks[position][0]), wall_s=time.perf_counter() - start)
    wall = time.perf_counter() - start
    total = _record_invocation(folder, invocation, cells_run=0, wall_s=wall)
    frame = pd.concat([pd.read_parquet(_cell_path(folder, index)) for index in range(len(cells))], ignore_index=True)
    dataset, summary, plots = write_sweep_outputs(frame, spec.keys, folder, wall_s=total)
    return SweepResult(frame, dataset, summary, folder.resolve(), wall, len(todo), len(cells) - len(todo), plots,
                       total_wall_s=total)


def _start_invocation(folder: Path) -> int:
    """Append this call to sweep.json's ``invocations`` (start, cells run, wall time) and return its index.
    Each entry is kept up to date as cells are written (``_record_invocation``), so an interrupted
    call's time still counts in the total."""
    record = json.loads((folder / MANIFEST).read_text())
    record.setdefault("invocations", []).append(
        {"started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "cells_run": 0, "wall_s": 0.0})
    _write_manifest(folder, record)
    return len(record["invocations"]) - 1


def _record_invocation(folder: Path, index: int, *, cells_run: int, wall_s: float) -> float:
    """Add ``cells_run`` to invocation ``index`` and set its wall time; return the total over every invocation."""
    record = json.loads((folder / MANIFEST).read_text())
    invocations = record["invocations"]
    invocations[index]["cells_run"] += cells_run
    invocations[index]["wall_s"] = round(wall_s, 2)
    _write_manifest(folder, record)
    return round(sum(entry["wall_s"] for entry in invocations), 2)


def _write_manifest(folder: Path, record: dict) -> None:
    manifest = folder / MANIFEST
    partial = manifest.with_name(f".{manifest.name}.{os.getpid()}.partial")
    partial.write_text(json.dumps(record, indent=2, default=str) + "\n")
    os.replace(partial, manifest)
