"""An online agent for real studies: any ``Policy`` behind ``select`` / ``observe``, backed by a decision store.

    agent = OnlineAgent(policy, key=0, store="study.db", name="lints", hyperparameters={...})
    decision = agent.select(context)              # committed to the store before it is returned
    agent.observe(decision.decision_id, reward)   # whenever the reward arrives, in any order, from any process
    agent.export_csv("study/export")              # decisions.csv, observations.csv, study.json
    agent = OnlineAgent(policy, store="study.db", name="lints")   # another process, or after a restart

The store (``study.store``: an SQLite file by default, or any SQLAlchemy URL) is the study's record, and
several processes may run agents on one study at once. The posterior is a function of the ordered
outcomes only (``study.replay``): inside the decision's transaction, which holds the study's write
lock, an agent first applies the outcomes it has not applied yet, so decision i is made by the model
of exactly the first ``model_version`` outcomes, with ``fold_in(decision stream, i)``. A restarted
agent rebuilds its posterior from the store and continues bit-identically. ``observe`` records rewards
idempotently (the same reward twice is a no-op, another reward an error), then catches up.
"""

from __future__ import annotations

import functools
import json
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

from structbandits.agents.protocol import Policy
from structbandits.errors import ValidationError, check_finite, check_integer, check_positive
from structbandits.persistence import pytree_to_arrays, save_snapshot
from structbandits.study.agent_checks import (
    SNAPSHOT_KIND,
    batch_arguments,
    check_first_reward,
    check_study,
    first_context_spec,
    read_agent_file,
)
from structbandits.study.decision_log import ContextSpec, utc_now
from structbandits.study.replay import OutcomeReplay, json_settings, root_key, spec_from_description
from structbandits.study.store import DecisionStore, UnknownDecisionError, open_store

__all__ = ["Decision", "OnlineAgent"]



class Decision(NamedTuple):
    """One decision, as returned by ``OnlineAgent.select`` (and committed to the store before it was returned).

    Attributes
    ----------
    decision_id : its id (0, 1, ... within the study); pass it to ``observe`` with the reward.
    action : the chosen arm.
    propensity : the probability the policy chose it with (NaN when the policy does not report one).
    model_version : the number of outcomes in the model that made the decision.
    time : UTC time of the decision, ISO 8601.
    """

    decision_id: int
    action: int
    propensity: float
    model_version: int
    time: str


def _one_at_a_time(method: Callable) -> Callable:
    # Threads sharing one agent (a service's worker threads) take turns: its model is one mutable state.
    @functools.wraps(method)
    def serialised(self: OnlineAgent, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)
    return serialised


