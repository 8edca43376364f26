"""The uniform-random baseline: every arm with probability 1/K, learns nothing."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from structbandits.agents.protocol import ActInfo, Policy
from structbandits.errors import check_integer

__all__ = ["uniform_random"]


class UniformRandomState(NamedTuple):
    """The baseline keeps no statistics; ``params`` is None (no hyperparameters)."""

    params: None = None


def uniform_random(num_actions: int) -> Policy:
    """A policy that picks one of ``num_actions`` arms uniformly at random (propensity 1/K).

    It has no numeric hyperparameters: ``Policy.params`` is None and ``init(key, params=None)`` ignores ``params``.
    """
    num_actions = check_integer("num_actions", num_actions, minimum=1)

    def init(key: jax.Array, params: None = None) -> UniformRandomState:
        return UniformRandomState()

    def act(state: UniformRandomState, key: jax.Array, context: jax.Array) -> tuple[jax.Array, ActInfo]:
        action = jax.random.randint(key, (), 0, num_actions)
        return action, ActInfo(propensity=jnp.asarray(1.0 / num_actions))

    def update(state: UniformRandomState, context, action, reward) -> UniformRandomState:
        return state

    return Policy(init, act, update)
