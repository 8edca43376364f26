"""A synthetic linear contextual bandit whose ground truth is a prior draw of ``models.linear_bandit``.

K arms with parameters θ_a ∈ R^d drawn once per seed from the program's prior with
``numpyro.infer.Predictive``; every round a fresh context x ~ Uniform[-1, 1]^d is shared by all
arms, and the pulled arm pays xᵀθ_a + N(0, σ²).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np
from numpyro.infer import Predictive

from structbandits.envs.prior_draw import prior_draw
from structbandits.envs.protocol import Environment, ModelHyperparameters
from structbandits.errors import check_integer, check_num_elements, check_positive
from structbandits.models.linear import linear_bandit

__all__ = ["LinearBanditState", "linear_contextual_bandit"]


class LinearBanditState(NamedTuple):
    """Ground truth of one simulated bandit: ``theta`` (K, d)."""

    theta: jax.Array


def linear_contextual_bandit(
    num_actions: int,
    num_features: int,
    *,
    prior_scale: float = 1.0,
    noise_scale: float = 1.0,
) -> Environment:
    """The linear bandit with θ_a ~ N(0, prior_scale² I_d) and reward noise N(0, noise_scale²).

    Parameters
    ----------
    num_actions : K >= 2 arms.
    num_features : d >= 1 context dimensions.
    prior_scale : standard deviation of every coordinate of θ_a (> 0).
    noise_scale : reward noise standard deviation σ (>= 0; 0 gives noiseless rewards).
    """
    k = check_integer("num_actions", num_actions, minimum=2)
    d = check_integer("num_features", num_features, minimum=1)
    check_num_elements("num_actions, num_features", (k, d, d))
    prior_scale = float(check_positive("prior_scale", prior_scale))
    noise_scale = float(check_positive("noise_scale", noise_scale, allow_zero=True))
    # Host constants (NumPy): building them with jax.numpy ran a handful of tiny programs per process.
    prior_mean = np.zeros((k, d))
    prior_cov = np.broadcast_to(prior_scale**2 * np.eye(d), (k, d, d))
    prior_predictive = prior_draw(Predictive(linear_bandit, num_samples=1, return_sites=["theta"]))  # checked above

    def init(key: jax.Array) -> LinearBanditState:
        draw = prior_predictive(key, prior_mean, prior_cov, noise_scale)
        return LinearBanditState(theta=draw["theta"][0])

    def context(state: LinearBanditState, key: jax.Array) -> jax.Array:
        return jax.random.uniform(key, (d,), minval=-1.0, maxval=1.0, dtype=state.theta.dtype)

    def mean_rewards(state: LinearBanditState, context: jax.Array) -> jax.Array:
        return state.theta @ context

    def reward(state: LinearBanditState, key: jax.Array, context: jax.Array, action: jax.Array) -> jax.Array:
        return mean_rewards(state, context)[action] + noise_scale * jax.random.normal(key, dtype=state.theta.dtype)

    model = ModelHyperparameters("linear_bandit", {"prior_mean": np.asarray(prior_mean), "prior_cov": np.asarray(prior_cov),
                                                   "noise_scale": noise_scale})
    return Environment(k, (d,), init, context, mean_rewards, reward, model)
