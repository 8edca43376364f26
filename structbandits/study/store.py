"""The decision store of a live study: decisions, outcomes and posterior snapshots in a database.

SQLAlchemy 2 Core (no ORM). A file path is an SQLite database (embedded: nothing to start), opened in
WAL mode with a busy timeout and ``synchronous=FULL`` (a commit is on disk before it returns); any
SQLAlchemy URL (``postgresql+psycopg://user@host/db``) works too. One store holds any number of
studies, each named. Tables (``study.store_schema``):

studies, decisions (one row per decision: context, action, propensity, model version, worker),
outcomes (one per observed decision, in a global sequence), snapshots (posterior states).

Every write is one transaction that holds the study's write lock: on SQLite ``BEGIN IMMEDIATE`` (the
file's single writer lock, taken at BEGIN, so reading the next id and inserting cannot interleave
with another process); elsewhere ``SELECT ... FOR UPDATE`` of the study's row. ``decide`` runs the
caller's code (catch up on new outcomes, act) inside that transaction, so a decision's id, the model
version it was made with and its row are atomic across processes; ``record_outcomes`` allocates
sequences the same way, so they are contiguous in commit order. Outcomes are idempotent by decision
id: the same reward (and update context) again is a no-op; another reward for an observed decision,
or an unknown decision id, is a ``ValidationError`` and nothing of the batch is written.

    store = DecisionStore("study.db")                       # or DecisionStore("postgresql+psycopg://...")
    info = store.open_study("mood", policy_name="lints", root_key=[0, 7], hyperparameters={...})
    with store.decide(info) as tx:                          # the write lock, one transaction
        new = tx.outcomes_after(applied)                    # apply them, then
        tx.insert_decision(tx.next_decision_id(), time, context_json, action, propensity, version, worker)
    store.record_outcomes(info, [(decision_id, reward_json, None)], time=..., worker=...)
    store.decisions(info); store.outcomes(info); store.export_csv(info, "export/")

``OnlineAgent`` (``study.online``) is the policy-side user of this API.

Layout: this module holds ``open_store`` and ``STORE_FILE``; the ``DecisionStore`` class is in
``study.decision_store``, ``DecisionTransaction``, ``UnknownDecisionError`` and
``ConflictingOutcomeError`` in ``study.store_transaction``. Every name in ``__all__`` still imports
from here (the same objects).
"""

from __future__ import annotations

from pathlib import Path

from structbandits.errors import ValidationError
from structbandits.study.decision_store import DecisionStore  # re-exported: imports from here keep working
from structbandits.study.store_transaction import (  # re-exported: imports from here keep working
    ConflictingOutcomeError,
    DecisionTransaction,
    UnknownDecisionError,
)

__all__ = ["STORE_FILE", "ConflictingOutcomeError", "DecisionStore", "DecisionTransaction", "UnknownDecisionError",
           "open_store"]

STORE_FILE = "study.db"  # the store inside a ``log_dir`` folder


def open_store(store: str | Path | DecisionStore | None, log_dir: str | Path | None = None, *,
               busy_timeout: float = 30.0) -> tuple[DecisionStore, bool]:
    """(the store, whether the caller opened it and so closes it) from exactly one of ``store`` (a file, a
    URL or an open ``DecisionStore``) and ``log_dir`` (a folder, the store being ``log_dir/study.db``)."""
    if (store is None) == (log_dir is None):
        raise ValidationError("store: expected exactly one of store (a database file, an SQLAlchemy URL or a "
                              f"DecisionStore) and log_dir (a folder), got store={store!r}, log_dir={log_dir!r}")
    if isinstance(store, DecisionStore):
        return store, False
    if log_dir is not None:
        folder = Path(log_dir)
        if folder.exists() and not folder.is_dir():
            raise ValidationError(f"log_dir: expected a folder, got the file {str(folder)!r}")
        folder.mkdir(parents=True, exist_ok=True)
        store = folder / STORE_FILE
    return DecisionStore(store, busy_timeout=busy_timeout), True
