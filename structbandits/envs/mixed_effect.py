"""The synthetic mixed-effect bandits of the meTS experiments, drawn from ``models.mixed_effect_linear``
or ``models.mixed_effect_logistic``.

Per environment (fixed across seeds, known to structured agents): mixing weights
b ~ Uniform[mixing_low, mixing_high]^{K×L}, drawn from ``structure_seed``; the prior
vec Ψ ~ N(0, effect_scale² I), Σ0_i = action_scale² I, noise σ.
Per seed: Ψ and θ from the program's prior (``Predictive``), and a pool of ``context_pool`` contexts
~ Uniform[-1, 1]^d. Each round every arm gets its own context from the pool, uniformly at random
(contexts are (K, d)), and the pulled arm pays x_aᵀθ_a + N(0, σ²) (``rewards="linear"``) or
Bernoulli(sigmoid(x_aᵀθ_a)) (``rewards="logistic"``, whose expected reward is sigmoid(x_aᵀθ_a)).

The defaults are the meTS paper's synthetic setting (K=100, L=3, d=2, σ=1, Σ_Ψ=3I, Σ0=I,
b ~ U[-1, 1]^L, a pool of 100 contexts); the logistic experiment uses b ~ U[-1, 2]^L. One deviation: the reference code redraws b in every run;
here b belongs to the environment (an agent's structure is fixed before a study starts), so a run
averages over Ψ, θ, contexts and noise for one b. Use several environments with different
``structure_seed`` to average over b as well.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer import Predictive

from structbandits.envs.prior_draw import prior_draw
from structbandits.envs.protocol import Environment, ModelHyperparameters
from structbandits.errors import ValidationError, check_finite, check_integer, check_num_elements, check_positive
from structbandits.models.mixed_effect import mixed_effect_linear, mixed_effect_logistic

__all__ = ["MixedEffectState", "mixed_effect_bandit", "mixed_effect_rewards"]


class MixedEffectState(NamedTuple):
    """Ground truth of one simulated bandit: ``psi`` (L·d,), ``theta`` (K, d), ``context_pool`` (P, d)."""

    psi: jax.Array
    theta: jax.Array
    context_pool: jax.Array


def mixed_effect_rewards(rewards: str, linear_predictor: Callable, params: dict, noise_scale: float | None):
    """Expected and realised rewards of a mixed-effect bandit, and the program it declares.

    ``linear_predictor(state, context) -> (K,)`` gives x_iᵀθ_i from a state with ``theta``.
    "linear": mean x_iᵀθ_i, reward mean + N(0, noise_scale²), model ``mixed_effect_linear``;
    "logistic": mean sigmoid(x_iᵀθ_i), reward Bernoulli(mean), model ``mixed_effect_logistic``.
    Returns (mean_rewards, reward, ModelHyperparameters) for ``Environment``.
    """
    if rewards == "linear":
        mean_rewards = linear_predictor

        def reward(state, key: jax.Array, context: jax.Array, action: jax.Array) -> jax.Array:
            return mean_rewards(state, context)[action] + noise_scale * jax.random.normal(key, dtype=state.theta.dtype)

        return mean_rewards, reward, ModelHyperparameters("mixed_effect_linear", {**params, "noise_scale": noise_scale})

    def mean_rewards(state, context: jax.Array) -> jax.Array:
        return jax.nn.sigmoid(linear_predictor(state, context))

    def reward(state, key: jax.Array, context: jax.Array, action: jax.Array) -> jax.Array:
        return jax.random.bernoulli(key, mean_rewards(state, context)[action]).astype(state.theta.dtype)

    return mean_rewards, reward, ModelHyperparameters("mixed_effect_logistic", params)


def mixed_effect_bandit(
    num_actions: int = 100,
    num_effects: int = 3,
    num_features: int = 2,
    *,
    effect_scale: float = 3.0**0.5,
    action_scale: float = 1.0,
    noise_scale: float = 1.0,
    mixing_low: float = -1.0,
    mixing_high: float = 1.0,
    context_pool: int = 100,
    structure_seed: int = 0,
    rewards: str = "linear",
) -> Environment:
    """The meTS synthetic bandit; see the module docstring for the generative process.

    ``noise_scale`` is the reward noise σ of linear rewards and must be left at its default for
    logistic rewards, whose noise is Bernoulli.
    """
    if rewards not in ("linear", "logistic"):
        raise ValidationError(f"rewards: expected 'linear' or 'logistic', got {rewards!r}")
    if rewards == "logistic" and noise_scale != 1.0:
        raise ValidationError(f"noise_scale: logistic rewards have no noise scale; leave it at 1.0, got {noise_scale}")
    k = check_integer("num_actions", num_actions, minimum=2)
    num_effects = check_integer("num_effects", num_effects, minimum=1)
    d = check_integer("num_features", num_features, minimum=1)
    effect_scale = float(check_positive("effect_scale", effect_scale))
    action_scale = float(check_positive("action_scale", action_scale))
    noise_scale = float(check_positive("noise_scale", noise_scale, allow_zero=True))
    low, high = float(check_finite("mixing_low", mixing_low)), float(check_finite("mixing_high", mixing_high))
    if not low < high:
        raise ValidationError(f"mixing_high: expected a value > mixing_low = {low}, got {high}")
    pool_size = check_integer("context_pool", context_pool, minimum=1)
    structure_seed = check_integer("structure_seed", structure_seed, minimum=0)
    check_num_elements("num_actions, num_features", (k, d, d))
    check_num_elements("num_effects, num_features", (num_effects * d, num_effects * d))
    check_num_elements("context_pool, num_actions, num_features", (pool_size, k, d))

    params = {
        "mixing": np.random.default_rng(structure_seed).uniform(low, high, size=(k, num_effects)),
        "effect_mean": np.zeros((num_effects, d)),
        "effect_cov": effect_scale**2 * np.eye(num_effects * d),
        "action_cov": np.broadcast_to(action_scale**2 * np.eye(d), (k, d, d)).copy(),
    }
    program = mixed_effect_linear if rewards == "linear" else mixed_effect_logistic
    prior_predictive = prior_draw(Predictive(program, num_samples=1, return_sites=["psi", "theta"]))  # checked above
    model_args = tuple(jnp.asarray(params[name]) for name in ("mixing", "effect_mean", "effect_cov", "action_cov"))
    model_args += (noise_scale,) if rewards == "linear" else ()

    def init(key: jax.Array) -> MixedEffectState:
        truth_key, pool_key = jax.random.split(key)
        draw = prior_predictive(truth_key, *model_args)
        pool = jax.random.uniform(pool_key, (pool_size, d), minval=-1.0, maxval=1.0, dtype=draw["theta"].dtype)
        return MixedEffectState(draw["psi"][0], draw["theta"][0], pool)

    def context(state: MixedEffectState, key: jax.Array) -> jax.Array:
        return state.context_pool[jax.random.randint(key, (k,), 0, pool_size)]

    def linear_predictor(state: MixedEffectState, context: jax.Array) -> jax.Array:
        return jnp.sum(state.theta * context, axis=-1)

    mean_rewards, reward, model = mixed_effect_rewards(rewards, linear_predictor, params, noise_scale)
    return Environment(k, (k, d), init, context, mean_rewards, reward, model)
