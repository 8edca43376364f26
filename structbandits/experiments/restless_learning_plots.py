"""PNG learning curves of the unknown-dynamics restless study (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from structbandits.experiments.restless import summarise_restless

__all__ = ["plot_learning_curves"]

_COLOURS = {"NoAct": "0.5", "Opt": "tab:blue", "MMR": "tab:red", "MNW-EG": "tab:green", "MNW": "tab:purple"}
_STYLES = {"known": "--", "thompson": "-", "mean": ":"}


def plot_learning_curves(frame: pd.DataFrame, domain: str, path: str | Path) -> Path:
    """Utility (mean per-arm total reward per episode, ± 1 s.e.) and Gini of the group means per episode.

    Colour = planner; dashed = known model (the ceiling), solid = Thompson-sampled, dotted =
    certainty-equivalent; per-arm (unpooled) learners dash-dotted. ``frame`` is
    ``run_restless_learning``'s output. Returns ``path``.
    """
    data = frame[frame["domain"] == domain]
    summary = summarise_restless(data, by=("episode",))
    meta = data.drop_duplicates("policy").set_index("policy")[["planner", "knowledge", "pooling"]]
    fig = Figure(figsize=(11, 4), layout="constrained")
    utility_ax, gini_ax = fig.subplots(1, 2)
    for policy, rows in summary.groupby("policy", sort=False):
        planner, knowledge, pooling = meta.loc[policy]
        style = "-." if pooling == "arm" else _STYLES[knowledge]
        options = dict(color=_COLOURS.get(planner, "k"), linestyle=style, label=policy, linewidth=1.5)
        rows = rows.sort_values("episode")
        utility_ax.errorbar(rows["episode"] + 1, rows["utility"], yerr=rows["utility_se"], capsize=2, **options)
        gini_ax.plot(rows["episode"] + 1, rows["gini"], **options)
    utility_ax.set(xlabel="episode (H = 20 rounds each)", ylabel="mean total reward per arm",
                   title=f"{domain}: utility while learning")
    gini_ax.set(xlabel="episode (H = 20 rounds each)", ylabel="Gini of group means (lower = more equitable)",
                title=f"{domain}: equity while learning")
    for ax in (utility_ax, gini_ax):
        ax.grid(alpha=0.3)
    gini_ax.legend(fontsize=7, ncols=2)
    path = Path(path)
    fig.savefig(path, dpi=120)
    return path
