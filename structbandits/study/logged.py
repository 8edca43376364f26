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
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from structbandits.errors import ValidationError, check_finite, check_integer, check_shape
from structbandits.persistence import load_snapshot
from structbandits.study.decision_log import ContextSpec, read_csv_rows

__all__ = ["LoggedStudy", "load_decision_log", "load_results", "load_store", "load_table", "NO_CONTEXTS"]

NO_CONTEXTS = ("this results folder carries no contexts; off-policy evaluation needs the context of every decision: "
               "run the simulation with its contexts recorded (structbandits run records them where a round's context "
               "has at most 32 numbers; run_experiment(contexts=True)), run the study with OnlineAgent (a decision store, "
               "or its CSV export), or write a CSV/Parquet table with columns action, reward, propensity and feature "
               "columns x0, x1, ...")
_RESULTS_FILES = ("results.parquet", "results.csv")
_SNAPSHOT_KIND = "structbandits.OnlineAgent"  # what OnlineAgent.save writes (study.agent_checks.SNAPSHOT_KIND)


@dataclass(frozen=True)
class LoggedStudy:
    """The decisions of a logged study as arrays; validated on construction.

    Attributes
    ----------
    features : (n, p) float64, each decision's context flattened to a feature vector. A pytree
        context (dict, NamedTuple) is flattened leaf by leaf in its ``ContextSpec`` order (JAX's
        flattening order, the order the decision log stores the leaves in), each leaf raveled in C
        order, and the pieces concatenated. An array context of shape (K, d) gives K * d features.
    actions : (n,) int64 in [0, num_actions), the action taken.
    rewards : (n,) float64, finite, the reward that followed it.
    propensities : (n,) float64 in (0, 1], the probability the logger took the logged action with.
    num_actions : K >= 2 (the size of the action set, including arms the log never took).
    action_probabilities : optional (n, K), the logger's probability of every action (rows sum to 1,
        the logged action's entry equal to ``propensities``); None when only the taken action's was logged.
    decision_ids : optional (n,) int64, the decisions' ids in the log.
    times : optional (n,) ``datetime64[ns]`` (UTC), when the decisions were made.
    feature_names : optional tuple of p names of the feature columns.
    num_without_outcome : decisions dropped by the loader because no reward was observed for them.
    """

    features: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    propensities: np.ndarray
    num_actions: int
    action_probabilities: np.ndarray | None = None
    decision_ids: np.ndarray | None = None
    times: np.ndarray | None = None
    feature_names: tuple[str, ...] | None = None
    num_without_outcome: int = 0

    def __post_init__(self) -> None:
        def per_decision(name: str, value: np.ndarray) -> np.ndarray:
            if value.shape != (n,):
                raise ValidationError(f"{name}: expected shape ({n},), one entry per decision (features has {n} rows), "
                                      f"got shape {value.shape}")
            return value

        put = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen dataclass)
        num_actions = check_integer("num_actions", self.num_actions, minimum=2)
        put("num_actions", num_actions)
        features = check_finite("features", self.features)
        if features.ndim == 1:
            features = features[:, None]
        check_shape("features", features, (None, None))
        n = features.shape[0]
        if n < 2:
            raise ValidationError(f"features: expected at least 2 decisions (rows), got {n}")
        put("features", features)
        actions = np.asarray(self.actions)
        per_decision("actions", actions)
        actions = check_finite("actions", actions)
        if np.any(actions != np.round(actions)) or np.any(actions < 0) or np.any(actions >= num_actions):
            bad = actions[(actions != np.round(actions)) | (actions < 0) | (actions >= num_actions)][0]
            raise ValidationError(f"actions: expected integers in [0, {num_actions}) (num_actions {num_actions}), got {bad}")
        put("actions", actions.astype(np.int64))
        put("rewards", per_decision("rewards", check_finite("rewards", self.rewards)))
        try:
            propensities = np.asarray(self.propensities, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValidationError(f"propensities: expected numbers, got {self.propensities!r}") from None
        per_decision("propensities", propensities)
        if np.any(np.isnan(propensities)):
            raise ValidationError(f"propensities: expected the logged probability of every action taken, got NaN at "
                                  f"decision {int(np.flatnonzero(np.isnan(propensities))[0])} (a policy that does not "
                                  "report propensities cannot be evaluated off-policy)")
        outside = ~((propensities > 0) & (propensities <= 1))
        if np.any(outside):
            zero = " (a Monte-Carlo estimate from too few draws; log with agents.clipped(...) for exact, " \
                   "bounded probabilities)" if propensities[outside][0] == 0 else ""
            raise ValidationError(f"propensities: expected probabilities in (0, 1] (the action taken had a positive chance), "
                                  f"got {propensities[outside][0]} at decision {int(np.flatnonzero(outside)[0])}{zero}")
        put("propensities", propensities)
        if self.action_probabilities is not None:
            probabilities = check_finite("action_probabilities", self.action_probabilities)
            check_shape("action_probabilities", probabilities, (n, num_actions))
            if np.any(probabilities < 0) or np.any(np.abs(probabilities.sum(axis=1) - 1) > 1e-6):
                raise ValidationError("action_probabilities: expected rows of probabilities summing to 1")
            taken = probabilities[np.arange(n), actions.astype(np.int64)]
            if not np.allclose(taken, propensities, rtol=1e-6, atol=1e-9):
                i = int(np.flatnonzero(~np.isclose(taken, propensities, rtol=1e-6, atol=1e-9))[0])
                raise ValidationError(f"action_probabilities: expected the logged action's entry to equal its propensity, "
                                      f"got {taken[i]} against {propensities[i]} at decision {i}")
            put("action_probabilities", probabilities)
        if self.decision_ids is not None:
            put("decision_ids", per_decision("decision_ids", np.asarray(self.decision_ids, dtype=np.int64)))
        if self.times is not None:
            put("times", per_decision("times", np.asarray(self.times, dtype="datetime64[ns]")))
        if self.feature_names is not None:
            names = tuple(str(name) for name in self.feature_names)
            if len(names) != features.shape[1]:
                raise ValidationError(f"feature_names: expected {features.shape[1]} names, got {len(names)}")
            put("feature_names", names)
        put("num_without_outcome", check_integer("num_without_outcome", self.num_without_outcome, minimum=0))

    @property
    def num_decisions(self) -> int:
        """n, the decisions with an observed reward."""
        return int(self.features.shape[0])


# ------------------------------------------------------------------ an OnlineAgent study: exported CSVs or the store
def _feature_names(path: str, shape: tuple[int, ...]) -> list[str]:
    """Names of a leaf's raveled entries: x0, x1 (x0_1 for (K, d)) for an array context, ['mood'][0] in a pytree."""
    if not path:
        return ["x" + "_".join(map(str, index)) for index in np.ndindex(*shape)] if shape else ["x"]
    return [path + "".join(f"[{i}]" for i in index) for index in np.ndindex(*shape)]


def _flatten_json_context(value: Any, row: int, label: str) -> tuple[np.ndarray, list[str]]:
    """Features and names of one context as the log stores it (a list, or an object by leaf path)."""
    leaves = [("", value)] if not isinstance(value, dict) else list(value.items())
    arrays, names = [], []
    for path, leaf in leaves:
        try:
            array = np.asarray(leaf, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValidationError(f"{label}: decision row {row} holds a context that is not numeric: {leaf!r}") from None
        arrays.append(array.ravel())
        names += _feature_names(path, array.shape)
    return np.concatenate(arrays) if arrays else np.zeros(0), names


def _num_actions_setting(hyperparameters: Any, where: str) -> int | None:
    value = hyperparameters.get("num_actions") if isinstance(hyperparameters, dict) else None
    return None if value is None else check_integer(f"{where} hyperparameters['num_actions']", value, minimum=2)


def _num_actions_from_snapshots(folder: Path, snapshot: str | Path | None) -> int | None:
    """``hyperparameters["num_actions"]`` of the export's ``study.json``, or of the OnlineAgent snapshot that
    logs into ``folder`` (an older version's snapshot records its ``log_dir``), if one records it."""
    if snapshot is None and (folder / "study.json").is_file():
        try:
            settings = json.loads((folder / "study.json").read_text(encoding="utf-8"))
        except ValueError as err:
            raise ValidationError(f"folder: {str(folder / 'study.json')!r} is not JSON: {err}") from None
        value = _num_actions_setting(settings.get("hyperparameters") if isinstance(settings, dict) else None,
                                     f"{str(folder / 'study.json')!r}")
        if value is not None:
            return value
    candidates = [Path(snapshot)] if snapshot is not None else sorted({*folder.glob("*.npz"), *folder.parent.glob("*.npz")})
    for path in candidates:
        try:
            _, meta = load_snapshot(path, kind=_SNAPSHOT_KIND)
        except ValidationError:
            if snapshot is not None:
                raise
            continue
        same_log = Path(meta.get("log_dir", "")).resolve() == folder.resolve()
        value = meta.get("hyperparameters", {}).get("num_actions")
        if (same_log or snapshot is not None) and value is not None:
            return check_integer(f"snapshot {str(path)!r} hyperparameters['num_actions']", value, minimum=2)
    return None


def _logged_study(decisions: list[dict[str, Any]], observations: list[dict[str, Any]], *, num_actions: int | None,
                  example_context: Any, label: str, where: str, missing_num_actions: str) -> LoggedStudy:
    """The observed decisions of rows as ``OnlineAgent`` writes them (from a CSV export or the store)."""
    import pandas as pd

    rewards: dict[int, float] = {}
    for row in observations:
        decision_id = int(row["decision_id"])
        reward = np.asarray(json.loads(row["reward"]), dtype=np.float64)
        if reward.shape != ():
            raise ValidationError(f"{label}: observation {row['sequence']} of decision {decision_id} has a reward of shape "
                                  f"{reward.shape}; off-policy evaluation needs a scalar reward per decision")
        if decision_id in rewards:
            raise ValidationError(f"{label}: decision {decision_id} has two observations in {where}")
        rewards[decision_id] = float(reward)
    observed = [row for row in decisions if int(row["decision_id"]) in rewards]
    if not observed:
        raise ValidationError(f"{label}: {where} holds {len(decisions)} decisions but none with an observed reward")
    if example_context is not None:
        spec = ContextSpec(example_context)
        contexts = [spec.decode(row["context"]) for row in observed]
        leaves = spec.stack(contexts)
        features = np.concatenate([leaf.reshape(len(observed), -1).astype(np.float64) for leaf in leaves], axis=1)
        names = [name for path, shape in zip(spec.paths, spec.shapes) for name in _feature_names(path, shape)]
    else:
        flat = [_flatten_json_context(json.loads(row["context"]), int(row["decision_id"]), label) for row in observed]
        names = flat[0][1]
        for (vector, row_names), row in zip(flat, observed):
            if row_names != names:
                raise ValidationError(f"{label}: decision {row['decision_id']} has a context of another structure than "
                                      f"decision {observed[0]['decision_id']} ({len(row_names)} against {len(names)} values)")
        features = np.stack([vector for vector, _ in flat])
    if num_actions is None:
        raise ValidationError(missing_num_actions)
    ids = np.asarray([int(row["decision_id"]) for row in observed], dtype=np.int64)
    return LoggedStudy(
        features=features,
        actions=np.asarray([int(row["action"]) for row in observed]),
        rewards=np.asarray([rewards[i] for i in ids]),
        propensities=np.asarray([float(row["propensity"]) for row in observed]),
        num_actions=num_actions,
        decision_ids=ids,
        times=pd.to_datetime([row["time"] for row in observed], utc=True).tz_localize(None).to_numpy(),
        feature_names=tuple(names),
        num_without_outcome=len(decisions) - len(observed),
    )


def load_decision_log(folder: str | Path, *, num_actions: int | None = None, snapshot: str | Path | None = None,
                      example_context: Any = None) -> LoggedStudy:
    """The decisions with a reward of a CSV export of an ``OnlineAgent`` study, as a ``LoggedStudy``.

    Parameters
    ----------
    folder : a folder written by ``OnlineAgent.export_csv`` (``decisions.csv``, ``observations.csv``,
        ``study.json``), or the log folder of an older version's ``OnlineAgent``.
    num_actions : K. The CSV files do not record it; without this argument it is read from the
        ``hyperparameters["num_actions"]`` of ``study.json``, or of an agent snapshot (``snapshot``, or an
        ``.npz`` snapshot in ``folder`` or its parent whose recorded ``log_dir`` is ``folder``).
    snapshot : an ``OnlineAgent.save`` file to read ``num_actions`` from.
    example_context : a context of the study, fixing the leaf order of pytree contexts
        (``ContextSpec``); by default the order the log stores them in, which is the same order.

    Returns
    -------
    LoggedStudy with one row per decision that has an observation, in decision order: the features
    are the context the decision was made in (not a context passed later to ``observe``), the reward
    the observation's (a scalar), the propensity the logged one. Decisions still waiting for a reward
    are dropped and counted in ``num_without_outcome``. ``times`` are the decision times.

    Raises
    ------
    ValidationError : no such folder; a folder without ``decisions.csv`` (a results folder of
        ``run_experiment`` is named as such: it carries no contexts); no decision with a reward; a
        non-scalar reward; two observations of one decision; ``num_actions`` neither given nor recorded;
        propensities outside (0, 1] (NaN: the policy did not report them).

    A last row cut short (an older version's log, crashed mid-write) is left out.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValidationError(f"folder: expected an OnlineAgent log folder, got {str(folder)!r} (no such folder)")
    if not (folder / "decisions.csv").is_file():
        if any((folder / name).is_file() for name in _RESULTS_FILES):
            raise ValidationError(f"folder: {str(folder)!r}: {NO_CONTEXTS}")
        raise ValidationError(f"folder: expected an OnlineAgent log folder with decisions.csv, got {str(folder)!r} without one")
    decisions, observations = read_csv_rows(folder / "decisions.csv"), read_csv_rows(folder / "observations.csv")
    if num_actions is None and decisions and observations:
        num_actions = _num_actions_from_snapshots(folder, snapshot)
    missing = (f"num_actions: the log in {str(folder)!r} does not record the number of actions (and no "
               "snapshot of its agent records hyperparameters['num_actions']); pass num_actions=K (--num-actions K)")
    return _logged_study(decisions, observations, num_actions=num_actions, example_context=example_context,
                         label="folder", where=repr(str(folder)), missing_num_actions=missing)


def load_store(store: str | Path, *, study: str | None = None, num_actions: int | None = None,
               example_context: Any = None) -> LoggedStudy:
    """The decisions with a reward of a study in a decision store (``study.store``), as a ``LoggedStudy``.

    Parameters
    ----------
    store : the store: an SQLite file path (``.db``, ``.sqlite``) or an SQLAlchemy URL.
    study : the study's name (default: the store's only study).
    num_actions : K (default: the study's ``hyperparameters["num_actions"]``).
    example_context : as in ``load_decision_log``.

    Returns
    -------
    The same ``LoggedStudy`` as ``load_decision_log`` of the study's CSV export: contexts the
    decisions were made in, actions, scalar rewards, logged propensities, decision ids and times.

    Raises
    ------
    ValidationError : no such file (a missing SQLite file is not created); not a store; no such
        study, or several and none named; and the errors of ``load_decision_log``.
    """
    from structbandits.study.store import DecisionStore

    with DecisionStore(store, create=False) as opened:
        info = opened.study(study)
        decisions, observations = opened.decisions(info), opened.outcomes(info)
    if num_actions is None:
        num_actions = _num_actions_setting(info.hyperparameters, f"study {info.name!r}")
    missing = (f"num_actions: study {info.name!r} does not record the number of actions (hyperparameters"
               "['num_actions']); pass num_actions=K (--num-actions K)")
    return _logged_study(decisions, observations, num_actions=num_actions, example_context=example_context,
                         label="store", where=f"study {info.name!r} of {str(store)!r}", missing_num_actions=missing)


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
