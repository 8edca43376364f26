"""``DecisionStore``, the database of a live study's decisions, outcomes and snapshots (moved from
``study.store``, which re-exports it; its docstring describes the locking, the transactions and the
idempotent outcomes this class implements). SQLAlchemy 2 Core; the tables are ``study.store_schema``'s.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from structbandits.errors import ValidationError
from structbandits.study.store_schema import (
    SCHEMA_VERSION,
    OutcomeRow,
    StudyInfo,
    decisions,
    outcomes,
    schema,
    snapshots,
    store_url,
    studies,
    study_info,
)
from structbandits.study.store_transaction import ConflictingOutcomeError, DecisionTransaction, UnknownDecisionError

__all__ = ["DecisionStore"]

_LOCK_OPTION = "structbandits_write_lock"


class DecisionStore:
    """A database of studies' decisions, outcomes and snapshots (module docstring), safe across processes.

    Parameters
    ----------
    location : an SQLite file path (created if missing; WAL mode) or any SQLAlchemy URL.
    busy_timeout : seconds a write waits for another process's transaction before failing.
    create : create the file and the tables where missing (default); False opens an existing store
        only, changing nothing (what readers such as ``study.logged.load_store`` do).

    A store opens a connection pool; ``close()`` (or ``with DecisionStore(...) as store``) releases it.
    Open one per process: a store does not survive ``fork`` (``spawn`` processes open their own).
    """

    def __init__(self, location: str | Path, *, busy_timeout: float = 30.0, create: bool = True):
        if not isinstance(busy_timeout, (int, float)) or isinstance(busy_timeout, bool) or not busy_timeout > 0:
            raise ValidationError(f"busy_timeout: expected a positive number of seconds, got {busy_timeout!r}")
        self.url = store_url(location, create=create)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        try:
            self.engine = sa.create_engine(self.url, **({"connect_args": {"timeout": float(busy_timeout)}}
                                                        if self.is_sqlite else {"pool_pre_ping": True}))
        except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError) as err:
            raise ValidationError(f"store: cannot open {self.url.render_as_string(hide_password=True)!r}: {err}") from None
        if self.is_sqlite:
            milliseconds = int(busy_timeout * 1000)

            @sa.event.listens_for(self.engine, "connect")
            def _connect(dbapi_connection: Any, _record: Any) -> None:
                dbapi_connection.isolation_level = None  # the driver's own BEGIN off: ours below
                cursor = dbapi_connection.cursor()
                cursor.execute(f"PRAGMA busy_timeout = {milliseconds}")
                if create:  # persistent in the file: set by whoever creates the store, not by its readers
                    cursor.execute("PRAGMA journal_mode = WAL")
                cursor.execute("PRAGMA synchronous = FULL")
                cursor.execute("PRAGMA foreign_keys = ON")
                cursor.close()

            @sa.event.listens_for(self.engine, "begin")
            def _begin(connection: sa.Connection) -> None:
                # IMMEDIATE takes the writer lock at BEGIN: no other process writes between our reads and inserts
                immediate = connection.get_execution_options().get(_LOCK_OPTION, False)
                connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        try:
            self._create_schema() if create else self._check_schema()
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"DecisionStore({self.url.render_as_string(hide_password=True)!r})"

    def __enter__(self) -> DecisionStore:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    def close(self) -> None:
        """Release the store's connections (on SQLite the last one checkpoints the WAL into the file)."""
        self.engine.dispose()

    # ------------------------------------------------------------------ transactions
    @contextmanager
    def _reading(self) -> Iterator[sa.Connection]:
        with self.engine.connect() as connection, connection.begin():
            yield connection

    @contextmanager
    def _writing(self, study: StudyInfo | None = None) -> Iterator[sa.Connection]:
        with self.engine.connect() as connection:
            connection.execution_options(**{_LOCK_OPTION: True})
            with connection.begin():
                if study is not None and not self.is_sqlite:  # SQLite: BEGIN IMMEDIATE already locks
                    connection.execute(sa.select(studies.c.study_id).where(
                        studies.c.study_id == study.study_id).with_for_update())
                yield connection

    def _check_schema(self) -> None:
        try:
            missing = [table for table in schema.tables if not sa.inspect(self.engine).has_table(table)]
        except sa.exc.DBAPIError as err:
            raise ValidationError(f"store: cannot read {self!r}: {err.orig}") from None
        if missing:
            raise ValidationError(f"store: expected a decision store, got {self!r} without the tables {missing}")

    def _create_schema(self) -> None:
        try:
            with self._writing() as connection:
                schema.create_all(connection, checkfirst=True)
        except sa.exc.DBAPIError as err:
            try:  # another process may have created them between our check and our CREATE
                created = not self.is_sqlite and sa.inspect(self.engine).has_table("snapshots")
            except sa.exc.DBAPIError:
                created = False
            if not created:
                raise ValidationError(f"store: cannot create the tables in {self!r}: {err.orig}") from None

    # ------------------------------------------------------------------ studies
    def study_names(self) -> list[str]:
        """Names of the studies in the store."""
        with self._reading() as connection:
            return list(connection.execute(sa.select(studies.c.name).order_by(studies.c.study_id)).scalars())

    def study(self, name: str | None = None) -> StudyInfo:
        """The study called ``name`` (None: the store's only study)."""
        with self._reading() as connection:
            rows = connection.execute(sa.select(studies) if name is None
                                      else sa.select(studies).where(studies.c.name == name)).all()
        if name is None and len(rows) != 1:
            raise ValidationError(f"study: {self!r} holds {len(rows)} studies "
                                  f"({', '.join(repr(r.name) for r in rows) or 'none'}); name one")
        if not rows:
            raise ValidationError(f"study: expected the name of a study in {self!r} "
                                  f"({', '.join(map(repr, self.study_names())) or 'none yet'}), got {name!r}")
        info = study_info(rows[0])
        if info.schema_version != SCHEMA_VERSION:
            raise ValidationError(f"schema_version: study {info.name!r} was written with store schema "
                                  f"{info.schema_version}, this version reads {SCHEMA_VERSION}")
        return info

    def open_study(self, name: str, *, policy_name: str, root_key: Any, hyperparameters: Mapping[str, Any],
                   reward_shape: Sequence[int] = (), state_structure: Mapping[str, Any] | None = None,
                   created: str = "") -> StudyInfo:
        """The study ``name``, created with these settings if the store has none of that name.

        An existing study is returned as stored; comparing its settings with the caller's is the caller's
        job (``OnlineAgent`` does, naming the setting that differs).
        """
        if not isinstance(name, str) or not name or len(name) > 200:
            raise ValidationError(f"study: expected a non-empty study name of at most 200 characters, got {name!r}")
        if name in self.study_names():
            return self.study(name)
        row = dict(name=name, policy_name=policy_name, hyperparameters=json.dumps(dict(hyperparameters), sort_keys=True),
                   context_spec=None, reward_shape=json.dumps([int(n) for n in reward_shape]),
                   state_structure=None if state_structure is None else json.dumps(dict(state_structure), sort_keys=True),
                   root_key=json.dumps([int(k) for k in np.asarray(root_key, dtype=np.uint32)]), created=created,
                   schema_version=SCHEMA_VERSION)
        try:
            with self._writing() as connection:
                if connection.execute(sa.select(studies.c.study_id).where(studies.c.name == name)).first() is None:
                    connection.execute(sa.insert(studies).values(**row))
        except sa.exc.IntegrityError:
            pass  # another process created it first (PostgreSQL: the unique name): read theirs
        return self.study(name)

    # ------------------------------------------------------------------ decisions
    @contextmanager
    def decide(self, study: StudyInfo) -> Iterator[DecisionTransaction]:
        """One transaction holding ``study``'s write lock; commits when the block ends without an error."""
        with self._writing(study) as connection:
            yield DecisionTransaction(self, connection, study)

    @staticmethod
    def _count(connection: sa.Connection, table: sa.Table, study_id: int) -> int:
        # ids and sequences are contiguous from 0, so the count is max + 1: one index lookup, not a scan
        key = table.c.decision_id if table is decisions else table.c.sequence
        return int(connection.execute(sa.select(sa.func.coalesce(sa.func.max(key), -1) + 1)
                                      .where(table.c.study_id == study_id)).scalar_one())

    def counts(self, study: StudyInfo) -> tuple[int, int]:
        """(number of decisions, number of outcomes) of ``study``."""
        with self._reading() as connection:
            return (self._count(connection, decisions, study.study_id),
                    self._count(connection, outcomes, study.study_id))

    def decision(self, study: StudyInfo, decision_id: int) -> tuple[str, int] | None:
        """(context JSON, action) of one decision, or None when the study has no such decision."""
        with self._reading() as connection:
            row = connection.execute(sa.select(decisions.c.context, decisions.c.action).where(
                decisions.c.study_id == study.study_id, decisions.c.decision_id == int(decision_id))).first()
        return None if row is None else (row.context, int(row.action))

    def pending(self, study: StudyInfo) -> dict[int, int]:
        """Decisions without an outcome: decision id -> action, in id order."""
        observed = sa.select(outcomes.c.decision_id).where(outcomes.c.study_id == study.study_id)
        with self._reading() as connection:
            rows = connection.execute(sa.select(decisions.c.decision_id, decisions.c.action).where(
                decisions.c.study_id == study.study_id, decisions.c.decision_id.not_in(observed))
                .order_by(decisions.c.decision_id)).all()
        return {int(r.decision_id): int(r.action) for r in rows}

    # ------------------------------------------------------------------ outcomes
    def _outcomes_after(self, connection: sa.Connection, study_id: int, applied: int,
                        up_to: int | None) -> list[OutcomeRow]:
        query = (sa.select(outcomes.c.sequence, outcomes.c.decision_id, decisions.c.action, outcomes.c.reward,
                           sa.func.coalesce(outcomes.c.context, decisions.c.context).label("context"))
                 .join(decisions, sa.and_(decisions.c.study_id == outcomes.c.study_id,
                                          decisions.c.decision_id == outcomes.c.decision_id))
                 .where(outcomes.c.study_id == study_id, outcomes.c.sequence >= applied)
                 .order_by(outcomes.c.sequence))
        if up_to is not None:
            query = query.where(outcomes.c.sequence < up_to)
        return [OutcomeRow(int(r.sequence), int(r.decision_id), int(r.action), r.reward, r.context)
                for r in connection.execute(query)]

    def outcomes_after(self, study: StudyInfo, applied: int, up_to: int | None = None) -> list[OutcomeRow]:
        """Outcomes with sequence in [applied, up_to) (all after ``applied`` when None), in sequence order."""
        with self._reading() as connection:
            return self._outcomes_after(connection, study.study_id, applied, up_to)

    def record_outcomes(self, study: StudyInfo, items: Sequence[tuple[int, str, str | None]], *, time: str,
                        worker: str) -> list[int | None]:
        """Record outcomes ``(decision_id, reward JSON, update-context JSON or None)`` in one transaction.

        Returns each item's new sequence number, or None where the same outcome was already recorded
        (idempotent). Raises ``ValidationError`` (and writes nothing) for an unknown decision id or a
        decision already observed with another reward or update context.
        """
        sequences: list[int | None] = []
        with self._writing(study) as connection:
            next_sequence = self._count(connection, outcomes, study.study_id)
            num_decisions = self._count(connection, decisions, study.study_id)
            for index, (decision_id, reward, context) in enumerate(items):
                label = f"decision_id[{index}]" if len(items) > 1 else "decision_id"
                if not 0 <= decision_id < num_decisions:
                    raise UnknownDecisionError(f"{label}: expected the id of a decision of study {study.name!r} "
                                               f"(0 to {num_decisions - 1}), got unknown id {decision_id}")
                existing = connection.execute(sa.select(outcomes.c.reward, outcomes.c.context).where(
                    outcomes.c.study_id == study.study_id, outcomes.c.decision_id == decision_id)).first()
                if existing is not None:
                    if (existing.reward, existing.context) != (reward, context):
                        raise ConflictingOutcomeError(
                            f"{label}: decision {decision_id} has already been observed with reward {existing.reward}"
                            f"{'' if existing.context is None else ' and context ' + existing.context}, got {reward}"
                            f"{'' if context is None else ' and context ' + context} (a conflicting duplicate)")
                    sequences.append(None)
                    continue
                connection.execute(sa.insert(outcomes).values(
                    study_id=study.study_id, sequence=next_sequence, decision_id=int(decision_id), time=time,
                    reward=reward, context=context, worker=worker))
                sequences.append(next_sequence)
                next_sequence += 1
        return sequences

    # ------------------------------------------------------------------ snapshots
    def put_snapshot(self, study: StudyInfo, model_version: int, blob: bytes, *, time: str) -> bool:
        """Store the state after ``model_version`` outcomes unless one is stored; True if this call wrote it."""
        with self._writing(study) as connection:
            present = connection.execute(sa.select(snapshots.c.model_version).where(
                snapshots.c.study_id == study.study_id, snapshots.c.model_version == int(model_version))).first()
            if present is None:
                connection.execute(sa.insert(snapshots).values(study_id=study.study_id, model_version=int(model_version),
                                                               time=time, state=blob))
        return present is None

    def latest_snapshot(self, study: StudyInfo, at_most: int) -> tuple[int, bytes] | None:
        """(model_version, blob) of the newest snapshot with model_version <= ``at_most``, or None."""
        with self._reading() as connection:
            row = connection.execute(sa.select(snapshots.c.model_version, snapshots.c.state).where(
                snapshots.c.study_id == study.study_id, snapshots.c.model_version <= int(at_most))
                .order_by(snapshots.c.model_version.desc()).limit(1)).first()
        return None if row is None else (int(row.model_version), bytes(row.state))

    # ------------------------------------------------------------------ reading it all
    def decisions(self, study: StudyInfo) -> list[dict[str, Any]]:
        """Every decision row of ``study`` in id order (propensity NaN where none was reported)."""
        with self._reading() as connection:
            rows = connection.execute(sa.select(decisions.c.decision_id, decisions.c.time, decisions.c.context,
                                                decisions.c.action, decisions.c.propensity, decisions.c.model_version,
                                                decisions.c.worker)
                                      .where(decisions.c.study_id == study.study_id).order_by(decisions.c.decision_id))
            out = [dict(row._mapping) for row in rows]
        for row in out:
            row["propensity"] = math.nan if row["propensity"] is None else float(row["propensity"])
        return out

    def outcomes(self, study: StudyInfo) -> list[dict[str, Any]]:
        """Every outcome row of ``study`` in sequence order (context None: the decision's own)."""
        with self._reading() as connection:
            rows = connection.execute(sa.select(outcomes.c.sequence, outcomes.c.decision_id, outcomes.c.time,
                                                outcomes.c.reward, outcomes.c.context, outcomes.c.worker)
                                      .where(outcomes.c.study_id == study.study_id).order_by(outcomes.c.sequence))
            return [dict(row._mapping) for row in rows]

    def export_csv(self, study: StudyInfo, folder: str | Path) -> Path:
        """Write ``decisions.csv``, ``observations.csv`` and ``study.json`` of ``study`` to ``folder``.

        The CSV columns are those ``study.logged.load_decision_log`` reads (``study.decision_log``);
        ``study.json`` holds the study's settings (its ``hyperparameters["num_actions"]`` gives K).
        """
        from structbandits.study.decision_log import write_csv_log

        settings = {"name": study.name, "policy_name": study.policy_name, "hyperparameters": study.hyperparameters,
                    "reward_shape": list(study.reward_shape), "context_spec": study.context_spec,
                    "created": study.created, "schema_version": study.schema_version,
                    "store": self.url.render_as_string(hide_password=True)}
        return write_csv_log(folder, self.decisions(study), self.outcomes(study), settings)
