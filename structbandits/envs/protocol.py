"""The environment protocol: a simulator with known ground truth, as pure functions.

    init(key) -> env_state                          draw the ground truth (e.g. a prior draw)
    context(env_state, key) -> context              this round's context
    mean_rewards(env_state, context) -> (K,)        expected reward of every action
    reward(env_state, key, context, action) -> ()   the realised reward of the chosen action

The runner derives the context and reward keys from the seed and the round only, never from the
agent, so every agent faces the same ground truth, contexts and noise for a given seed (common
random numbers), and regret differences between agents are not masked by simulation noise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax

__all__ = ["Environment"]

EnvState = Any


class Environment(NamedTuple):
    """A bandit simulator with known expected rewards."""

    num_actions: int
    context_shape: tuple[int, ...]
    init: Callable[[jax.Array], EnvState]
    context: Callable[[EnvState, jax.Array], jax.Array]
    mean_rewards: Callable[[EnvState, jax.Array], jax.Array]
    reward: Callable[[EnvState, jax.Array, jax.Array, jax.Array], jax.Array]
