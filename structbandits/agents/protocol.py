"""The agent protocol: a policy is three pure functions over an explicit pytree state.

    init(key) -> state
    act(state, key, context) -> (action, ActInfo)
    update(state, context, action, reward) -> state

All three are jittable; the experiment runner ``jax.vmap``-s them over seeds and ``lax.scan``-s them
over rounds. State is a NamedTuple of arrays, never an object with hidden mutable state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["ActInfo", "Policy", "no_propensity"]

State = Any


class ActInfo(NamedTuple):
    """What an agent reports about one decision.

    Attributes
    ----------
    propensity : scalar, the probability with which the agent picked the action it picked
        (exact, or a Monte-Carlo estimate); NaN when the agent does not report one.
    """

    propensity: jax.Array


def no_propensity(dtype=None) -> ActInfo:
    """ActInfo of a decision whose selection probability is not reported: propensity NaN, shape ().

    ``dtype`` None is JAX's default float (float64 only after ``structbandits.configure()``). A function
    rather than a module constant, so the dtype follows the configuration at call time.
    """
    return ActInfo(propensity=jnp.asarray(jnp.nan, dtype=dtype))


class Policy(NamedTuple):
    """A bandit policy as pure functions (Optax / BlackJAX style).

    ``posterior_draws(state, key, num_draws) -> {site: (num_draws, ...)}``, when a policy has a
    posterior, returns draws of its parameters by site name (``theta`` (n, K, d), ``psi`` (n, L, d),
    ...) for diagnostics (``diagnostics.policy_to_arviz``); None otherwise.
    """

    init: Callable[[jax.Array], State]
    act: Callable[[State, jax.Array, jax.Array], tuple[jax.Array, ActInfo]]
    update: Callable[[State, jax.Array, jax.Array, jax.Array], State]
    posterior_draws: Callable[[State, jax.Array, int], dict[str, jax.Array]] | None = None
