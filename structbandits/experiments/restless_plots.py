"""PNG plots of the equitable-RMAB reproductions (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from structbandits.experiments.restless import summarise_restless

__all__ = ["ermab_fig3_figure", "ermab_fig4_figure", "plot_capacity", "plot_ermab_fig3", "plot_ermab_fig4",
           "plot_pareto"]

LABELS = {"NoAct": "No Act", "Random": "Rand"}
_BUDGET_FRACTIONS = {"maternal": {0.1: 20, 0.2: 40}, "diabetes": {0.1: 30, 0.2: 60}}


def _policy_colours(policies) -> dict[str, str]:
    """One colour per policy (matplotlib's default cycle, in first-seen order), the same in every panel
    of a figure, so one legend serves them all."""
    cycle = [f"C{i}" for i in range(10)]
    return {name: cycle[i % len(cycle)] for i, name in enumerate(dict.fromkeys(policies))}


def _bars(ax, table: pd.DataFrame, value: str, error: str | None, colours: dict[str, str]):
    """One bar per policy at each ``x`` of ``table`` (column "x", default 0)."""
    table = table.assign(x=table["x"] if "x" in table else 0.0)
    policies = list(dict.fromkeys(table["policy"]))
    width = 0.8 / len(policies)
    for k, name in enumerate(policies):
        rows = table[table["policy"] == name].sort_values("x")
        ax.bar(rows["x"] + (k - (len(policies) - 1) / 2) * width, rows[value], width,
               yerr=None if error is None else rows[error], label=LABELS.get(name, name), capsize=2,
               color=colours[name])


def _figure_legend(fig: Figure, colours: dict[str, str]) -> None:
    """One legend for the whole figure, above the panels (outside every axes, so it covers no bar)."""
    from matplotlib.patches import Patch

    handles = [Patch(color=colour, label=LABELS.get(name, name)) for name, colour in colours.items()]
    fig.legend(handles=handles, loc="outside upper center", ncols=min(len(handles), 10), fontsize=8, frameon=False)


def plot_ermab_fig3(frame: pd.DataFrame, path: str | Path) -> Path:
    """Synthetic domain: mean per-arm total reward of each group (left) and over all arms (right),
    one row per budget, one bar per policy, ± 1 standard error across seeds; one legend above the panels."""
    path = Path(path)
    ermab_fig3_figure(frame).savefig(path, dpi=120)
    return path


def ermab_fig3_figure(frame: pd.DataFrame) -> Figure:
    """The figure ``plot_ermab_fig3`` writes (a ``matplotlib.figure.Figure``, not drawn anywhere)."""
    data = frame[frame["domain"] == "synthetic"]
    budgets = sorted(data["budget"].unique())
    fig = Figure(figsize=(10, 3.2 * len(budgets) + 0.4), layout="constrained")
    axes = fig.subplots(len(budgets), 1, squeeze=False)[:, 0]
    colours = _policy_colours(data["policy"])
    for ax, budget in zip(axes, budgets):
        cell = data[data["budget"] == budget]
        per_group = (cell.groupby(["policy", "group", "group_name"], sort=False)["group_mean"]
                     .agg(["mean", "std", "count"]).reset_index())
        per_group["se"] = per_group["std"] / np.sqrt(per_group["count"])
        overall = summarise_restless(cell)
        names = list(dict.fromkeys(per_group["group_name"]))
        table = pd.concat([
            per_group.rename(columns={"mean": "value"})[["policy", "group_name", "value", "se"]],
            overall.assign(group_name="all", value=overall["utility"], se=overall["utility_se"])[
                ["policy", "group_name", "value", "se"]],
        ])
        table["x"] = table["group_name"].map({n: i for i, n in enumerate(names + ["all"])}).astype(float)
        table.loc[table["group_name"] == "all", "x"] += 0.5
        _bars(ax, table, "value", "se", colours)
        ax.axvline(len(names) - 0.25, color="k", linestyle="--", linewidth=1)
        ax.set_xticks(np.sort(table["x"].unique()), names + ["all arms"])
        ax.set(ylabel="mean total reward per arm", title=f"Synthetic, N=100, B={budget}, H=20")
        ax.grid(axis="y", alpha=0.3)
    _figure_legend(fig, colours)
    return fig


def plot_ermab_fig4(frame: pd.DataFrame, path: str | Path, budget_fraction: float = 0.1) -> Path:
    """Gini index (left panel of each pair) and mean per-arm total reward (right) of every setting.

    Rows: synthetic (columns: budgets), maternal (columns: which group has 60%), diabetes (columns:
    λ); the maternal and diabetes rows use the budget ``budget_fraction`` · N. Every panel has a title
    and one legend above the panels names every policy (colours are the same in all panels).
    """
    path = Path(path)
    ermab_fig4_figure(frame, budget_fraction).savefig(path, dpi=110)
    return path


def ermab_fig4_figure(frame: pd.DataFrame, budget_fraction: float = 0.1) -> Figure:
    """The figure ``plot_ermab_fig4`` writes (a ``matplotlib.figure.Figure``, not drawn anywhere)."""
    summary = summarise_restless(frame)
    rows = [d for d in ("synthetic", "maternal", "diabetes") if d in set(summary["domain"])]
    cells = []
    for domain in rows:
        part = summary[summary["domain"] == domain]
        if domain != "synthetic":
            part = part[part["budget"] == _BUDGET_FRACTIONS[domain][budget_fraction]]
        cells.append([(f"{domain}: {setting}" + (f", B={part[part['setting'] == setting]['budget'].iloc[0]}"
                                                  if domain != "synthetic" else ""),
                       part[part["setting"] == setting]) for setting in dict.fromkeys(part["setting"])])
    columns = max(len(c) for c in cells)
    fig = Figure(figsize=(5.2 * columns, 3.4 * len(rows) + 0.4), layout="constrained")
    panels = fig.subfigures(len(rows), columns, squeeze=False)
    colours = _policy_colours(summary["policy"])
    for r, row_cells in enumerate(cells):
        for c, (title, table) in enumerate(row_cells):
            panels[r, c].suptitle(title, fontsize=9)
            for ax, (value, error, name) in zip(panels[r, c].subplots(1, 2), [
                    ("gini", "gini_se", "Gini (lower is better)"), ("utility", "utility_se", "total reward / arm")]):
                _bars(ax, table, value, None if value == "gini" else error, colours)
                ax.set_xticks([])
                ax.set_title(name, fontsize=8)
                ax.tick_params(labelsize=8)
                ax.grid(axis="y", alpha=0.3)
    _figure_legend(fig, colours)
    return fig


def plot_pareto(frame: pd.DataFrame, path: str | Path) -> Path:
    """Engagement against health reward over λ, one line per policy (``run_ermab_pareto``)."""
    fig = Figure(figsize=(5.5, 4.2), layout="constrained")
    ax = fig.subplots()
    for name, part in frame.groupby("policy", sort=False):
        part = part.sort_values("alpha")
        ax.plot(part["engagement"], part["health"], marker="o", label=LABELS.get(name, name))
    ax.set(xlabel="engagement reward per arm", ylabel="health reward per arm", title="Diabetes: Pareto over λ")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    path = Path(path)
    fig.savefig(path, dpi=120)
    return path


def plot_capacity(frame: pd.DataFrame, path: str | Path, target: float | None = None) -> Path:
    """Final fraction of arms with A1c < 8 against the budget (``run_capacity_planning``)."""
    fig = Figure(figsize=(5.5, 4.2), layout="constrained")
    ax = fig.subplots()
    for name, part in frame.groupby("policy", sort=False):
        ax.errorbar(part["budget"], part["final_healthy"], yerr=part["final_healthy_se"], marker="o",
                    label=LABELS.get(name, name), capsize=2)
    if target is not None:
        ax.axhline(target, color="k", linestyle="--", linewidth=1)
    ax.set(xlabel="budget per round", ylabel="fraction with A1c < 8 at the end", title="Capacity planning")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    path = Path(path)
    fig.savefig(path, dpi=120)
    return path