class OnlineAgent:
    """A ``Policy`` for a live study: ``select(context)``, ``observe(decision_id, reward)``, backed by a store.

    Parameters
    ----------
    policy : any ``structbandits.agents.Policy``.
    key : an integer seed or a ``jax.random.PRNGKey``; all of the study's randomness derives from it.
        None reopens an existing study with its recorded key.
    store : an SQLite file path (created if missing), an SQLAlchemy URL, or an open ``DecisionStore``.
    name : the model's name (e.g. "lints"); a study only reopens with the same name.
    study : the study's name in the store (default: ``name``); one store can hold several studies.
    log_dir : instead of ``store``: a folder, the store being ``log_dir/study.db``.
    hyperparameters : JSON-able settings the policy was built with; recorded with a new study and,
        when given, checked against an existing one.
    example_context : a context, fixing the structure, shapes and dtypes every context must have
        (default: the first context passed to ``select``). Needed to reopen a study of pytree contexts.
    reward_shape : the shape of a reward (default ``()``, a scalar, what every built-in policy takes).
    update_every : apply outcomes in blocks of this many (default 1: every outcome at once).
    update_interval_s : apply outcomes on a schedule instead: outcomes are recorded at once, and the model
        catches up with all of them when at least this many seconds have passed since it last did (as
        deployed studies update nightly); None (default): at every decision and outcome.
    snapshot_every : store the posterior state every this many outcomes (0: never; see ``snapshot``).
    from_snapshot : start from the newest stored snapshot (True) or replay every outcome (False).
    worker : the name recorded with this agent's rows (default ``host:pid``).
    busy_timeout : seconds to wait for another process's transaction (SQLite).

    Several agents (processes) may share one study: ids never repeat and the posterior is the same
    function of the ordered outcomes in every one of them (module docstring). Threads may share one
    agent: its methods take turns.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import jax.numpy as jnp
    >>> from structbandits.agents import lin_ts
    >>> from structbandits.study import OnlineAgent
    >>> study = pathlib.Path(tempfile.mkdtemp())
    >>> policy = lin_ts(jnp.zeros(2), jnp.eye(2), 0.5, num_actions=3)
    >>> agent = OnlineAgent(policy, key=0, store=study / "study.db", name="lints")
    >>> first, second = agent.select([0.3, -1.0]), agent.select([1.0, 0.2])
    >>> agent.observe([second.decision_id, first.decision_id], [0.7, -0.1])   # late, batched, out of order
    >>> agent.close()
    >>> agent = OnlineAgent(policy, store=study / "study.db", name="lints")   # continues bit-identically
    >>> agent.model_version, agent.num_decisions
    (2, 2)
    """

    def __init__(self, policy: Policy, key: Any = None, store: str | Path | DecisionStore | None = None, *,
                 name: str, study: str | None = None, log_dir: str | Path | None = None,
                 hyperparameters: Mapping[str, Any] | None = None, example_context: Any = None,
                 reward_shape: Sequence[int] | None = None, update_every: int = 1, snapshot_every: int = 0,
                 update_interval_s: float | None = None,
                 from_snapshot: bool = True, worker: str | None = None, busy_timeout: float = 30.0,
                 _initial: tuple[int, Any, list | None] | None = None):
        if not all(callable(getattr(policy, part, None)) for part in ("init", "act", "update")):
            raise ValidationError(f"policy: expected a Policy (init, act, update), got {type(policy).__name__}")
        if not isinstance(name, str) or not name:
            raise ValidationError(f"name: expected a non-empty string naming the model, got {name!r}")
        self.policy, self.name = policy, name
        self._lock = threading.RLock()
        check_integer("update_every", update_every, minimum=1)
        check_integer("snapshot_every", snapshot_every, minimum=0)
        if update_interval_s is not None:
            update_interval_s = float(check_positive("update_interval_s", update_interval_s))
        self.update_interval_s = update_interval_s
        self._next_update = -math.inf  # time.monotonic() at which a scheduled catch-up is due (now: the first)
        self.worker = f"{socket.gethostname()}:{os.getpid()}" if worker is None else str(worker)
        self.store, self._owns_store = open_store(store, log_dir, busy_timeout=busy_timeout)
        try:
            self._open_study(key, name if study is None else study, hyperparameters, example_context, reward_shape,
                             dict(update_every=update_every, snapshot_every=snapshot_every), _initial is not None)
            self._restore(_initial, from_snapshot)
        except BaseException:
            self.close()
            raise

    def _open_study(self, key: Any, study: str, hyperparameters: Mapping[str, Any] | None, example_context: Any,
                    reward_shape: Sequence[int] | None, blocks: dict[str, int], must_exist: bool) -> None:
        """Open (or create) the study, checking that it was made by this model, key, settings and policy."""
        known = study in self.store.study_names()
        if must_exist and not known:
            raise ValidationError(f"store: the snapshot's study {study!r} is not in {self.store!r} (another store?)")
        if key is None and not known:
            raise ValidationError(f"key: study {study!r} is not in {self.store!r} yet; a new study needs a key "
                                  "(an integer seed or a jax.random.PRNGKey)")
        self._root = root_key(self.store.study(study).root_key if key is None else key)
        self._act = jax.jit(self.policy.act)
        self._model = OutcomeReplay(self.policy, self._root, **blocks)
        given = None if hyperparameters is None else json_settings("hyperparameters", hyperparameters)
        shape = None if reward_shape is None else tuple(check_integer("reward_shape", n, minimum=1) for n in reward_shape)
        self._info = info = self.store.open_study(study, policy_name=self.name, root_key=self._root,
                                                  hyperparameters=given or {}, reward_shape=shape or (),
                                                  state_structure=self._model.structure, created=utc_now())
        check_study(info, f"study {study!r} in {self.store!r}", name=self.name, root=self._root, hyperparameters=given,
                    reward_shape=shape, state_structure=self._model.structure)
        self.hyperparameters = info.hyperparameters
        self._reward_shape = info.reward_shape
        self._context_spec = spec_from_description(info.context_spec, example_context)
        self._example_context = example_context
        self._warm = False
        self._reward_checked = False

    def _restore(self, initial: tuple[int, Any, list | None] | None, from_snapshot: bool) -> None:
        """Start from the newest state available (a file snapshot, a stored one, or none), then catch up."""
        total, name = self.store.counts(self._info)[1], self._info.name
        if initial is not None and initial[0] > total:
            raise ValidationError(f"store: {self.store!r} holds {total} outcomes of study {name!r}, fewer "
                                  f"than the snapshot's {initial[0]} (another study's store?)")
        stored = self.store.latest_snapshot(self._info, total) if from_snapshot else None
        if stored is not None and (initial is None or stored[0] > initial[0]):
            self._model.restore_blob(stored[1], stored[0], f"snapshot {stored[0]} of study {name!r}")
        elif initial is not None:
            version, (arrays, structure), last = initial
            self._model.restore(arrays, structure, version, last)
        if self._model.applied:
            (row,) = self.store.outcomes_after(self._info, self._model.applied - 1, self._model.applied)
            if initial is not None and self._model.applied == initial[0] and [row.decision_id, row.reward] != initial[2]:
                raise ValidationError(f"store: outcome {row.sequence} of study {name!r} is decision {row.decision_id} "
                                      f"with reward {row.reward}, the snapshot's was {initial[2]}: the snapshot and the "
                                      "store do not belong together")
            self._model.last_outcome = [row.decision_id, row.reward]
        self.restored_from = self._model.applied  # the model version the agent started from (0: replayed from zero)
        self.catch_up()

    def close(self) -> None:
        """Release the store's connections (when this agent opened the store)."""
        if self._owns_store:
            self.store.close()

    def __enter__(self) -> OnlineAgent:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ what the agent knows
    @property
    def state(self) -> Any:
        """The policy's state after ``model_version`` outcomes (``catch_up()`` applies newer ones)."""
        return self._model.state

    @property
    def study(self) -> str:
        """The study's name in the store."""
        return self._info.name

    @property
    def num_decisions(self) -> int:
        """Decisions in the study so far, by any process (the next decision's id)."""
        return self.store.counts(self._info)[0]

    @property
    def model_version(self) -> int:
        """Outcomes applied to this agent's model so far."""
        return self._model.applied

    @property
    def pending(self) -> dict[int, int]:
        """Decisions of the study still waiting for their reward: decision id -> action."""
        return self.store.pending(self._info)

    def decisions(self):
        """The study's decisions as a pandas DataFrame (one row per decision, context as JSON, worker)."""
        import pandas as pd

        return pd.DataFrame(self.store.decisions(self._info), columns=["decision_id", "time", "context", "action",
                                                                       "propensity", "model_version", "worker"])

    def outcomes(self):
        """The study's outcomes as a pandas DataFrame, in sequence order (context None: the decision's own)."""
        import pandas as pd

        return pd.DataFrame(self.store.outcomes(self._info),
                            columns=["sequence", "decision_id", "time", "reward", "context", "worker"])

    def export_csv(self, folder: str | Path) -> Path:
        """Write the study as ``decisions.csv``, ``observations.csv`` and ``study.json`` (``load_decision_log`` reads it)."""
        return self.store.export_csv(self.store.study(self._info.name), folder)

    # ------------------------------------------------------------------ catching up with the store
    def _spec_or_stored(self) -> ContextSpec:
        if self._context_spec is None:
            self._context_spec = spec_from_description(self.store.study(self._info.name).context_spec,
                                                       self._example_context)
            if self._context_spec is None:
                raise ValidationError(f"store: study {self._info.name!r} has outcomes but no recorded context structure")
        return self._context_spec

    def _write_due_snapshot(self) -> None:
        due = self._model.take_snapshot()
        if due is not None:
            self.store.put_snapshot(self._info, due[0], due[1], time=utc_now())

    @_one_at_a_time
    def catch_up(self, *, force: bool = False) -> int:
        """Apply, in sequence order, the study's outcomes this agent has not applied yet; returns how many.

        With ``update_every=N`` only whole blocks of N are applied (the rest wait for their block). With
        ``update_interval_s`` nothing is applied until the interval has passed since the last catch-up,
        unless ``force``."""
        if self.update_interval_s is not None:
            if not force and time.monotonic() < self._next_update:
                return 0
            self._next_update = time.monotonic() + self.update_interval_s
        before = self._model.applied
        rows = self.store.outcomes_after(self._info, before)
        self._model.apply(rows[: self._model.target(before + len(rows)) - before], self._spec_or_stored, self.study)
        self._write_due_snapshot()
        return self._model.applied - before

    @_one_at_a_time
    def snapshot(self) -> int:
        """Store the current state (after ``model_version`` outcomes) in the store; returns that version."""
        self.store.put_snapshot(self._info, self._model.applied, self._model.blob(), time=utc_now())
        return self._model.applied

    # ------------------------------------------------------------------ deciding and learning
    def _spec(self, context: Any) -> ContextSpec:
        if self._context_spec is None:  # once: a context the policy cannot act on fails here, not inside jit
            self._context_spec = first_context_spec(self.policy, self.state, self._model.decision_root, context)
        return self._context_spec

    @_one_at_a_time
    def warm_up(self, context: Any) -> None:
        """Check ``context`` against the policy and the study and compile ``act`` and ``update`` for it, so
        the first decision does not wait for the compiler (a service does this before it takes requests)."""
        self._warm_up(self._spec(context).validate(context))

    def _warm_up(self, context: Any) -> None:
        """Compile act and update before the first decision's transaction, so no lock is held while compiling."""
        if not self._warm:
            self._act.lower(self.state, self._model.decision_root, context).compile()
            self._model.warm_up(context, self._reward_shape)
            self._warm = True

    def _decide(self, context: Any, decision_id: int) -> tuple[int, float]:
        key = jax.random.fold_in(self._model.decision_root, decision_id)
        action, info = self._act(self.state, key, context)
        return int(action), float(info.propensity)

    @_one_at_a_time
    def select(self, context: Any) -> Decision:
        """Decide for ``context``; the decision is committed to the store before it is returned.

        Parameters
        ----------
        context : what the policy acts on: (d,), (K, d), or the policy's pytree of arrays; finite.

        Returns
        -------
        Decision(decision_id, action, propensity, model_version, time).
        """
        spec = self._spec(context)
        context = spec.validate(context)
        self._warm_up(context)
        self.catch_up()  # most of the work outside the lock; the transaction applies what arrived since
        with self.store.decide(self._info) as transaction:
            if self.update_interval_s is None:  # on a schedule, only catch_up applies outcomes
                self._model.apply(transaction.outcomes_after(self.model_version,
                                                             self._model.target(transaction.num_outcomes())),
                                  self._spec_or_stored, self.study)
            stored = transaction.context_spec()
            if stored is None:
                transaction.set_context_spec(spec.describe())
            elif stored != spec.describe():
                raise ValidationError(f"context: study {self._info.name!r} takes contexts like {stored}, "
                                      f"got {spec.describe()}")
            decision_id = transaction.next_decision_id()
            action, propensity = self._decide(context, decision_id)
            decision = Decision(decision_id, action, propensity, self.model_version, utc_now())
            transaction.insert_decision(decision_id, decision.time, spec.encode(context), action, propensity,
                                        self.model_version, self.worker)
        self._write_due_snapshot()
        return decision

    def _check_reward(self, reward: Any, name: str, decision_id: int) -> np.ndarray:
        reward = check_finite(name, reward)
        if reward.shape != self._reward_shape:
            raise ValidationError(f"{name}: expected shape {self._reward_shape}"
                                  f"{' (a scalar)' if not self._reward_shape else ''}, got shape {reward.shape}")
        if not self._reward_checked:  # once: a reward the policy cannot learn from fails here, not inside jit
            context_json, action = self.store.decision(self._info, decision_id)
            check_first_reward(self.policy, self.state, self._spec_or_stored().decode(context_json), action, reward, name)
            self._reward_checked = True
        return reward

    @_one_at_a_time
    def observe(self, decision_id: int | Sequence[int], reward: Any, *, context: Any = None) -> None:
        """Record the reward of a decision (or of several, in the given order), then catch up.

        Parameters
        ----------
        decision_id : the id of a decision of the study (made by any process), or a sequence of ids (a batch).
        reward : its reward, or a sequence of rewards matching ``decision_id``; finite.
        context : the context to update with, if it differs from the decision's (e.g. a delivered
            treatment observed afterwards); a sequence of them for a batch; default: the decision's.

        The whole batch is validated and then recorded in one transaction (all or nothing). Recording
        the same reward (and context) for a decision again is a no-op; another reward for an observed
        decision, or an unknown id, is a ``ValidationError``.
        """
        batch, ids, rewards, contexts = batch_arguments(decision_id, reward, context)
        num_decisions = self.num_decisions
        if num_decisions == 0:
            raise UnknownDecisionError("decision_id: no decision has been made yet; call select(context) before observe")
        items: list[tuple[int, str, str | None]] = []
        for i, (one_id, one_reward, one_context) in enumerate(zip(ids, rewards, contexts)):
            suffix = f"[{i}]" if batch else ""
            one_id = check_integer(f"decision_id{suffix}", one_id)
            if not 0 <= one_id < num_decisions:
                raise UnknownDecisionError(f"decision_id{suffix}: expected the id of a decision "
                                           f"(0 to {num_decisions - 1}), got unknown id {one_id}")
            if any(one_id == seen for seen, _, _ in items):
                raise ValidationError(f"decision_id{suffix}: decision {one_id} appears twice in this batch")
            one_reward = self._check_reward(one_reward, f"reward{suffix}", one_id)
            encoded = None
            if one_context is not None:
                spec = self._spec_or_stored()
                encoded = spec.encode(spec.validate(one_context, f"context{suffix}"))
            items.append((one_id, json.dumps(one_reward.tolist()), encoded))
        self.store.record_outcomes(self._info, items, time=utc_now(), worker=self.worker)
        self.catch_up()

    # ------------------------------------------------------------------ diagnostics
    @_one_at_a_time
    def posterior_draws(self, num_draws: int = 1000, *, key: jax.Array | None = None) -> dict[str, np.ndarray]:
        """Draws of the current posterior by site (``theta`` (n, K, d), ...), after catching up; needs ``policy.posterior_draws``."""
        if getattr(self.policy, "posterior_draws", None) is None:
            raise ValidationError("policy: expected a Policy with posterior_draws (a Bayesian agent), got one without")
        num_draws = check_integer("num_draws", num_draws, minimum=1)
        self.catch_up()
        key = self._model.diagnostics_key if key is None else key
        draws = jax.jit(self.policy.posterior_draws, static_argnums=2)(self.state, key, num_draws)
        return {site: np.asarray(value) for site, value in draws.items()}

    @_one_at_a_time
    def to_arviz(self, num_draws: int = 1000, *, key: jax.Array | None = None) -> Any:
        """ArviZ data of the current posterior after catching up (``diagnostics.policy_to_arviz``)."""
        from structbandits.diagnostics import policy_to_arviz

        self.catch_up()
        return policy_to_arviz(self.policy, self.state, key=self._model.diagnostics_key if key is None else key,
                               num_draws=num_draws)

    # ------------------------------------------------------------------ a snapshot file
    @_one_at_a_time
    def save(self, path: str | Path) -> Path:
        """Atomically write the state, root key and model version to ``path`` (``.npz``, no pickle).

        The store keeps the decisions and outcomes; ``load`` restores this state and catches up from
        the store. (``snapshot()`` keeps the state in the store itself instead.)
        """
        arrays, structure = pytree_to_arrays(self.state, "state")
        arrays["root_key"] = self._root
        spec = self._context_spec
        metadata = {
            "name": self.name, "study": self._info.name, "hyperparameters": self.hyperparameters,
            "state_structure": structure, "model_version": self.model_version, "last_outcome": self._model.last_outcome,
            "context_spec": None if spec is None else spec.describe(), "reward_shape": list(self._reward_shape),
            "store": self.store.url.render_as_string(hide_password=True),
        }
        return save_snapshot(path, arrays, kind=SNAPSHOT_KIND, metadata=metadata)

    @classmethod
    def load(cls, path: str | Path, policy: Policy, *, name: str, hyperparameters: Mapping[str, Any] | None = None,
             store: str | Path | DecisionStore | None = None, log_dir: str | Path | None = None,
             example_context: Any = None, **options: Any) -> OnlineAgent:
        """Restore an agent saved by ``save`` and catch up with the outcomes its store recorded since.

        Parameters
        ----------
        path : the snapshot file.
        policy : the same policy (same kind and sizes) the snapshot was saved from.
        name : the model name; must equal the saved one.
        hyperparameters : when given, must equal the saved ones.
        store, log_dir : where the study is (default: the store recorded in the snapshot).
        example_context : needed when contexts are pytrees rather than arrays.
        options : further ``OnlineAgent`` keywords (``worker``, ``snapshot_every``, ...).

        Raises
        ------
        ValidationError : another model, format version, hyperparameters or state structure; a
            corrupted snapshot; or a store that does not hold the snapshot's study.
        """
        root, arrays, meta = read_agent_file(path, policy, name=name, hyperparameters=hyperparameters)
        if store is None and log_dir is None:
            store = meta["store"]
        return cls(policy, root, store, log_dir=log_dir, name=name, study=meta["study"],
                   hyperparameters=meta["hyperparameters"], example_context=example_context,
                   reward_shape=tuple(meta["reward_shape"]),
                   _initial=(int(meta["model_version"]), (arrays, meta["state_structure"]), meta["last_outcome"]),
                   **options)
