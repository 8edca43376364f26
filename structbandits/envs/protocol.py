"""The environment protocol: a simulator with known ground truth, as pure functions.

    init(key) -> env_state                          draw the ground truth (e.g. a prior draw)
    context(env_state, key) -> context              this round's context
    mean_rewards(env_state, context) -> (K,)        expected reward of every action
    reward(env_state, key, context, action) -> ()   the realised reward of the chosen action
    model                                           the generating program's hyperparameters, if any
    transition(env_state, key, context, action)     the truth of the next round, for an environment
        -> env_state                                that moves (drift, habituation); None: stationary

The truth is ``env_state``: ``mean_rewards`` of the current state are the round's expected rewards, so
regret is measured against the optimum of each round (the moving optimum where the state moves).

The runner derives the context and reward keys from the seed and the round only, never from the
agent, so every agent faces the same ground truth, contexts and noise for a given seed (common
random numbers), and regret differences between agents are not masked by simulation noise.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax

__all__ = ["Environment", "ModelHyperparameters"]

EnvState = Any


@dataclass(frozen=True, eq=False)
class ModelHyperparameters:
    """The fixed hyperparameters of the program an environment draws its ground truth from.

    What a well-specified agent may be given in advance (priors, mixing weights, noise); the
    per-seed draws (θ, Ψ, contexts, noise) stay hidden. Compared and hashed by identity, so an
    Environment holding it remains a valid static argument of ``jax.jit``.

    Attributes
    ----------
    model : the program's name in ``structbandits.models`` (e.g. "linear_bandit").
    params : its keyword arguments, as NumPy arrays and floats.
    """

    model: str
    params: Mapping[str, Any]


class Environment(NamedTuple):
    """A bandit simulator with known expected rewards (and, optionally, its model's hyperparameters and
    the transition of a truth that moves between rounds)."""

    num_actions: int
    context_shape: tuple[int, ...]
    init: Callable[[jax.Array], EnvState]
    context: Callable[[EnvState, jax.Array], jax.Array]
    mean_rewards: Callable[[EnvState, jax.Array], jax.Array]
    reward: Callable[[EnvState, jax.Array, jax.Array, jax.Array], jax.Array]
    model: ModelHyperparameters | None = None
    transition: Callable[[EnvState, jax.Array, jax.Array, jax.Array], EnvState] | None = None
