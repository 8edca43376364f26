"""Prior sensitivity of decisions: how what a sweep's agents chose, and what it cost, moves with each grid key.

ArviZ's power-scaling diagnostics (``structbandits.diagnostics.sensitivity.power_scaling_sensitivity``)
ask whether a *posterior* is sensitive to its prior; they need a NumPyro program and data, so a sweep
does not run them. This module asks whether the *decisions* are: for each grid key, each value of it,
each environment and agent, how the actions chosen in the final checkpoint window, their logged
probabilities (propensities) and the final regret change.

Grid cells share common random numbers: simulation (seed) i of every cell sees the same ground truth
where the environment is unchanged, and a different one from seed j. So the action shares are compared
*matched*: each simulation at a value against the simulation with the same seed and the same values of
the other keys at the key's reference value, and those total-variation distances are averaged. Pooling
the shares over seeds first would let changes cancel (arm 3 is a different arm in each seed's truth);
the pooled shares are kept only as a description.

It reads the tidy sweep frame's ``window_propensity`` and ``action_counts`` columns (written by
``structbandits.experiments.sweep``); a frame from an older sweep without them has no decision
sensitivity (``has_decisions`` says so).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from structbandits.errors import ValidationError
from structbandits.experiments.plots import log_x_axis
from structbandits.experiments.sweep_outputs import file_name, log_axis, numeric_values

__all__ = ["COLUMNS", "DECISION_COLUMNS", "decision_sensitivity", "has_decisions", "plot_decision_sensitivity",
           "write_decision_sensitivity"]

DECISION_COLUMNS = ("window_propensity", "action_counts")
# The CSV spells out the pooled shares for up to this many actions (top_action/top_share always).
SHARES_IN_CSV = 100

COLUMNS: dict[str, str] = {
    "key": "the grid key",
    "env": "the environment",
    "agent": "the agent",
    "row": "'value': one value of the key, over the other keys' values and the seeds; "
           "'summary': the key's effect across its values",
    "value": "the key's value (empty on summary rows)",
    "reference": "the key's reference value: the middle of its grid list (the lower middle for an even length)",
    "cells": "grid cells with this value (one per combination of the other keys' values)",
    "seeds": "distinct seeds among those cells (the simulations per cell unless `seeds` is itself a grid key); "
             "the grid keys are values of the `key` column, never columns, so a key named `seeds` does not collide",
    "round": "the final checkpoint round; the final window is (previous checkpoint, round]",
    "decisions": "decisions in the final windows of those cells (the sum of action_counts)",
    "action_shares": "descriptive: share of each action 0..K-1 in the final windows, pooled over the cells and "
                     "seeds (whose ground truths may differ, so a change can cancel here: tv_distance does not "
                     "pool). Empty when the cells have different numbers of actions K (a list; in the CSV a JSON "
                     f"list, empty also when K > {SHARES_IN_CSV})",
    "top_action": "the action with the largest pooled share (-1 when there is none: no decisions, or cells "
                  "with different K)",
    "top_share": "its pooled share",
    "tv_distance": "matched total-variation distance: for each seed and combination of the other keys' values, "
                   "½ Σ_a |p_a − q_a| between that simulation's final-window action shares p at this value and "
                   "q at the reference value; averaged per seed over the combinations, then over seeds. A pair "
                   "is skipped where either window has no decisions, the two have a different number of actions "
                   "K (a key that changes K), or the reference has no simulation with that seed (see note); NaN "
                   "when no pair is left",
    "tv_distance_se": "its standard error over seeds (sd / √n; NaN for fewer than two seeds)",
    "tv_pairs": "matched pairs behind tv_distance",
    "window_propensity": "mean logged probability of the chosen actions in the final window: per seed averaged "
                         "over the cells, then over seeds (NaN when the agent reports none)",
    "window_propensity_se": "its standard error over seeds (sd / √n; NaN for one seed or none reported)",
    "final_cumulative_regret": "final cumulative expected regret, averaged like window_propensity",
    "final_cumulative_regret_se": "its standard error over seeds",
    "max_tv_distance": "summary rows: the largest tv_distance over the key's values (NaN when all are NaN)",
    "max_tv_value": "summary rows: the first value (in grid order) where it is reached (equal within rounding "
                    "counts as reached); empty when no value's tv_distance is larger than another's (all NaN, or "
                    "all equal, e.g. all 0)",
    "window_propensity_range": "summary rows: max − min of window_propensity over the key's values "
                               "(NaN when none reported)",
    "final_cumulative_regret_range": "summary rows: max − min of final_cumulative_regret over the key's values",
    "note": "why pairs were skipped or a value has no shares or distance (empty when nothing was)",
}


def has_decisions(frame: pd.DataFrame) -> bool:
    """Whether ``frame`` records decisions: both ``DECISION_COLUMNS``, and action counts on every row
    (a sweep resumed across versions can mix cells with and without them)."""
    if any(column not in frame.columns for column in DECISION_COLUMNS):
        return False
    return bool(frame["action_counts"].map(lambda counts: isinstance(counts, (list, tuple, np.ndarray))).all())


def _key_values(frame: pd.DataFrame, key: str, grid: Mapping[str, Sequence[Any]] | None) -> list[Any]:
    present = list(dict.fromkeys(frame[key]))
    if grid is None or key not in grid:
        return present
    values = list(grid[key])
    stray = [value for value in present if value not in values]
    if stray:
        raise ValidationError(f"grid: expected every value of {key} in the frame among {values!r}, got {stray!r}")
    return values


def _mean_and_se(values: pd.Series) -> tuple[float, float]:
    values = values.dropna().to_numpy(float)
    if len(values) == 0:
        return float("nan"), float("nan")
    se = float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")
    return float(values.mean()), se


def _spread(values: Sequence[float]) -> float:
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    return float(values.max() - values.min()) if len(values) else float("nan")


def _pooled_shares(cells: pd.DataFrame) -> tuple[list[float], int, str]:
    """(shares of each action pooled over ``cells``' final windows, decisions, note); the shares are
    empty when the cells have different numbers of actions, NaN when they made no decisions."""
    counts = [np.asarray(c, dtype=float) for c in cells["action_counts"]]
    decisions = int(sum(c.sum() for c in counts))
    sizes = sorted({len(c) for c in counts})
    if len(sizes) > 1:
        return [], decisions, ("action_shares empty: the cells have different numbers of actions "
                               f"({', '.join(map(str, sizes))})")
    pooled = np.stack(counts).sum(axis=0)
    shares = pooled / pooled.sum() if pooled.sum() > 0 else np.full_like(pooled, np.nan)
    return [float(share) for share in shares], decisions, ""


def _matched_tv(cells: pd.DataFrame, base: pd.DataFrame, on: list[str]) -> tuple[float, float, int, str]:
    """Matched TV distance of ``cells`` (final rows at one value) from ``base`` (at the reference):
    (mean, its standard error over seeds, pairs used, note). Rows pair up on ``on`` (the other keys and
    the seed); per seed the pairs' distances are averaged, then over seeds."""
    reference = {tuple(row): np.asarray(counts, dtype=float)
                 for row, counts in zip(base[on].itertuples(index=False, name=None), base["action_counts"])}
    seeds, distances = [], []
    unmatched = other_k = empty = 0
    for row, counts in zip(cells[on].itertuples(index=False, name=None), cells["action_counts"]):
        p, q = np.asarray(counts, dtype=float), reference.get(tuple(row))
        if q is None:
            unmatched += 1
        elif len(p) != len(q):
            other_k += 1
        elif p.sum() == 0 or q.sum() == 0:
            empty += 1
        else:
            seeds.append(row[-1])
            distances.append(0.5 * float(np.abs(p / p.sum() - q / q.sum()).sum()))
    per_seed = pd.Series(distances, index=seeds, dtype=float).groupby(level=0).mean()
    mean, se = _mean_and_se(per_seed)
    total = len(cells)
    reasons = [f"{n} of {total} pairs skipped: {why}" for n, why in (
        (other_k, "a different number of actions K than at the reference"),
        (empty, "no decisions in a final window"),
        (unmatched, "no simulation with that seed and other keys' values at the reference")) if n]
    return mean, se, len(distances), "; ".join(reasons)


def _summary_row(key: str, env: str, agent: str, reference: Any, per_value: list[dict[str, Any]]) -> dict[str, Any]:
    distances = [(row["tv_distance"], row["value"]) for row in per_value if not np.isnan(row["tv_distance"])]
    largest = max((d for d, _ in distances), default=float("nan"))
    # Name a value only where one is larger than another: all-NaN or all-equal (e.g. all 0) names none.
    # Equal within rounding counts as equal, so a tie goes to the first value in grid order.
    ties = [value for d, value in distances if np.isclose(d, largest, rtol=1e-9, atol=1e-12)]
    differs = len(ties) < len(distances)
    return {
        "key": key, "env": env, "agent": agent, "row": "summary", "reference": reference,
        "max_tv_distance": largest,
        "max_tv_value": ties[0] if differs else None,
        "window_propensity_range": _spread([row["window_propensity"] for row in per_value]),
        "final_cumulative_regret_range": _spread([row["final_cumulative_regret"] for row in per_value]),
        "note": "" if differs else ("max_tv_value empty: no value's tv_distance is larger than another's"
                                    + ("" if distances else " (all NaN)")),
    }


def decision_sensitivity(frame: pd.DataFrame, keys: Sequence[str], *,
                         grid: Mapping[str, Sequence[Any]] | None = None) -> pd.DataFrame:
    """How the final window's decisions and the final regret move with each grid key.

    For each grid key, environment, agent and value of the key, each simulation's final window (its
    last checkpoint) is read in the cells with that value. ``tv_distance`` is matched: per seed and
    combination of the other keys' values, the total-variation distance between that simulation's
    action shares at the value and at the key's reference value (the same ground truth under common
    random numbers), averaged per seed, then over seeds, with its standard error over seeds. Pairs
    with different numbers of actions (a key that changes K), an empty window or no reference
    simulation are skipped and counted in ``note``; a value with none left gets NaN. The action
    shares pool the counts over cells and seeds (descriptive only: the seeds' truths differ; empty
    when the cells' K differ); the propensity and the regret are averaged per seed over the cells,
    then over seeds, with standard errors over seeds (the seeds are the independent simulations:
    under common random numbers the cells of one seed are not).

    The reference value of a key is the middle value of the key's grid list: index ``(n - 1) // 2``,
    the lower middle for an even length n. The grid keys appear as values of the ``key`` and
    ``value`` columns, never as columns, so any key name works, ``seeds`` included (the ``seeds``
    column keeps its meaning: distinct seeds among a value's cells).

    Parameters
    ----------
    frame : the tidy sweep frame: columns *keys, env, agent, seed, round, cumulative_regret,
        window_propensity, action_counts (a length-K sequence of counts per row; K may differ
        between cells).
    keys : the grid keys.
    grid : each key's grid list in order (default: its values in order of first appearance in
        ``frame``, which is the grid order for a frame ``run_sweep`` wrote).

    Returns
    -------
    One row per (key, env, agent, value) (``row == "value"``), then one per (key, env, agent)
    (``row == "summary"``), with the columns of ``COLUMNS`` (name -> meaning); the value rows leave
    the summary columns NaN and the summary rows the value columns.
    """
    if isinstance(keys, str):  # a string is a sequence too: its characters would be read as keys
        raise ValidationError(f"keys: expected a list of grid keys such as [{keys!r}], got the string {keys!r}")
    missing = [column for column in [*keys, "env", "agent", "seed", "round", "cumulative_regret", *DECISION_COLUMNS]
               if column not in frame.columns]
    if missing:
        raise ValidationError(f"frame: expected the columns {', '.join(missing)} (a sweep frame with decisions), "
                              "got a frame without them")
    if not has_decisions(frame):
        raise ValidationError("frame: expected action_counts on every row, got rows without them "
                              "(cells from an older sweep)")
    simulation = [*keys, "env", "agent", "seed"]
    final = frame[frame["round"] == frame.groupby(simulation, sort=False)["round"].transform("max")]
    rows: list[dict[str, Any]] = []
    for key in keys:
        values = _key_values(frame, key, grid)
        reference = values[(len(values) - 1) // 2]
        others = [other for other in keys if other != key]
        for (env, agent), group in final.groupby(["env", "agent"], sort=False):
            base = group[group[key] == reference]
            per_value = []
            for value in values:
                cells = group[group[key] == value]
                if cells.empty:
                    continue
                shares, decisions, shares_note = _pooled_shares(cells)
                tv, tv_se, pairs, tv_note = _matched_tv(cells, base, [*others, "seed"])
                per_seed = cells.groupby("seed", sort=True)[["window_propensity", "cumulative_regret"]].mean()
                propensity, propensity_se = _mean_and_se(per_seed["window_propensity"])
                regret, regret_se = _mean_and_se(per_seed["cumulative_regret"])
                top = int(np.nanargmax(shares)) if shares and decisions > 0 else -1
                per_value.append({
                    "key": key, "env": env, "agent": agent, "row": "value", "value": value, "reference": reference,
                    "cells": len(cells[others].drop_duplicates()) if others else 1,
                    "seeds": int(cells["seed"].nunique()), "round": int(cells["round"].max()),
                    "decisions": decisions, "action_shares": shares,
                    "top_action": top, "top_share": shares[top] if top >= 0 else float("nan"),
                    "tv_distance": tv, "tv_distance_se": tv_se, "tv_pairs": pairs,
                    "window_propensity": propensity, "window_propensity_se": propensity_se,
                    "final_cumulative_regret": regret, "final_cumulative_regret_se": regret_se,
                    "note": "; ".join(note for note in (tv_note, shares_note) if note),
                })
            rows.extend(per_value)
            rows.append(_summary_row(key, env, agent, reference, per_value))
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    for column in ("cells", "seeds", "round", "decisions", "top_action", "tv_pairs"):
        table[column] = table[column].astype("Int64")
    return table


def plot_decision_sensitivity(table: pd.DataFrame, key: str, path: str | Path) -> Path:
    """The matched TV distance of the final window's action shares from the reference value's and the
    mean propensity, each ± 1.96 s.e. over seeds, against the grid key ``key``: one row of two panels
    per environment, one line per agent (a gap where a value has no distance, e.g. a different K).
    ``table`` is ``decision_sensitivity``'s. Numeric keys use a log axis when their positive values
    span a factor of 10 or more; other values are categories."""
    rows = table[(table["key"] == key) & (table["row"] == "value")]
    values = list(dict.fromkeys(rows["value"]))
    numeric = numeric_values(values)
    position = {v: v for v in values} if numeric else {v: i for i, v in enumerate(values)}
    reference = table.loc[table["key"] == key, "reference"].iloc[0]
    env_names = list(dict.fromkeys(rows["env"]))
    fig = Figure(figsize=(11, 3.8 * len(env_names)), layout="constrained")
    axes = fig.subplots(len(env_names), 2, squeeze=False, sharex=True)  # a value without a TV keeps its place
    for (tv_ax, prop_ax), env_name in zip(axes, env_names):
        env_rows = rows[rows["env"] == env_name]
        reported = False
        for agent, line_rows in env_rows.groupby("agent", sort=False):
            line_rows = line_rows.sort_values("value") if numeric else line_rows
            x = np.array([position[v] for v in line_rows["value"]], dtype=float)
            tv = line_rows["tv_distance"].to_numpy(float)
            line, = tv_ax.plot(x, tv, marker="o", label=agent)
            tv_half = 1.96 * np.nan_to_num(line_rows["tv_distance_se"].to_numpy(float))
            tv_ax.fill_between(x, tv - tv_half, tv + tv_half, color=line.get_color(), alpha=0.2, linewidth=0)
            mean = line_rows["window_propensity"].to_numpy(float)
            if np.isnan(mean).all():
                continue
            reported = True
            half = 1.96 * np.nan_to_num(line_rows["window_propensity_se"].to_numpy(float))
            prop_ax.plot(x, mean, marker="o", color=line.get_color(), label=agent)
            prop_ax.fill_between(x, mean - half, mean + half, color=line.get_color(), alpha=0.2, linewidth=0)
        missing = list(dict.fromkeys(env_rows.loc[env_rows["tv_distance"].isna(), "value"]))
        if missing:
            tv_ax.text(0.5, 0.5, f"no distance at {', '.join(map(str, missing))} (see the csv's note)",
                       ha="center", va="center", transform=tv_ax.transAxes, color="0.4")
        if not reported:
            prop_ax.text(0.5, 0.5, "no agent reports propensities", ha="center", va="center",
                         transform=prop_ax.transAxes, color="0.4")
        seeds = int(env_rows["seeds"].max())
        for ax in (tv_ax, prop_ax):
            ax.axvline(position[reference], color="0.5", linestyle=":", linewidth=1)
            if numeric and log_axis(values):
                log_x_axis(ax, values)  # labels at the grid values, none overlapping
            if not numeric:
                ax.set_xticks(range(len(values)), [str(v) for v in values])
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize="small")
        tv_ax.set(xlabel=key, ylabel="TV distance of action shares (seed-matched)", ylim=(-0.02, 1.02),
                  title=f"{env_name}: final window vs {key}={reference} (dotted), ± 1.96 s.e.")
        prop_ax.set(xlabel=key, ylabel="mean propensity of chosen actions",
                    title=f"{env_name}: mean ± 1.96 s.e. over {seeds} seeds")
    path = Path(path)
    fig.savefig(path, dpi=110)
    return path


def _csv_shares(shares: Any) -> str:
    if not isinstance(shares, list) or not shares or len(shares) > SHARES_IN_CSV:
        return ""
    return json.dumps([round(share, 6) for share in shares])


def write_decision_sensitivity(
    frame: pd.DataFrame, keys: Sequence[str], folder: str | Path, *, grid: Mapping[str, Sequence[Any]] | None = None,
) -> tuple[pd.DataFrame | None, list[Path]]:
    """Write ``decision_sensitivity.csv`` and ``decisions_<key>.png`` per key into ``folder``.

    Returns (the table, the plots), or (None, []) for a frame without decisions (an older sweep).
    """
    if not has_decisions(frame):
        return None, []
    folder = Path(folder)
    table = decision_sensitivity(frame, keys, grid=grid)
    table.assign(action_shares=table["action_shares"].map(_csv_shares)).to_csv(
        folder / "decision_sensitivity.csv", index=False)
    plots = [plot_decision_sensitivity(table, key, folder / f"decisions_{file_name(key)}.png") for key in keys]
    return table, plots
