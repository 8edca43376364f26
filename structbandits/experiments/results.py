"""Summaries and the on-disk layout of a results folder.

A results folder holds ``results.parquet`` and ``results.csv`` (tidy, one row per round),
``summary.csv`` (one row per environment and agent), ``config.json`` (the resolved config, seed,
library versions, wall time) and the PNG plots.
"""

from __future__ import annotations

import json
import platform
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from structbandits.experiments.plots import plot_cumulative_regret

__all__ = ["library_versions", "save_results", "summarize"]

_LIBRARIES = ["structbandits", "jax", "jaxlib", "numpyro", "arviz", "numpy", "scipy", "pandas",
              "scikit-learn", "matplotlib", "pyarrow"]


def library_versions() -> dict[str, str]:
    """Python and the installed versions of the libraries a result depends on."""
    versions = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def standard_error(values: pd.Series) -> float:
    """Standard error of the mean over seeds (sample sd / sqrt(n)); NaN for a single seed."""
    return float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """Headline metrics per (env, agent) at the final round, across seeds.

    Columns: env, agent, seeds, rounds, final_cumulative_regret (expected regret; mean over seeds),
    final_cumulative_regret_se, final_cumulative_realized_regret, final_cumulative_realized_regret_se,
    mean_reward (average realised reward per round), mean_reward_se.
    """
    final_round = results.groupby(["env", "agent"], sort=False)["round"].transform("max")
    final = results[results["round"] == final_round]
    per_seed_reward = results.groupby(["env", "agent", "seed"], sort=False)["reward"].mean().rename("mean_reward")
    per_seed_realized = results.groupby(["env", "agent", "seed"], sort=False)["realized_regret"].sum().rename("realized")
    per_seed = (final.set_index(["env", "agent", "seed"])[["cumulative_regret", "round"]]
                .join(per_seed_reward).join(per_seed_realized))

    summary = per_seed.groupby(level=["env", "agent"], sort=False).agg(
        seeds=("round", "size"),
        rounds=("round", "max"),
        final_cumulative_regret=("cumulative_regret", "mean"),
        final_cumulative_regret_se=("cumulative_regret", standard_error),
        final_cumulative_realized_regret=("realized", "mean"),
        final_cumulative_realized_regret_se=("realized", standard_error),
        mean_reward=("mean_reward", "mean"),
        mean_reward_se=("mean_reward", standard_error),
    )
    return summary.reset_index()


def save_results(results: pd.DataFrame, out_dir: str | Path, *, config: dict[str, Any],
                 wall_time_s: float | None = None, title: str = "") -> Path:
    """Write the tidy results, the summary, the config with versions, and the plots to ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results.to_parquet(out / "results.parquet", index=False)
    results.to_csv(out / "results.csv", index=False)
    summarize(results).to_csv(out / "summary.csv", index=False)
    record = {
        "config": config,
        "seed": config.get("seed"),
        "versions": library_versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "wall_time_s": wall_time_s,
    }
    (out / "config.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    plot_cumulative_regret(results, out / "cumulative_regret.png", title=title)
    return out
