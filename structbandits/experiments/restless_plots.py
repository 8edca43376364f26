"""PNG plots of the equitable-RMAB reproductions (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from structbandits.experiments.restless import summarise_restless

__all__ = ["plot_capacity", "plot_ermab_fig3", "plot_ermab_fig4", "plot_pareto"]

LABELS = {"NoAct": "No Act", "Random": "Rand"}
_BUDGET_FRACTIONS = {"maternal": {0.1: 20, 0.2: 40}, "diabetes": {0.1: 30, 0.2: 60}}


def _bars(ax, table: pd.DataFrame, value: str, error: str | None):
    """One bar per policy at each ``x`` of ``table`` (column "x", default 0)."""
    table = table.assign(x=table["x"] if "x" in table else 0.0)
    policies = list(dict.fromkeys(table["policy"]))
    width = 0.8 / len(policies)
    for k, name in enumerate(policies):
        rows = table[table["policy"] == name].sort_values("x")
        ax.bar(rows["x"] + (k - (len(policies) - 1) / 2) * width, rows[value], width,
               yerr=None if error is None else rows[error], label=LABELS.get(name, name), capsize=2)


def plot_ermab_fig3(frame: pd.DataFrame, path: str | Path) -> Path:
    """Synthetic domain: mean per-arm total reward of each group (left) and over all arms (right),
    one row per budget, one bar per policy, ± 1 standard error across seeds."""
    data = frame[frame["domain"] == "synthetic"]
    budgets = sorted(data["budget"].unique())
    fig = Figure(figsize=(10, 3.2 * len(budgets)), layout="constrained")
    axes = fig.subplots(len(budgets), 1, squeeze=False)[:, 0]
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
        _bars(ax, table, "value", "se")
        ax.axvline(len(names) - 0.25, color="k", linestyle="--", linewidth=1)
        ax.set_xticks(np.sort(table["x"].unique()), names + ["all arms"])
        ax.set(ylabel="mean total reward per arm", title=f"Synthetic, N=100, B={budget}, H=20")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(ncols=6, fontsize=8)
    path = Path(path)
    fig.savefig(path, dpi=120)
    return path


def plot_ermab_fig4(frame: pd.DataFrame, path: str | Path, budget_fraction: float = 0.1) -> Path:
    """Gini index (left panel of each pair) and mean per-arm total reward (right) of every setting.

    Rows: synthetic (columns: budgets), maternal (columns: which group has 60%), diabetes (columns:
    λ); the maternal and diabetes rows use the budget ``budget_fraction`` · N.
    """
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
    fig = Figure(figsize=(5.2 * columns, 3.4 * len(rows)), layout="constrained")
    grid = fig.add_gridspec(len(rows), 2 * columns)
    for r, row_cells in enumerate(cells):
        for c, (title, table) in enumerate(row_cells):
            for k, (value, error, label) in enumerate([("gini", "gini_se", "Gini (lower is better)"),
                                                       ("utility", "utility_se", "total reward / arm")]):
                ax = fig.add_subplot(grid[r, 2 * c + k])
                _bars(ax, table, value, None if value == "gini" else error)
                ax.set_xticks([])
                ax.set_ylabel(label, fontsize=8)
                ax.grid(axis="y", alpha=0.3)
                if k == 0:
                    ax.set_title(title, fontsize=9, loc="left")
                if c == 0 and k == 1 and (r == 0 or len(set(table["policy"])) != len(set(cells[0][0][1]["policy"]))):
                    ax.legend(fontsize=7)
    path = Path(path)
    fig.savefig(path, dpi=110)
    return path


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
