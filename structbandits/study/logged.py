"""A logged study as arrays (``LoggedStudy``), and its loaders from an ``OnlineAgent`` study or a table.

What off-policy evaluation needs of a log is, per decision: the context it was made in (as a feature
vector), the action taken, the reward that followed, and the probability the logger took that action
with. ``LoggedStudy`` holds exactly that, validated once, so the estimators (``study.analysis``) and the
export (``study.obp``) trust it.

Sources
-------
``load_store(path_or_url, study=...)``
    A study in a decision store (``study.store``), as ``OnlineAgent`` records it.
``load_decision_log(folder)``
    A CSV export of such a study (``OnlineAgent.export_csv``: ``decisions.csv``, ``observations.csv``,
    ``study.json``; see ``study.decision_log``), or an older version's log folder.
``load_table(path)``
    A CSV or Parquet table with columns ``action``, ``reward``, ``propensity`` and feature columns.

``load_results(folder, env=..., agent=...)``
    A results folder of ``structbandits run`` / ``run_config`` (``results.parquet``, ``config.json``): one
    agent on one environment, every seed's rounds, with the contexts the run recorded (``context_0``,
    ...; ``run_experiment(contexts=...)``). A results folder without contexts is refused with that
    reason.

Layout: this module holds the loaders of simulation results and tables (``load_results``,
``load_table``); ``LoggedStudy`` and ``NO_CONTEXTS`` are in ``study.logged_study``, the loaders of an
``OnlineAgent`` study (``load_decision_log``, ``load_store``) in ``study.logged_agent``. Every name in
``__all__`` still imports from here (the same objects).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from structbandits.errors import ValidationError
from structbandits.study.logged_agent import load_decision_log, load_store  # re-exported: imports from here keep working
from structbandits.study.logged_study import _RESULTS_FILES, NO_CONTEXTS, LoggedStudy  # re-exported too

__all__ = ["LoggedStudy", "load_decision_log", "load_results", "load_store", "load_table", "NO_CONTEXTS"]


def _only(frame, column: str, value: str | None, folder: Path) -> str:
    names = sorted(frame[column].astype(str).unique())
    if value is None:
        if len(names) != 1:
            raise ValidationError(f"{column}: the results in {str(folder)!r} have several: {names}; name one "
                                  f"({column}=..., --{column} NAME)")
        return names[0]
    if value not in names:
        raise ValidationError(f"{column}: expected one of {names} in {str(folder)!r}, got {value!r}")
    return value


def load_results(folder: str | Path, *, env: str | None = None, agent: str | None = None,
                 num_actions: int | None = None) -> LoggedStudy:
    """One agent's simulated decisions on one environment from a results folder, as a ``LoggedStudy``.

    Parameters
    ----------
    folder : a results folder of ``structbandits run`` / ``run_config`` (``results.parquet`` or
        ``results.csv``, and ``config.json``) whose frame has the context columns ``context_0, ...``.
    env, agent : which environment and agent (default: the only one).
    num_actions : K (default: the environment's ``num_actions`` in ``config.json``).

    Returns
    -------
    LoggedStudy with one row per (seed, round) of that agent on that environment, in seed then round
    order: features the recorded contexts, the realised rewards, the propensities the agent reported;
    ``decision_ids`` 0, 1, ... in that order. The seeds are independent simulated users.

    Raises
    ------
    ValidationError : no such folder or no results file; no context columns (``NO_CONTEXTS``); several
        environments or agents and none named, or an unknown one; K neither given nor in config.json;
        propensities outside (0, 1] (NaN: the agent did not report them).
    """
    import pandas as pd

    folder = Path(folder)
    files = [folder / name for name in _RESULTS_FILES if (folder / name).is_file()]
    if not folder.is_dir() or not files:
        raise ValidationError(f"folder: expected a results folder with results.parquet or results.csv, got {str(folder)!r}")
    frame = pd.read_parquet(files[0]) if files[0].suffix == ".parquet" else pd.read_csv(files[0])
    features = [c for c in frame.columns if isinstance(c, str) and c.startswith("context_")]
    if not features:
        raise ValidationError(f"folder: {str(folder)!r}: {NO_CONTEXTS}")
    env, agent = _only(frame, "env", env, folder), _only(frame, "agent", agent, folder)
    rows = frame[(frame["env"].astype(str) == env) & (frame["agent"].astype(str) == agent)].sort_values(["seed", "round"])
    rows = rows.dropna(axis=1, how="all")  # context columns of other environments
    features = [c for c in features if c in rows.columns]
    if num_actions is None:
        try:
            num_actions = json.loads((folder / "config.json").read_text())["config"]["envs"][env]["num_actions"]
        except (OSError, ValueError, KeyError, TypeError):
            raise ValidationError(f"num_actions: the results in {str(folder)!r} do not record env {env!r}'s number of "
                                  "actions in config.json; pass num_actions=K (--num-actions K)") from None
    return LoggedStudy(
        features=rows[features].to_numpy(dtype=np.float64),
        actions=rows["action"].to_numpy(),
        rewards=rows["reward"].to_numpy(),
        propensities=rows["propensity"].to_numpy(),
        num_actions=num_actions,
        decision_ids=np.arange(len(rows)),
        feature_names=tuple(features),
    )


# ------------------------------------------------------------------ a table
def load_table(path: str | Path, *, num_actions: int, feature_prefix: str = "x",
               feature_columns: list[str] | None = None) -> LoggedStudy:
    """A CSV or Parquet table of logged decisions as a ``LoggedStudy``.

    Parameters
    ----------
    path : a ``.csv`` or ``.parquet`` file, one row per decision, with columns ``action`` (0..K-1),
        ``reward``, ``propensity`` (the logged probability of that action, in (0, 1]) and the features;
        optional ``decision_id`` and ``time``.
    num_actions : K, the size of the action set (a table does not record arms it never took).
    feature_prefix : feature columns are those whose name starts with it (default ``x``: x0, x1, ...),
        in the table's order.
    feature_columns : explicit feature column names instead (in this order).

    A ``results.csv`` / ``results.parquet`` of ``run_experiment`` has action, reward and propensity but
    no contexts; it is refused with that reason.
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise ValidationError(f"path: expected a CSV or Parquet table of decisions, got {str(path)!r} (no such file)")
    if path.suffix.lower() == ".parquet":
        frame = pd.read_parquet(path)
    elif path.suffix.lower() == ".csv":
        frame = pd.read_csv(path)
    else:
        raise ValidationError(f"path: expected a .csv or .parquet table, got {str(path)!r}")
    missing = [column for column in ("action", "reward", "propensity") if column not in frame.columns]
    if missing:
        raise ValidationError(f"path: expected columns action, reward and propensity in {str(path)!r}, missing {missing}")
    if feature_columns is None:
        if not isinstance(feature_prefix, str) or not feature_prefix:
            raise ValidationError(f"feature_prefix: expected a non-empty string, got {feature_prefix!r}")
        feature_columns = [c for c in frame.columns if isinstance(c, str) and c.startswith(feature_prefix)
                           and c not in ("action", "reward", "propensity", "decision_id", "time")]
        if not feature_columns:
            if {"env", "agent", "seed", "round"} <= set(frame.columns):
                raise ValidationError(f"path: {str(path)!r}: {NO_CONTEXTS}")
            raise ValidationError(f"feature_prefix: no column of {str(path)!r} starts with {feature_prefix!r}; name the "
                                  "feature columns (feature_columns=[...]) or give their prefix")
    else:
        absent = [c for c in feature_columns if c not in frame.columns]
        if absent or not feature_columns:
            raise ValidationError(f"feature_columns: expected columns of {str(path)!r}, got {list(feature_columns)!r}"
                                  + (f" ({absent} absent)" if absent else ""))
    try:
        features = frame[list(feature_columns)].to_numpy(dtype=np.float64)
    except (TypeError, ValueError):
        raise ValidationError(f"feature_columns: expected numeric columns, got {list(feature_columns)!r}") from None
    return LoggedStudy(
        features=features,
        actions=frame["action"].to_numpy(),
        rewards=frame["reward"].to_numpy(),
        propensities=frame["propensity"].to_numpy(),
        num_actions=num_actions,
        decision_ids=frame["decision_id"].to_numpy() if "decision_id" in frame.columns else None,
        times=pd.to_datetime(frame["time"], utc=True).dt.tz_localize(None).to_numpy() if "time" in frame.columns else None,
        feature_names=tuple(str(c) for c in feature_columns),
    )
