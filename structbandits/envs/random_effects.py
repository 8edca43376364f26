"""A bandit whose users differ: per-user random intercepts, drawn from ``models.random_intercept_logistic``.

Per seed: τ, the users' baselines u and the arms' θ are one prior draw of the program
(``Predictive``). Each round a user arrives uniformly at random with features x ~ U[-1, 1]^d, the
context is ``{"user": (), "features": (d,)}``, and arm a pays Bernoulli(sigmoid(xᵀθ_a + u_user)).
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
from numpyro.infer import Predictive

from structbandits.envs.protocol import Environment, ModelHyperparameters
from structbandits.errors import check_integer, check_positive
from structbandits.models.random_effects import random_intercept_logistic

__all__ = ["RandomEffectsState", "random_effects_bandit"]


class RandomEffectsState(NamedTuple):
    """Ground truth: ``user_effect`` (U,), ``theta`` (K, d)."""

    user_effect: jax.Array
    theta: jax.Array


def random_effects_bandit(num_actions: int = 5, num_users: int = 20, num_features: int = 2, *,
                          prior_scale_users: float = 1.0, prior_scale_arms: float = 1.0) -> Environment:
    """The random-intercept logistic bandit; see the module docstring."""
    k = check_integer("num_actions", num_actions, minimum=2)
    users = check_integer("num_users", num_users, minimum=1)
    d = check_integer("num_features", num_features, minimum=1)
    params = {"num_users": users, "num_actions": k, "num_features": d,
              "prior_scale_users": float(check_positive("prior_scale_users", prior_scale_users)),
              "prior_scale_arms": float(check_positive("prior_scale_arms", prior_scale_arms))}
    prior_predictive = Predictive(partial(random_intercept_logistic, **params), num_samples=1,
                                  return_sites=["user_effect", "theta"])

    def init(key: jax.Array) -> RandomEffectsState:
        draw = prior_predictive(key)
        return RandomEffectsState(draw["user_effect"][0], draw["theta"][0])

    def context(state: RandomEffectsState, key: jax.Array) -> dict[str, jax.Array]:
        user_key, feature_key = jax.random.split(key)
        return {"user": jax.random.randint(user_key, (), 0, users),
                "features": jax.random.uniform(feature_key, (d,), minval=-1.0, maxval=1.0, dtype=state.theta.dtype)}

    def mean_rewards(state: RandomEffectsState, context: dict[str, jax.Array]) -> jax.Array:
        return jax.nn.sigmoid(state.theta @ context["features"] + state.user_effect[context["user"]])

    def reward(state: RandomEffectsState, key: jax.Array, context: dict[str, jax.Array], action: jax.Array) -> jax.Array:
        return jax.random.bernoulli(key, mean_rewards(state, context)[action]).astype(state.theta.dtype)

    model = ModelHyperparameters("random_intercept_logistic", params)
    return Environment(k, (), init, context, mean_rewards, reward, model)
