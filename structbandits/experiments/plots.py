"""Plots of experiment results, written as PNG files (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

__all__ = ["log_x_axis", "plot_cumulative_regret"]


def plot_cumulative_regret(results: pd.DataFrame, path: str | Path, *, title: str = "") -> Path:
    """Mean cumulative expected regret over rounds with a ±1 standard-error band across seeds.

    One panel per environment, one line per agent. ``results`` is the runner's tidy DataFrame.
    """
    stats = (
        results.groupby(["env", "agent", "round"], sort=False)["cumulative_regret"]
        .agg(["mean", "std", "count"])
        .reset_index()
    )
    stats["se"] = (stats["std"] / np.sqrt(stats["count"])).fillna(0.0)
    env_names = list(dict.fromkeys(stats["env"]))
    fig = Figure(figsize=(5.5 * len(env_names), 4.0), layout="constrained")
    axes = fig.subplots(1, len(env_names), squeeze=False)[0]
    for ax, env_name in zip(axes, env_names):
        for agent_name, curve in stats[stats["env"] == env_name].groupby("agent", sort=False):
            line, = ax.plot(curve["round"], curve["mean"], label=agent_name)
            ax.fill_between(curve["round"], curve["mean"] - curve["se"], curve["mean"] + curve["se"],
                            color=line.get_color(), alpha=0.25, linewidth=0)
        seeds = int(stats["count"].max())
        ax.set(xlabel="round", ylabel="cumulative expected regret",
               title=f"{title + ': ' if title else ''}{env_name} (mean ± s.e., {seeds} seeds)")
        ax.grid(alpha=0.3)
        ax.legend()
    path = Path(path)
    fig.savefig(path, dpi=120)
    return path


def log_x_axis(ax, values, *, max_labels: int = 7) -> None:
    """Put ``ax``'s x axis on a log scale with tick labels at the grid's own ``values`` (plain numbers).

    Matplotlib's default log ticks label minor ticks as ``3×10⁰``, ``4×10⁰`` where a grid spans about a
    decade, and those labels overlap. Here every value gets a tick; labels go to the values left to
    right, skipping any closer than 1 / ``max_labels`` of the axis' log span to the last labelled one.
    """
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    ticks = np.unique(np.asarray(values, dtype=float))
    logs = np.log10(ticks)
    gap = (logs[-1] - logs[0]) / max_labels
    labelled = [0]
    for i in range(1, len(ticks)):
        if logs[i] - logs[labelled[-1]] >= gap:
            labelled.append(i)
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(ticks[labelled]))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.xaxis.set_minor_locator(FixedLocator(np.setdiff1d(ticks, ticks[labelled])))
    ax.xaxis.set_minor_formatter(NullFormatter())
