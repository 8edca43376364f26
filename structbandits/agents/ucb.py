"""LinUCB (OFUL) with a Gaussian prior per arm, on the program ``models.linear_bandit``.

Each arm keeps the same posterior as LinTS (precision P_i = Λ_i + Σ x xᵀ/σ² and information,
Cholesky factor of P_i). The arm's score is its posterior mean plus a confidence width,

    x_iᵀ μ_i + β_i ‖x_i‖_{P_i⁻¹},   β_i = √(2 log(1/δ) + log det P_i − log det Λ_i) + S,

the self-normalised bound of Abbasi-Yadkori et al. (2011) written in prior-scaled units: with
probability 1 − δ, ‖θ_i − μ_i‖_{P_i} ≤ β_i whenever ‖θ_i − m_i‖_{Λ_i} ≤ S. ``prior_radius`` S defaults
to √d, the typical value of ‖θ_i − m_i‖_{Λ_i} under the prior (the reference code uses S = √d too).
Ties are broken uniformly at random.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import solve_triangular

from structbandits.agents.protocol import ActInfo, Policy, no_propensity
from structbandits.agents.thompson import LinTSState, arm_posterior_draws, broadcast_arm_prior, observe_arm
from structbandits.errors import ValidationError, check_finite, check_positive
from structbandits.inference.conjugate import GaussianInfo, gaussian_from_moments, gaussian_mean

__all__ = ["LinUCBParams", "lin_ucb"]


class LinUCBParams(NamedTuple):
    """LinUCB hyperparameters. K arms, d features.

    Attributes
    ----------
    prior : GaussianInfo, the per-arm prior in information form: ``precision_chol`` (K, d, d), ``info`` (K, d).
    noise_var : scalar σ².
    delta : scalar failure probability δ of the confidence sets.
    radius : scalar S, the prior-norm bound added to the width.
    prior_log_det : (K,) log det Λ_i (follows ``prior``; kept so the width needs no refactorisation).

    The first two fields are those of ``thompson.LinTSParams``: the state is a ``LinTSState``.
    """

    prior: GaussianInfo
    noise_var: jax.Array
    delta: jax.Array
    radius: jax.Array
    prior_log_det: jax.Array


def _log_det(precision_chol: jax.Array) -> jax.Array:
    return 2.0 * jnp.sum(jnp.log(jnp.diagonal(precision_chol, axis1=-2, axis2=-1)), axis=-1)


def lin_ucb(prior_mean, prior_cov, noise_scale: float, *, num_actions: int | None = None, delta: float = 0.05,
            prior_radius: float | None = None) -> Policy:
    """LinUCB with per-arm priors N(prior_mean, prior_cov) and known noise σ.

    Parameters
    ----------
    prior_mean : (d,) or (K, d); prior_cov : (d, d) or (K, d, d).
    noise_scale : σ > 0.
    num_actions : K, required when neither prior has a leading arm axis.
    delta : failure probability δ in (0, 1) of the confidence sets (the reference uses 1/horizon).
    prior_radius : S >= 0, the assumed bound on ‖θ_i − m_i‖ in the prior precision's norm; √d if None.

    ``Policy.params`` is a ``LinUCBParams`` (prior, σ², δ, S are data); the state is a ``LinTSState``.
    """
    mean, cov = broadcast_arm_prior(prior_mean, prior_cov, num_actions)
    noise_var = float(check_positive("noise_scale", noise_scale)) ** 2
    delta = float(check_finite("delta", delta))
    if not 0.0 < delta < 1.0:
        raise ValidationError(f"delta: expected a probability in (0, 1), got {delta}")
    num_arms, d = mean.shape
    radius = float(np.sqrt(d)) if prior_radius is None else float(check_positive("prior_radius", prior_radius, allow_zero=True))
    prior = jax.vmap(gaussian_from_moments)(jnp.asarray(mean), jnp.asarray(cov))
    dtype = prior.info.dtype
    defaults = LinUCBParams(prior, jnp.asarray(noise_var, dtype), jnp.asarray(delta, dtype), jnp.asarray(radius, dtype),
                            _log_det(prior.precision_chol))

    def init(key: jax.Array, params: LinUCBParams | None = None) -> LinTSState:
        params = defaults if params is None else params
        return LinTSState(params.prior, params)

    def act(state: LinTSState, key: jax.Array, context: jax.Array) -> tuple[jax.Array, ActInfo]:
        features = jnp.broadcast_to(context, (num_arms, d))
        posterior = state.posterior
        means = jax.vmap(gaussian_mean)(posterior)
        whitened = jax.vmap(lambda chol, x: solve_triangular(chol, x, lower=True))(posterior.precision_chol, features)
        params = state.params
        width = (jnp.sqrt(2.0 * jnp.log(1.0 / params.delta) + _log_det(posterior.precision_chol) - params.prior_log_det)
                 + params.radius)
        scores = jnp.sum(features * means, axis=-1) + width * jnp.linalg.norm(whitened, axis=-1)
        tie_break = jax.random.uniform(key, (num_arms,))
        action = jnp.argmax(jnp.where(scores >= jnp.max(scores), tie_break, -1.0))
        return action, no_propensity(scores.dtype)

    def update(state: LinTSState, context: jax.Array, action: jax.Array, reward: jax.Array) -> LinTSState:
        return LinTSState(observe_arm(state.posterior, context, action, reward, state.params.noise_var), state.params)

    def posterior_draws(state: LinTSState, key: jax.Array, num_draws: int) -> dict[str, jax.Array]:
        return arm_posterior_draws(state.posterior, key, num_draws)

    return Policy(init, act, update, posterior_draws, defaults)
