"""Loading an ``OnlineAgent`` study as a ``LoggedStudy``: from its CSV export (``load_decision_log``) or
straight from its decision store (``load_store``), with the context flattening and the look-up of K
(``hyperparameters["num_actions"]``) they share. Moved from ``study.logged``, which re-exports both
loaders and describes the sources.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from structbandits.errors import ValidationError, check_integer
from structbandits.persistence import load_snapshot
from structbandits.study.decision_log import ContextSpec, read_csv_rows
from structbandits.study.logged_study import _RESULTS_FILES, NO_CONTEXTS, LoggedStudy

__all__ = ["load_decision_log", "load_store"]

_SNAPSHOT_KIND = "structbandits.OnlineAgent"  # what OnlineAgent.save writes (study.agent_checks.SNAPSHOT_KIND)


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
