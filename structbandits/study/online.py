"""An online agent for real studies: any ``Policy`` behind ``select`` / ``observe``, logged and resumable.

    agent = OnlineAgent(policy, key=0, log_dir="study/log", name="lints", hyperparameters={...})
    decision = agent.select(context)              # logged (fsync-ed) before it is returned
    agent.observe(decision.decision_id, reward)   # whenever the reward arrives, in any order
    agent.save("study/agent.npz")                 # atomic snapshot: state, key, pending decisions
    agent = OnlineAgent.load("study/agent.npz", policy, name="lints")   # continues bit-identically

Keys: the root key is split once into an init key, a decision stream and a diagnostics stream;
decision i acts with ``fold_in(decision stream, i)``, so its randomness depends on its id only, not on
how many processes or reloads came before it. Pending decisions keep the context they were made in
until their reward arrives (delayed, batched and out-of-order rewards); ``observe`` updates the
policy with that context (or with one passed at observe time, e.g. a delivered treatment that is only
known after the decision). Every decision and every observation is appended to ``log_dir`` and
fsync-ed before it takes effect (``study.decision_log``); ``load`` restores the snapshot and then
replays whatever the log recorded after it (checking that each replayed decision comes out the
same), so a crash loses nothing that was already decided or observed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

from structbandits.study.decision_log import ContextSpec, DecisionLog, utc_now
from structbandits.agents.protocol import Policy
from structbandits.errors import ValidationError, check_finite, check_integer
from structbandits.persistence import arrays_to_pytree, load_snapshot, pytree_to_arrays, save_snapshot

__all__ = ["Decision", "OnlineAgent"]

SNAPSHOT_KIND = "structbandits.OnlineAgent"


class Decision(NamedTuple):
    """One decision, as returned by ``OnlineAgent.select`` (and logged before it was returned).

    Attributes
    ----------
    decision_id : its id (0, 1, ...); pass it to ``observe`` with the reward.
    action : the chosen arm.
    propensity : the probability the policy chose it with (NaN when the policy does not report one).
    model_version : the number of observations in the model that made the decision.
    time : UTC time of the decision, ISO 8601.
    """

    decision_id: int
    action: int
    propensity: float
    model_version: int
    time: str


def _host(tree: Any) -> Any:
    # One representation of the state on every path (fresh, updated, reloaded) so that jit sees
    # identical input types and a reloaded agent continues bit-identically.
    return jax.tree.map(lambda leaf: leaf if jax.dtypes.issubdtype(getattr(leaf, "dtype", float), jax.dtypes.prng_key)
                        else np.asarray(leaf), tree)


def _root_key(key: Any) -> np.ndarray:
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        return np.asarray(jax.random.PRNGKey(check_integer("key", key, minimum=0)))
    if isinstance(key, jax.Array) and jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    array = np.asarray(key)
    if array.shape != (2,) or array.dtype != np.uint32:
        raise ValidationError(f"key: expected an integer seed or a jax.random.PRNGKey (shape (2,), uint32), "
                              f"got {type(key).__name__} with shape {array.shape} and dtype {array.dtype}")
    return array


def _json_settings(name: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ValidationError(f"{name}: expected a mapping of settings, got {value!r}")
    try:
        return json.loads(json.dumps(dict(value), sort_keys=True, allow_nan=False))
    except (TypeError, ValueError) as err:
        raise ValidationError(f"{name}: expected JSON-serialisable values, got an error: {err}") from None


class OnlineAgent:
    """A ``Policy`` for online use: ``select(context)``, ``observe(decision_id, reward)``, ``save``/``load``.

    Parameters
    ----------
    policy : any ``structbandits.agents.Policy``.
    key : an integer seed or a ``jax.random.PRNGKey``; all of the agent's randomness derives from it.
    log_dir : folder of the decision and observation logs (``decisions.csv``, ``observations.csv``).
    name : the model's name (e.g. "lints"); a snapshot only loads into an agent of the same name.
    hyperparameters : JSON-able settings the policy was built with; recorded, and checked on load.
    example_context : a context, fixing the structure, shapes and dtypes every context must have
        (default: the first context passed to ``select``). Needed for pytree contexts on ``load``.
    reward_shape : the shape of a reward (default ``()``, a scalar, what every built-in policy takes).

    One agent per log folder: a new agent refuses a folder that already holds decisions.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import jax.numpy as jnp
    >>> from structbandits.agents import OnlineAgent, lin_ts
    >>> study = pathlib.Path(tempfile.mkdtemp())
    >>> policy = lin_ts(jnp.zeros(2), jnp.eye(2), 0.5, num_actions=3)
    >>> agent = OnlineAgent(policy, key=0, log_dir=study / "log", name="lints")
    >>> first, second = agent.select([0.3, -1.0]), agent.select([1.0, 0.2])
    >>> agent.observe([second.decision_id, first.decision_id], [0.7, -0.1])   # late, batched, out of order
    >>> path = agent.save(study / "agent.npz")
    >>> agent = OnlineAgent.load(study / "agent.npz", policy, name="lints")   # continues bit-identically
    >>> agent.model_version, agent.num_decisions
    (2, 2)
    """

    def __init__(self, policy: Policy, key: Any, log_dir: str | Path, *, name: str,
                 hyperparameters: Mapping[str, Any] | None = None, example_context: Any = None,
                 reward_shape: tuple[int, ...] = (), _resuming: bool = False):
        if not all(callable(getattr(policy, part, None)) for part in ("init", "act", "update")):
            raise ValidationError(f"policy: expected a Policy (init, act, update), got {type(policy).__name__}")
        if not isinstance(name, str) or not name:
            raise ValidationError(f"name: expected a non-empty string naming the model, got {name!r}")
        self.policy = policy
        self.name = name
        self.hyperparameters = _json_settings("hyperparameters", hyperparameters or {})
        self.log = DecisionLog(log_dir)
        if not _resuming and self.log.decisions_path.exists() and self.log.decisions_path.stat().st_size > 0:
            raise ValidationError(f"log_dir: {str(self.log.folder)!r} already holds another agent's decisions; continue "
                                  "that study with OnlineAgent.load(snapshot, ...) or give this agent a new folder")
        self._root = _root_key(key)
        init_key, self._decision_root, self._diagnostics_key = jax.random.split(self._root, 3)
        self._act = jax.jit(policy.act)
        self._update = jax.jit(policy.update)
        self._state = _host(policy.init(init_key))
        self._context_spec = None if example_context is None else ContextSpec(example_context)
        self._reward_shape = tuple(check_integer("reward_shape", n, minimum=1) for n in reward_shape)
        self._reward_checked = False
        self._next_id = 0
        self._num_observed = 0
        self._pending: dict[int, tuple[Any, np.ndarray]] = {}

    # ------------------------------------------------------------------ what the agent knows
    @property
    def state(self) -> Any:
        """The policy's current state (a pytree)."""
        return self._state

    @property
    def num_decisions(self) -> int:
        """Decisions made so far (the next decision's id)."""
        return self._next_id

    @property
    def model_version(self) -> int:
        """Observations incorporated into the model so far."""
        return self._num_observed

    @property
    def pending(self) -> dict[int, int]:
        """Decisions still waiting for their reward: decision id -> action."""
        return {decision_id: int(action) for decision_id, (_, action) in sorted(self._pending.items())}

    def decisions(self):
        """The decision log as a pandas DataFrame (one row per decision, context as JSON)."""
        return self.log.read_decisions()

    # ------------------------------------------------------------------ deciding and learning
    def _spec(self, context: Any) -> ContextSpec:
        if self._context_spec is None:
            spec = ContextSpec(context)
            example = spec.validate(context)
            try:  # once: a context the policy cannot act on fails here, not deep inside jit
                action, _ = jax.eval_shape(self.policy.act, self._state, self._decision_root, example)
            except (TypeError, ValueError, IndexError) as err:
                raise ValidationError(f"context: the policy cannot act on a context with shapes {spec.shapes}: "
                                      f"{str(err).splitlines()[0]}") from None
            if action.shape != ():
                raise ValidationError(f"context: expected the policy to return one action, got shape {action.shape}")
            self._context_spec = spec
        return self._context_spec

    def _decide(self, context: Any) -> tuple[int, float]:
        key = jax.random.fold_in(self._decision_root, self._next_id)
        action, info = self._act(self._state, key, context)
        return int(action), float(info.propensity)

    def select(self, context: Any) -> Decision:
        """Decide for ``context``; the decision is logged (and fsync-ed) before it is returned.

        Parameters
        ----------
        context : what the policy acts on: (d,), (K, d), or the policy's pytree of arrays; finite.

        Returns
        -------
        Decision(decision_id, action, propensity, model_version, time).
        """
        spec = self._spec(context)
        context = spec.validate(context)
        action, propensity = self._decide(context)
        decision = Decision(self._next_id, action, propensity, self._num_observed, utc_now())
        self.log.append_decision(decision.decision_id, decision.time, spec.encode(context), action, propensity,
                                 decision.model_version)
        self._pending[decision.decision_id] = (context, np.asarray(action, dtype=np.int64))
        self._next_id += 1
        return decision

    def _check_pending(self, decision_id: Any, name: str) -> int:
        if self._next_id == 0:
            raise ValidationError(f"{name}: no decision has been made yet; call select(context) before observe")
        decision_id = check_integer(name, decision_id)
        if decision_id in self._pending:
            return decision_id
        if 0 <= decision_id < self._next_id:
            raise ValidationError(f"{name}: decision {decision_id} has already been observed (a duplicate reward)")
        raise ValidationError(f"{name}: expected the id of a pending decision (0 to {self._next_id - 1}), "
                              f"got unknown id {decision_id}")

    def _check_reward(self, reward: Any, name: str, decision_id: int) -> np.ndarray:
        reward = check_finite(name, reward)
        if reward.shape != self._reward_shape:
            raise ValidationError(f"{name}: expected shape {self._reward_shape}"
                                  f"{' (a scalar)' if not self._reward_shape else ''}, got shape {reward.shape}")
        if self._reward_checked:
            return reward
        context, action = self._pending[decision_id]
        expected = jax.tree.map(lambda leaf: (np.shape(leaf), np.asarray(leaf).dtype), self._state)
        try:  # once: a reward the policy cannot learn from fails here, not deep inside jit
            updated = jax.eval_shape(self.policy.update, self._state, context, action, reward)
            result = jax.tree.map(lambda leaf: (leaf.shape, leaf.dtype), updated)
        except (TypeError, ValueError, IndexError) as err:
            raise ValidationError(f"{name}: the policy cannot update on a reward of shape {reward.shape}: "
                                  f"{str(err).splitlines()[0]}") from None
        if result != expected:
            raise ValidationError(f"{name}: expected a reward the policy's state keeps its shapes under (a scalar for "
                                  f"most policies), got shape {reward.shape}")
        return reward

    def _apply(self, decision_id: int, reward: np.ndarray, context: Any) -> None:
        decision_context, action = self._pending.pop(decision_id)
        context = decision_context if context is None else context
        self._state = _host(self._update(self._state, context, action, reward))
        self._reward_checked = True
        self._num_observed += 1

    def observe(self, decision_id: int | Sequence[int], reward: Any, *, context: Any = None) -> None:
        """Update the policy with the reward of a pending decision (or of several, in the given order).

        Parameters
        ----------
        decision_id : the id of a pending decision, or a sequence of ids (a batch; any order).
        reward : its reward, or a sequence of rewards matching ``decision_id``; finite.
        context : the context to update with, if it differs from the decision's (e.g. a delivered
            treatment observed afterwards); a sequence of them for a batch; default: the decision's.

        The whole batch is validated before any reward is applied; each observation is logged
        (fsync-ed) before the state changes.
        """
        batch = isinstance(decision_id, (Sequence, np.ndarray)) and not isinstance(decision_id, str)
        ids = list(decision_id) if batch else [decision_id]
        rewards = list(reward) if batch and isinstance(reward, (Sequence, np.ndarray)) else ([reward] if not batch else None)
        if rewards is None or len(rewards) != len(ids):
            raise ValidationError(f"reward: expected one reward per decision id ({len(ids)}), got {reward!r}")
        contexts = [None] * len(ids) if context is None else (list(context) if batch else [context])
        if len(contexts) != len(ids):
            raise ValidationError(f"context: expected one context per decision id ({len(ids)}), got {len(contexts)}")
        checked = []
        for i, (one_id, one_reward, one_context) in enumerate(zip(ids, rewards, contexts)):
            suffix = f"[{i}]" if batch else ""
            one_id = self._check_pending(one_id, f"decision_id{suffix}")
            if any(one_id == seen for seen, _, _ in checked):
                raise ValidationError(f"decision_id{suffix}: decision {one_id} appears twice in this batch")
            one_reward = self._check_reward(one_reward, f"reward{suffix}", one_id)
            if one_context is not None:
                one_context = self._spec(one_context).validate(one_context, f"context{suffix}")
            checked.append((one_id, one_reward, one_context))
        for one_id, one_reward, one_context in checked:
            self.log.append_observation(self._num_observed, one_id, utc_now(), json.dumps(one_reward.tolist()),
                                        "" if one_context is None else self._context_spec.encode(one_context))
            self._apply(one_id, one_reward, one_context)

    # ------------------------------------------------------------------ diagnostics
    def posterior_draws(self, num_draws: int = 1000, *, key: jax.Array | None = None) -> dict[str, np.ndarray]:
        """Draws of the policy's current posterior by site (``theta`` (n, K, d), ...); needs ``policy.posterior_draws``."""
        if getattr(self.policy, "posterior_draws", None) is None:
            raise ValidationError("policy: expected a Policy with posterior_draws (a Bayesian agent), got one without")
        num_draws = check_integer("num_draws", num_draws, minimum=1)
        key = self._diagnostics_key if key is None else key
        draws = jax.jit(self.policy.posterior_draws, static_argnums=2)(self._state, key, num_draws)
        return {site: np.asarray(value) for site, value in draws.items()}

    def to_arviz(self, num_draws: int = 1000, *, key: jax.Array | None = None) -> Any:
        """ArviZ data of the current posterior (``diagnostics.policy_to_arviz``)."""
        from structbandits.diagnostics import policy_to_arviz

        return policy_to_arviz(self.policy, self._state, key=self._diagnostics_key if key is None else key,
                               num_draws=num_draws)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Atomically write the state, key, counters and pending decisions to ``path`` (``.npz``, no pickle)."""
        arrays, structure = pytree_to_arrays(self._state, "state")
        ids = sorted(self._pending)
        arrays["root_key"] = self._root
        arrays["pending_ids"] = np.asarray(ids, dtype=np.int64)
        arrays["pending_actions"] = np.asarray([self._pending[i][1] for i in ids], dtype=np.int64)
        spec = self._context_spec
        if spec is not None:
            for index, leaf in enumerate(spec.stack([self._pending[i][0] for i in ids])):
                arrays[f"pending_context/{index}"] = leaf
        metadata = {
            "name": self.name, "hyperparameters": self.hyperparameters, "state_structure": structure,
            "next_id": self._next_id, "num_observed": self._num_observed,
            "context_spec": None if spec is None else spec.describe(),
            "reward_shape": list(self._reward_shape),
            "log_dir": str(self.log.folder.resolve()),
        }
        return save_snapshot(path, arrays, kind=SNAPSHOT_KIND, metadata=metadata)

    @classmethod
    def load(cls, path: str | Path, policy: Policy, *, name: str, hyperparameters: Mapping[str, Any] | None = None,
             log_dir: str | Path | None = None, example_context: Any = None) -> OnlineAgent:
        """Restore an agent saved by ``save`` and replay what its log recorded after the snapshot.

        Parameters
        ----------
        path : the snapshot.
        policy : the same policy (same kind and sizes) the snapshot was saved from.
        name : the model name; must equal the saved one.
        hyperparameters : when given, must equal the saved ones.
        log_dir : the log folder (default: the one recorded in the snapshot).
        example_context : needed when contexts are pytrees rather than arrays.

        Raises
        ------
        ValidationError : another model, format version, hyperparameters or state structure; a
            corrupted snapshot; or a log that does not belong to the snapshot.
        """
        arrays, meta = load_snapshot(path, kind=SNAPSHOT_KIND)
        if meta["name"] != name:
            raise ValidationError(f"name: the snapshot {str(path)!r} was saved for model {meta['name']!r}, got {name!r}")
        if hyperparameters is not None:
            given = _json_settings("hyperparameters", hyperparameters)
            for setting in sorted(set(given) | set(meta["hyperparameters"])):
                if given.get(setting) != meta["hyperparameters"].get(setting):
                    raise ValidationError(f"hyperparameters[{setting!r}]: the snapshot was saved with "
                                          f"{meta['hyperparameters'].get(setting)!r}, got {given.get(setting)!r}")
        saved_spec = meta["context_spec"]
        if saved_spec is not None and example_context is None:
            if saved_spec["paths"] != [""]:
                raise ValidationError("example_context: the saved contexts are pytrees "
                                      f"({saved_spec['treedef']}); pass an example context to load them")
            example_context = np.zeros(saved_spec["shapes"][0], np.dtype(saved_spec["dtypes"][0]))
        agent = cls(policy, arrays["root_key"], log_dir if log_dir is not None else meta["log_dir"], name=name,
                    hyperparameters=meta["hyperparameters"], example_context=example_context,
                    reward_shape=tuple(meta["reward_shape"]), _resuming=True)
        if saved_spec is not None and agent._context_spec.describe() != saved_spec:
            raise ValidationError(f"example_context: expected contexts like {saved_spec}, got {agent._context_spec.describe()}")
        agent._state = _host(arrays_to_pytree(agent._state, arrays, "state", meta["state_structure"]))
        agent._next_id, agent._num_observed = int(meta["next_id"]), int(meta["num_observed"])
        if saved_spec is not None:
            leaves = [arrays[f"pending_context/{i}"] for i in range(len(saved_spec["paths"]))]
            contexts = agent._context_spec.unstack(leaves)
        else:
            contexts = []
        agent._pending = {int(i): (c, np.asarray(a, dtype=np.int64))
                          for i, a, c in zip(arrays["pending_ids"], arrays["pending_actions"], contexts)}
        agent._replay_log()
        return agent

    def _replay_log(self) -> None:
        """Re-apply the decisions and observations logged after the snapshot, in their original order."""
        decisions, observations = self.log.decisions(), self.log.observations()
        where = f"the log in {str(self.log.folder)!r}"
        if [int(r["decision_id"]) for r in decisions] != list(range(len(decisions))) or \
                [int(r["sequence"]) for r in observations] != list(range(len(observations))):
            raise ValidationError(f"log_dir: {where} is not a contiguous record (ids or sequences missing or reordered)")
        if len(decisions) < self._next_id or len(observations) < self._num_observed:
            raise ValidationError(f"log_dir: {where} has {len(decisions)} decisions and {len(observations)} observations, "
                                  f"fewer than the snapshot's {self._next_id} and {self._num_observed} (another study's log?)")
        new_decisions, new_observations = decisions[self._next_id:], observations[self._num_observed:]
        while new_decisions or new_observations:
            if new_decisions and int(new_decisions[0]["model_version"]) <= self._num_observed:
                row = new_decisions.pop(0)
                if int(row["model_version"]) != self._num_observed:
                    raise ValidationError(f"log_dir: decision {row['decision_id']} in {where} was made by model version "
                                          f"{row['model_version']}, but replaying reaches it at {self._num_observed}")
                if self._context_spec is None:  # saved before the first decision: only array contexts are implied
                    value = json.loads(row["context"])
                    if not isinstance(value, list):
                        raise ValidationError("example_context: the logged contexts are pytrees; pass an example context")
                    self._context_spec = ContextSpec(np.asarray(value))
                context = self._context_spec.decode(row["context"])
                action, propensity = self._decide(context)
                if action != int(row["action"]) or not np.array_equal(propensity, float(row["propensity"]), equal_nan=True):
                    raise ValidationError(
                        f"log_dir: decision {row['decision_id']} in {where} chose action {row['action']} "
                        f"(propensity {row['propensity']}); the restored agent chooses {action} ({propensity!r}): "
                        "the snapshot, the policy and the log do not belong together")
                self._pending[self._next_id] = (context, np.asarray(action, dtype=np.int64))
                self._next_id += 1
            elif new_observations:
                row = new_observations.pop(0)
                decision_id = self._check_pending(int(row["decision_id"]), "log decision_id")
                context = self._context_spec.decode(row["context"]) if row["context"] else None
                self._apply(decision_id, np.asarray(json.loads(row["reward"]), dtype=np.float64), context)
            else:
                raise ValidationError(f"log_dir: decision {new_decisions[0]['decision_id']} in {where} was made by model "
                                      f"version {new_decisions[0]['model_version']}, after observations the log lacks")
