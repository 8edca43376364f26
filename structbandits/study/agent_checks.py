"""Whether an ``OnlineAgent`` and the study or snapshot file it opens belong together.

The first context and the first reward an agent sees are checked against the policy by abstract
evaluation (``jax.eval_shape``), so a context or reward the policy cannot take fails with a message
rather than deep inside a compiled function. A study records the model's name, its root key, its hyperparameters, the reward shape and the
structure of the policy's state (tree and leaf shapes); an agent opening it must agree on each, and
a mismatch is a ``ValidationError`` naming the setting. An agent's snapshot file (``OnlineAgent.save``)
is an ``.npz`` of ``persistence.save_snapshot`` holding the state, the root key, the model version and
the last outcome it had applied (so a store whose outcome at that position differs is refused).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from structbandits.agents.protocol import Policy
from structbandits.errors import ValidationError
from structbandits.persistence import arrays_to_pytree, load_snapshot
from structbandits.study.decision_log import ContextSpec
from structbandits.study.replay import host_tree, json_settings, root_key
from structbandits.study.store_schema import StudyInfo

__all__ = ["SNAPSHOT_KIND", "batch_arguments", "check_first_reward", "check_settings", "check_study", "first_context_spec", "read_agent_file"]

SNAPSHOT_KIND = "structbandits.OnlineAgent"


def check_settings(given: dict[str, Any], saved: dict[str, Any], where: str) -> None:
    """Every hyperparameter of ``given`` and ``saved`` equal, or an error naming the first that differs."""
    for setting in sorted(set(given) | set(saved)):
        if given.get(setting) != saved.get(setting):
            raise ValidationError(f"hyperparameters[{setting!r}]: {where} was saved with {saved.get(setting)!r}, "
                                  f"got {given.get(setting)!r}")


def check_study(info: StudyInfo, where: str, *, name: str, root: np.ndarray, hyperparameters: dict[str, Any] | None,
                reward_shape: tuple[int, ...] | None, state_structure: dict[str, Any]) -> None:
    """The study ``info`` was created by this model name, root key, policy state structure and, when given,
    hyperparameters and reward shape; ``where`` names the study in the messages."""
    if info.policy_name != name:
        raise ValidationError(f"name: {where} was created for model {info.policy_name!r}, got {name!r}")
    if not np.array_equal(info.root_key, root):
        raise ValidationError(f"key: {where} was created with root key {info.root_key.tolist()}, got "
                              f"{root.tolist()} (reopen it with key=None)")
    if hyperparameters is not None:
        check_settings(hyperparameters, info.hyperparameters, where)
    if reward_shape is not None and reward_shape != info.reward_shape:
        raise ValidationError(f"reward_shape: {where} takes rewards of shape {info.reward_shape}, got {reward_shape}")
    if info.state_structure is not None and info.state_structure != state_structure:
        raise ValidationError(f"policy: {where} was created by a policy whose state is {info.state_structure}, this "
                              f"policy's state is {state_structure} (another kind of policy, or other sizes)")


def read_agent_file(path: str | Path, policy: Policy, *, name: str,
                    hyperparameters: dict[str, Any] | None) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, Any]]:
    """(root key, arrays, metadata) of an ``OnlineAgent.save`` file, checked against ``policy``, ``name`` and
    (when given) ``hyperparameters``; the state's leaves are checked against ``policy``'s, by leaf."""
    arrays, meta = load_snapshot(path, kind=SNAPSHOT_KIND)
    if meta["name"] != name:
        raise ValidationError(f"name: the snapshot {str(path)!r} was saved for model {meta['name']!r}, got {name!r}")
    if hyperparameters is not None:
        check_settings(json_settings("hyperparameters", hyperparameters), meta["hyperparameters"], "the snapshot")
    root = root_key(arrays["root_key"])
    template = host_tree(policy.init(jax.random.split(root, 3)[0]))
    arrays_to_pytree(template, arrays, "state", meta["state_structure"])  # another model or size: named by leaf
    return root, arrays, meta


def first_context_spec(policy: Policy, state: Any, key: Any, context: Any) -> ContextSpec:
    """The ``ContextSpec`` of ``context``, once ``policy.act`` is known to take it and return one action."""
    spec = ContextSpec(context)
    try:
        action, _ = jax.eval_shape(policy.act, state, key, spec.validate(context))
    except (TypeError, ValueError, IndexError) as err:
        raise ValidationError(f"context: the policy cannot act on a context with shapes {spec.shapes}: "
                              f"{str(err).splitlines()[0]}") from None
    if action.shape != ():
        raise ValidationError(f"context: expected the policy to return one action, got shape {action.shape}")
    return spec


def check_first_reward(policy: Policy, state: Any, context: Any, action: int, reward: np.ndarray, name: str) -> None:
    """``policy.update`` takes ``reward`` (for ``action`` at ``context``) and keeps the state's shapes and dtypes."""
    expected = jax.tree.map(lambda leaf: (np.shape(leaf), np.asarray(leaf).dtype), state)
    try:
        updated = jax.eval_shape(policy.update, state, context, np.asarray(action, np.int64), reward)
        result = jax.tree.map(lambda leaf: (leaf.shape, leaf.dtype), updated)
    except (TypeError, ValueError, IndexError) as err:
        raise ValidationError(f"{name}: the policy cannot update on a reward of shape {reward.shape}: "
                              f"{str(err).splitlines()[0]}") from None
    if result != expected:
        raise ValidationError(f"{name}: expected a reward the policy's state keeps its shapes under (a scalar for "
                              f"most policies), got shape {reward.shape}")


def batch_arguments(decision_id: Any, reward: Any, context: Any) -> tuple[bool, list, list, list]:
    """(is a batch, ids, rewards, contexts) of ``observe``'s arguments: one decision or a batch of them."""
    batch = isinstance(decision_id, (Sequence, np.ndarray)) and not isinstance(decision_id, str)
    ids = list(decision_id) if batch else [decision_id]
    rewards = list(reward) if batch and isinstance(reward, (Sequence, np.ndarray)) else ([reward] if not batch else None)
    if rewards is None or len(rewards) != len(ids):
        raise ValidationError(f"reward: expected one reward per decision id ({len(ids)}), got {reward!r}")
    contexts = [None] * len(ids) if context is None else (list(context) if batch else [context])
    if len(contexts) != len(ids):
        raise ValidationError(f"context: expected one context per decision id ({len(ids)}), got {len(contexts)}")
    return batch, ids, rewards, contexts
