"""Users who change: stationary vs forgetting agents on the drifting bandits (``structbandits reproduce drift``).

Runs the built-in configs ``drift-changepoint``, ``drift-smooth``, ``drift-habituation`` and
``drift-stationary`` (``experiments/configs``; each LinTS without forgetting, with exponential and
stabilised forgetting at γ = 0.99, with a 200-round window, and uniform random, on a 5-arm, d = 5
linear bandit) into one subfolder each, then writes the combined ``summary.csv`` (a ``setting``
column per config) and ``final_regret.png``. Regret is tracking regret: against the best arm of each
round under that round's truth. ``structbandits sweep drift-gamma`` sweeps γ over the same settings.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

__all__ = ["DRIFT_CONFIGS", "plot_final_regret", "reproduce_drift"]

DRIFT_CONFIGS = ("drift-changepoint", "drift-smooth", "drift-habituation", "drift-stationary")


def plot_final_regret(summary: pd.DataFrame, path: str | Path) -> Path:
    """Bars of the final cumulative regret (± 1 s.e.) per agent, one panel per setting."""
    settings = list(dict.fromkeys(summary["setting"]))
    fig = Figure(figsize=(4.2 * len(settings), 3.8), layout="constrained")
    axes = fig.subplots(1, len(settings), squeeze=False)[0]
    for ax, setting in zip(axes, settings):
        rows = summary[summary["setting"] == setting]
        positions = np.arange(len(rows))
        ax.bar(positions, rows["final_cumulative_regret"], yerr=rows["final_cumulative_regret_se"], capsize=3)
        ax.set_xticks(positions, rows["agent"], rotation=35, ha="right")
        ax.set(title=setting, ylabel="final cumulative regret (tracking)")
        ax.grid(axis="y", alpha=0.3)
    path = Path(path)
    fig.savefig(path, dpi=120)
    return path


def _change_rounds_within(config: str, horizon: int) -> list[str]:
    """For a run shorter than ``config``'s own horizon (``--quick``, ``--horizon``), its environments'
    ``change_rounds`` scaled to ``horizon`` (r -> round(r·H/H₀), at least 2, strictly increasing), as
    overrides: otherwise a 30-round quick run would never reach the changes at 501, 1001 and 1501."""
    from structbandits.experiments.config import load_config

    raw = load_config(config)
    full = int(raw["horizon"])
    if horizon >= full:
        return []
    overrides = []
    for name, table in raw["envs"].items():
        if "change_rounds" not in table:
            continue
        scaled: list[int] = []
        for r in table["change_rounds"]:
            r = max(2, round(r * horizon / full), scaled[-1] + 1 if scaled else 2)
            if r <= horizon:
                scaled.append(r)
        overrides.append(f"envs.{name}.change_rounds={scaled}")
    return overrides


def reproduce_drift(out: Path, seeds: int, horizon: int | None, progress: bool) -> pd.DataFrame:
    """Run the four drift configs at ``seeds`` × ``horizon`` into ``out/<config>``; return the combined summary."""
    from structbandits.experiments.pipeline import run_config
    from structbandits.experiments.results import summarize

    out = Path(out)
    tables = []
    for config in DRIFT_CONFIGS:
        overrides = [f"seeds={seeds}", f"horizon={horizon}", *_change_rounds_within(config, horizon)]
        results, _ = run_config(config, overrides, out / config, progress=progress)
        tables.append(summarize(results).assign(setting=config.removeprefix("drift-")))
    summary = pd.concat(tables, ignore_index=True)
    summary = summary[["setting"] + [column for column in summary.columns if column != "setting"]]
    summary.to_csv(out / "summary.csv", index=False)
    plot_final_regret(summary, out / "final_regret.png")
    return summary
