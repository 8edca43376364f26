"""From a config to a results folder: load, override, validate, build, simulate, save."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import pandas as pd

from structbandits.experiments.config import apply_overrides, build_components, load_config, resolve_config
from structbandits.experiments.results import save_results
from structbandits.experiments.runner import run_experiment
from structbandits.runtime import ensure_configured

__all__ = ["default_output_dir", "run_config"]


def default_output_dir(name: str) -> Path:
    """``results/<name>-<YYYYmmdd-HHMMSS>`` under the current directory."""
    return Path("results") / f"{name}-{datetime.now():%Y%m%d-%H%M%S}"


def run_config(
    name_or_path: str | Path,
    overrides: list[str] | None = None,
    out_dir: str | Path | None = None,
    *,
    progress: bool = True,
) -> tuple[pd.DataFrame, Path]:
    """Run a built-in or TOML config with ``key=value`` overrides; returns (results, results folder).

    Everything is validated before the first simulation, so a bad key fails fast with a
    ``ValidationError`` naming it.
    """
    ensure_configured()
    config = resolve_config(apply_overrides(load_config(name_or_path), overrides or []))
    envs, agents = build_components(config)
    out = Path(out_dir) if out_dir is not None else default_output_dir(config.name)
    start = time.perf_counter()
    results = run_experiment(agents, envs, horizon=config.horizon, num_seeds=config.seeds, seed=config.seed,
                             seed_batch=config.seed_batch, progress=progress)
    wall_time = time.perf_counter() - start
    save_results(results, out, config=config.to_dict(), wall_time_s=round(wall_time, 2), title=config.name)
    return results, out.resolve()
