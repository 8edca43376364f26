"""What may happen inside ``DecisionStore.decide`` (``DecisionTransaction``: reads and the decision
insert within one transaction holding the study's write lock), and the two errors of recording an
outcome (``UnknownDecisionError``, ``ConflictingOutcomeError``). Moved from ``study.store``, which
re-exports them and describes the store's transactions.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from structbandits.errors import ValidationError
from structbandits.study.store_schema import OutcomeRow, StudyInfo, decisions, float_or_none, outcomes, studies

if TYPE_CHECKING:  # annotations only: decision_store imports this module
    from structbandits.study.decision_store import DecisionStore

__all__ = ["ConflictingOutcomeError", "DecisionTransaction", "UnknownDecisionError"]


class UnknownDecisionError(ValidationError):
    """An outcome for a decision id the study does not have (a service answers 404)."""


class ConflictingOutcomeError(ValidationError):
    """Another reward (or update context) for a decision already observed (a service answers 409)."""


class DecisionTransaction:
    """What may happen inside ``DecisionStore.decide``: one transaction holding the study's write lock."""

    def __init__(self, store: DecisionStore, connection: sa.Connection, study: StudyInfo):
        self._store, self._connection, self.study = store, connection, study

    def num_outcomes(self) -> int:
        """Outcomes recorded for the study (the next outcome's sequence)."""
        return self._store._count(self._connection, outcomes, self.study.study_id)

    def outcomes_after(self, applied: int, up_to: int | None = None) -> list[OutcomeRow]:
        """Outcomes with sequence in [applied, up_to), in sequence order."""
        return self._store._outcomes_after(self._connection, self.study.study_id, applied, up_to)

    def next_decision_id(self) -> int:
        """The id the next decision gets: the number of decisions so far."""
        return self._store._count(self._connection, decisions, self.study.study_id)

    def context_spec(self) -> dict[str, Any] | None:
        """The study's context spec as stored now (another process may have set it)."""
        text = self._connection.execute(sa.select(studies.c.context_spec).where(
            studies.c.study_id == self.study.study_id)).scalar_one()
        return None if text is None else json.loads(text)

    def set_context_spec(self, spec: Mapping[str, Any]) -> None:
        """Record the contexts' structure (done by the study's first decision)."""
        self._connection.execute(sa.update(studies).where(studies.c.study_id == self.study.study_id)
                                 .values(context_spec=json.dumps(dict(spec), sort_keys=True)))

    def insert_decision(self, decision_id: int, time: str, context: str, action: int, propensity: float,
                        model_version: int, worker: str) -> None:
        """Insert one decision row (committed with the transaction)."""
        self._connection.execute(sa.insert(decisions).values(
            study_id=self.study.study_id, decision_id=int(decision_id), time=time, context=context, action=int(action),
            propensity=float_or_none(float(propensity)), model_version=int(model_version), worker=worker))
