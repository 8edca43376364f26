"""The decision store's schema: its tables, URLs, decoded rows and the snapshot blob format (``study.store``).

Tables (SQLAlchemy Core, portable across SQLite and PostgreSQL; JSON kept as text):

``studies``
    study_id, name (unique), policy_name, hyperparameters (JSON), context_spec (JSON, set by the first
    decision), reward_shape (JSON), state_structure (JSON, the policy state's tree and leaf shapes),
    root_key (JSON, two uint32), created (UTC, ISO 8601), schema_version.
``decisions``
    (study_id, decision_id) primary key, time, context (JSON), action, propensity (NULL when the
    policy reports none), model_version (the number of outcomes in the model that decided), worker
    (``host:pid`` of the process, or any name the caller gives).
``outcomes``
    (study_id, sequence) primary key: the global order in which outcomes were recorded, 0, 1, ...;
    decision_id (unique per study), time, reward (JSON), context (JSON of the context to update with,
    NULL for the decision's own), worker.
``snapshots``
    (study_id, model_version) primary key, the policy state after that many outcomes (``.npz`` bytes
    with a hash, never pickle), time.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import sqlalchemy as sa

from structbandits.errors import ValidationError
from structbandits.persistence import arrays_hash

__all__ = ["SCHEMA_VERSION", "OutcomeRow", "StudyInfo", "decisions", "outcomes", "pack_arrays", "schema", "snapshots",
           "store_url", "studies", "study_info", "unpack_arrays"]

SCHEMA_VERSION = 1
_SNAPSHOT_METADATA = "__metadata__"

schema = sa.MetaData()
studies = sa.Table(
    "studies", schema,
    sa.Column("study_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("policy_name", sa.String(200), nullable=False),
    sa.Column("hyperparameters", sa.Text, nullable=False),
    sa.Column("context_spec", sa.Text, nullable=True),
    sa.Column("reward_shape", sa.Text, nullable=False),
    sa.Column("state_structure", sa.Text, nullable=True),
    sa.Column("root_key", sa.String(64), nullable=False),
    sa.Column("created", sa.String(40), nullable=False),
    sa.Column("schema_version", sa.Integer, nullable=False),
)
decisions = sa.Table(
    "decisions", schema,
    sa.Column("study_id", sa.Integer, sa.ForeignKey("studies.study_id"), primary_key=True),
    sa.Column("decision_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("time", sa.String(40), nullable=False),
    sa.Column("context", sa.Text, nullable=False),
    sa.Column("action", sa.Integer, nullable=False),
    sa.Column("propensity", sa.Double, nullable=True),
    sa.Column("model_version", sa.BigInteger, nullable=False),
    sa.Column("worker", sa.String(200), nullable=False),
)
outcomes = sa.Table(
    "outcomes", schema,
    sa.Column("study_id", sa.Integer, sa.ForeignKey("studies.study_id"), primary_key=True),
    sa.Column("sequence", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("decision_id", sa.BigInteger, nullable=False),
    sa.Column("time", sa.String(40), nullable=False),
    sa.Column("reward", sa.Text, nullable=False),
    sa.Column("context", sa.Text, nullable=True),
    sa.Column("worker", sa.String(200), nullable=False),
    sa.UniqueConstraint("study_id", "decision_id", name="one_outcome_per_decision"),
    sa.ForeignKeyConstraint(["study_id", "decision_id"], ["decisions.study_id", "decisions.decision_id"]),
)
snapshots = sa.Table(
    "snapshots", schema,
    sa.Column("study_id", sa.Integer, sa.ForeignKey("studies.study_id"), primary_key=True),
    sa.Column("model_version", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("time", sa.String(40), nullable=False),
    sa.Column("state", sa.LargeBinary, nullable=False),
)


def store_url(location: str | Path, *, create: bool = True) -> sa.URL:
    """The SQLAlchemy URL of ``location``: a URL as given, or ``sqlite:///`` + the absolute file path
    (its folder is created, unless ``create`` is False, when the file must exist)."""
    if isinstance(location, str) and "://" in location:
        try:
            return sa.make_url(location)
        except sa.exc.ArgumentError as err:
            raise ValidationError(f"store: expected a file path or an SQLAlchemy URL, got {location!r}: {err}") from None
    if not isinstance(location, (str, Path)) or not str(location):
        raise ValidationError(f"store: expected a database file path or an SQLAlchemy URL, got {location!r}")
    path = Path(location).expanduser().resolve()
    if path.is_dir():
        raise ValidationError(f"store: expected a database file or URL, got the folder {str(path)!r} "
                              "(log_dir=FOLDER keeps the store in FOLDER/study.db)")
    if not create and not path.is_file():
        raise ValidationError(f"store: expected a decision store file or an SQLAlchemy URL, got {str(path)!r} (no such file)")
    path.parent.mkdir(parents=True, exist_ok=True)
    return sa.URL.create("sqlite", database=str(path))


@dataclass(frozen=True)
class StudyInfo:
    """A study's row of ``studies`` (decoded)."""

    study_id: int
    name: str
    policy_name: str
    hyperparameters: dict[str, Any]
    root_key: np.ndarray
    reward_shape: tuple[int, ...]
    context_spec: dict[str, Any] | None
    state_structure: dict[str, Any] | None
    created: str
    schema_version: int


class OutcomeRow(NamedTuple):
    """An outcome with what updating on it needs: its decision's action and the context to update with."""

    sequence: int
    decision_id: int
    action: int
    reward: str
    context: str  # the outcome's update context, or else its decision's context (JSON)


def study_info(row: Any) -> StudyInfo:
    """A ``studies`` row, decoded."""
    return StudyInfo(int(row.study_id), row.name, row.policy_name, json.loads(row.hyperparameters),
                     np.asarray(json.loads(row.root_key), dtype=np.uint32), tuple(json.loads(row.reward_shape)),
                     None if row.context_spec is None else json.loads(row.context_spec),
                     None if row.state_structure is None else json.loads(row.state_structure),
                     row.created, int(row.schema_version))


def pack_arrays(arrays: Mapping[str, np.ndarray], metadata: Mapping[str, Any]) -> bytes:
    """``.npz`` bytes of numeric arrays plus JSON metadata and their hash (the snapshot blob format)."""
    arrays = {name: np.asarray(value) for name, value in arrays.items()}
    document = json.dumps({"metadata": dict(metadata), "hash": arrays_hash(arrays)}, sort_keys=True)
    buffer = io.BytesIO()
    np.savez(buffer, **{_SNAPSHOT_METADATA: np.asarray(document)}, **arrays)
    return buffer.getvalue()


def unpack_arrays(blob: bytes, where: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Inverse of ``pack_arrays``; a blob that does not match its hash is a ``ValidationError``."""
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
        document = json.loads(str(arrays.pop(_SNAPSHOT_METADATA)[()]))
    except (OSError, ValueError, KeyError, EOFError) as err:
        raise ValidationError(f"{where}: expected a snapshot blob, got one that could not be read ({err})") from None
    if arrays_hash(arrays) != document.get("hash"):
        raise ValidationError(f"{where}: the snapshot's arrays do not match their recorded hash (a corrupted row)")
    return arrays, document["metadata"]


def float_or_none(value: float) -> float | None:
    return None if math.isnan(value) else float(value)  # SQLite keeps no NaN (it stores NULL)
