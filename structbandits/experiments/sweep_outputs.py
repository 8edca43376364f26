"""What a finished sweep leaves in its folder: the tidy parquet, the netCDF Dataset, the summary,
the sensitivity plots (final metric against each grid key, mean ± 1.96 s.e. over seeds, one line per
agent), the decision sensitivity (``decision_sensitivity``: how the final window's actions and
propensities move with each key) and the HTML report."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from structbandits.experiments.plots import log_x_axis
from structbandits.experiments.results import standard_error

__all__ = ["METRICS", "file_name", "log_axis", "numeric_values", "plot_sensitivity", "seeds_column", "sweep_dataset",
           "sweep_summary", "write_sweep_outputs"]

METRICS = ("cumulative_regret", "cumulative_realized_regret", "mean_reward")
_LABELS = {
    "final_cumulative_regret": "final cumulative expected regret",
    "final_cumulative_realized_regret": "final cumulative realised regret",
    "mean_reward": "mean reward per round",
}


def sweep_dataset(frame: pd.DataFrame, keys: Sequence[str]):
    """The tidy sweep frame as an ``xarray.Dataset``.

    Dims: (*keys, env, agent, seed, round) for the checkpoint metrics ``cumulative_regret``,
    ``cumulative_realized_regret``, ``mean_reward``; (*keys, env, agent, seed) for
    ``final_<metric>`` (each simulation's last checkpoint) and, when the frame has the column,
    ``final_window_propensity`` (the mean propensity of the chosen actions in the final checkpoint
    window; NaN where the agent reports none). Missing combinations are NaN.
    """
    import xarray as xr

    index = [*keys, "env", "agent", "seed"]
    curves = frame.set_index([*index, "round"])[list(METRICS)].to_xarray()
    last = frame["round"] == frame.groupby(index, sort=False)["round"].transform("max")
    finals = [*METRICS, *(["window_propensity"] if "window_propensity" in frame.columns else [])]
    final = frame[last].set_index(index)[finals].rename(columns=lambda m: f"final_{m}").to_xarray()
    return xr.merge([curves, final])


def sweep_summary(frame: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Final-round metrics per (grid point, env, agent): mean and standard error over seeds.

    Columns: *keys, env, agent, seeds, rounds, final_cumulative_regret, final_cumulative_regret_se,
    final_cumulative_realized_regret, final_cumulative_realized_regret_se, mean_reward, mean_reward_se.
    ``seeds`` counts the simulations; where ``seeds`` is itself a grid key, that column keeps the grid
    key's name and values and the count is ``num_seeds`` instead (``seeds_column``).
    """
    index = [*keys, "env", "agent"]
    last = frame["round"] == frame.groupby([*index, "seed"], sort=False)["round"].transform("max")

    return frame[last].groupby(index, sort=False).agg(
        **{seeds_column(keys): ("seed", "size")},
        rounds=("round", "max"),
        final_cumulative_regret=("cumulative_regret", "mean"),
        final_cumulative_regret_se=("cumulative_regret", standard_error),
        final_cumulative_realized_regret=("cumulative_realized_regret", "mean"),
        final_cumulative_realized_regret_se=("cumulative_realized_regret", standard_error),
        mean_reward=("mean_reward", "mean"),
        mean_reward_se=("mean_reward", standard_error),
    ).reset_index()


def seeds_column(keys: Sequence[str]) -> str:
    """The summary's simulation-count column: ``seeds``, or ``num_seeds`` when ``seeds`` is a grid key."""
    return "num_seeds" if "seeds" in keys else "seeds"


def plot_sensitivity(summary: pd.DataFrame, key: str, path: str | Path, *, keys: Sequence[str] | None = None,
                     metric: str = "final_cumulative_regret") -> Path:
    """``metric`` against the grid key ``key``, mean ± 1.96 s.e. over seeds, one panel per environment.

    One line per agent (and per value of the other grid keys, named in the legend). Numeric keys use
    a log axis when their positive values span a factor of 10 or more; other values are categories.
    ``summary`` is ``sweep_summary``'s table, with the columns ``metric`` and ``metric + "_se"``.
    """
    others = [other for other in (keys or [key]) if other != key]
    values = list(dict.fromkeys(summary[key]))
    numeric = numeric_values(values)
    position = {v: v for v in values} if numeric else {v: i for i, v in enumerate(values)}
    env_names = list(dict.fromkeys(summary["env"]))
    fig = Figure(figsize=(5.5 * len(env_names), 4.2), layout="constrained")
    axes = fig.subplots(1, len(env_names), squeeze=False)[0]
    for ax, env_name in zip(axes, env_names):
        rows = summary[summary["env"] == env_name]
        for label, line_rows in rows.groupby(["agent", *others], sort=False):
            label = label if isinstance(label, tuple) else (label,)
            name = label[0] + "".join(f", {other}={value}" for other, value in zip(others, label[1:]))
            line_rows = line_rows.sort_values(key) if numeric else line_rows
            x = np.array([position[v] for v in line_rows[key]], dtype=float)
            mean = line_rows[metric].to_numpy(float)
            half = 1.96 * np.nan_to_num(line_rows[f"{metric}_se"].to_numpy(float))
            line, = ax.plot(x, mean, marker="o", label=name)
            ax.fill_between(x, mean - half, mean + half, color=line.get_color(), alpha=0.2, linewidth=0)
        if numeric and log_axis(values):
            log_x_axis(ax, values)  # labels at the grid values, none overlapping
        if not numeric:
            ax.set_xticks(range(len(values)), [str(v) for v in values])
        seeds = int(rows["num_seeds" if "num_seeds" in summary.columns else "seeds"].max())  # see seeds_column
        ax.set(xlabel=key, ylabel=_LABELS.get(metric, metric),
               title=f"{env_name}: mean ± 1.96 s.e. over {seeds} seeds")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    path = Path(path)
    fig.savefig(path, dpi=110)
    return path


def numeric_values(values: Sequence[Any]) -> bool:
    """Whether grid values are numbers (not booleans) and so sit on a numeric axis."""
    return all(isinstance(v, (int, float, np.number)) and not isinstance(v, (bool, np.bool_)) for v in values)


def log_axis(values: Sequence[float]) -> bool:
    """Whether numeric grid values get a log axis: all positive, spanning a factor of 10 or more."""
    return min(values) > 0 and max(values) / min(values) >= 10


def file_name(key: str) -> str:
    """A grid key as a file-name part: ``agents.lints.sigma0`` -> ``agents_lints_sigma0``."""
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in key)


def write_sweep_outputs(frame: pd.DataFrame, keys: Sequence[str], folder: Path, *,
                        wall_s: float) -> tuple[Any, pd.DataFrame, list[Path]]:
    """Write sweep.parquet, sweep.nc (h5netcdf), sweep_summary.csv, sensitivity_<key>.png,
    decision_sensitivity.csv and decisions_<key>.png (skipped for a frame without the decision
    columns, as from an older sweep) and report.html into ``folder``; record the wall time in
    sweep.json. Returns (Dataset, summary, plots), the plots the sensitivity and decision ones."""
    from structbandits.experiments.decision_sensitivity import write_decision_sensitivity
    from structbandits.experiments.report import render_report

    frame.to_parquet(folder / "sweep.parquet", index=False)
    dataset = sweep_dataset(frame, keys)
    dataset.to_netcdf(folder / "sweep.nc", engine="h5netcdf")
    summary = sweep_summary(frame, keys)
    summary.to_csv(folder / "sweep_summary.csv", index=False)
    plots = [plot_sensitivity(summary, key, folder / f"sensitivity_{file_name(key)}.png", keys=keys) for key in keys]
    plots += write_decision_sensitivity(frame, keys, folder)[1]
    manifest = folder / "sweep.json"
    record = json.loads(manifest.read_text())
    record["wall_time_s"] = round(wall_s, 2)
    manifest.write_text(json.dumps(record, indent=2, default=str) + "\n")
    render_report(folder)
    return dataset, summary, plots
