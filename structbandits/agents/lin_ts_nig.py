"""Linear Thompson sampling with unknown noise variance: a Normal-Inverse-Gamma prior per arm or shared.

``lin_ts_nig`` is Thompson sampling on the program ``models.linear_bandit_nig``:

    σ²_a ~ InvGamma(α_a, β_a),   θ_a | σ²_a ~ N(m_a, σ²_a V_a),   y = xᵀθ_a + ε,  ε ~ N(0, σ²_a)

(``shared=True``: one σ² for all arms, the θ_a independent given it). The posterior stays NIG
(``inference.nig.RegressionNIG``, the unscaled precision Λ_a = V_a⁻¹ + Σ x xᵀ in Cholesky form).
Each round draws σ² (one per arm, or one shared) and then θ_a | σ² for every arm, and plays
argmax_a x_aᵀθ_a; the selection probability is ``thompson_choice``'s Monte-Carlo estimate from
``propensity_draws`` fresh joint draws. The update is the pulled arm's rank-one update of Λ and
η = Λm, α + 1/2 and β plus the one-step prediction residual term (for the pulled arm's α, β or the
shared ones: with a common σ² every observation informs it). O(d²) per update.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from structbandits.agents.propensity import thompson_choice
from structbandits.agents.protocol import ActInfo, Policy
from structbandits.agents.thompson import arm_features, arm_scores, broadcast_arm_prior
from structbandits.errors import ValidationError, check_integer, check_positive
from structbandits.inference.forgetting import (
    check_forgetting,
    regression_nig_forget,
    regression_nig_forget_directional_block,
    regression_nig_remove_block,
    window_init,
    window_push,
)
from structbandits.inference.nig import (
    RegressionNIG,
    regression_nig_observe_block,
    regression_nig_prior,
    regression_nig_sample,
)

__all__ = ["LinTSNIGForgettingParams", "LinTSNIGParams", "LinTSNIGState", "LinTSNIGWindowState", "lin_ts_nig"]


class LinTSNIGParams(NamedTuple):
    """LinTS-NIG hyperparameters: the prior of every arm, ``prior`` with ``precision_chol`` (K, d, d)
    (Cholesky factor of V_a⁻¹), ``info`` (K, d) (V_a⁻¹ m_a) and ``alpha``, ``beta`` (K,) per arm or ()
    shared."""

    prior: RegressionNIG


class LinTSNIGForgettingParams(NamedTuple):
    """``LinTSNIGParams`` and the forgetting rate γ () of ``lin_ts_nig(..., forgetting="exponential" or
    "stabilised")``: data, so a sweep over γ runs one program."""

    prior: RegressionNIG
    forgetting_rate: jax.Array


class LinTSNIGState(NamedTuple):
    """The arms' NIG posterior, fields shaped as the prior's; and the params."""

    posterior: RegressionNIG
    params: LinTSNIGParams


class LinTSNIGWindowState(NamedTuple):
    """``LinTSNIGState`` of ``lin_ts_nig(..., forgetting="window")`` with ``window``, a ``RingBuffer`` of
    the last w rounds' rows {"x": (d,) pulled arm's features, "action": (), "reward": ()}."""

    posterior: RegressionNIG
    params: LinTSNIGParams
    window: Any


def _noise_prior(name: str, value, num_arms: int, shared: bool) -> np.ndarray:
    value = check_positive(name, value)
    if value.shape == ():
        return value if shared else np.full(num_arms, value)
    if shared:
        raise ValidationError(f"{name}: expected a scalar with shared=True (one noise variance for all arms), "
                              f"got shape {value.shape}")
    if value.shape != (num_arms,):
        raise ValidationError(f"{name}: expected a scalar or shape ({num_arms},) (one per arm), "
                              f"got shape {value.shape}")
    return value


def lin_ts_nig(
    prior_mean,
    prior_cov,
    alpha,
    beta,
    *,
    num_actions: int | None = None,
    shared: bool = False,
    propensity_draws: int = 0,
    forgetting: str | None = None,
    forgetting_rate: float = 1.0,
    window: int | None = None,
) -> Policy:
    """Linear Thompson sampling with a Normal-Inverse-Gamma prior (unknown noise variance).

    Parameters
    ----------
    prior_mean : (d,) shared or (K, d) per-arm prior means m_a.
    prior_cov : (d, d) shared or (K, d, d) per-arm covariances V_a per unit noise variance:
        θ_a | σ² ~ N(m_a, σ² V_a) (the prior covariance of θ_a is E[σ²] V_a = β/(α − 1) V_a).
    alpha, beta : shape α > 0 and scale β > 0 of the InvGamma prior of σ²: scalars, or (K,) per arm
        when not ``shared``.
    num_actions : K, required when neither prior_mean nor prior_cov has a leading arm axis.
    shared : False: one noise variance per arm; True: one for all arms, learnt from every reward.
    propensity_draws : M >= 0. With M > 0 each decision also reports a Monte-Carlo estimate of its
        selection probability from M extra joint posterior draws (cost O(M K d²) per round); with 0
        the propensity is NaN.
    forgetting : None (default: the stationary posterior), "exponential" (before each observation every
        arm's Λ, η, α and 2β + mᵀΛm decay toward the prior by γ; O(K d³) per round), "stabilised" (the
        pulled arm forgets only along the pulled context, α by (1 − γ)/2; O(d³)) or "window" (the
        posterior of the last ``window`` rounds; O(d³)). See ``inference.forgetting``.
    forgetting_rate : γ in (0, 1] for "exponential" and "stabilised" (1: nothing is forgotten); held in
        ``Policy.params`` (``LinTSNIGForgettingParams``), so every γ shares one program.
    window : w >= 1 rounds, with ``forgetting="window"`` only (a buffer shape: structural).

    Returns
    -------
    Policy with state ``LinTSNIGState`` (``LinTSNIGWindowState`` with a window) and params
    ``LinTSNIGParams`` (the prior, as data); its
    context is a (d,) vector shared by all arms or a (K, d) matrix with one row per arm, its reward a
    scalar. ``posterior_draws`` gives ``theta`` (n, K, d) and ``noise_var`` (n, K), or (n,) shared.
    """
    mean, cov = broadcast_arm_prior(prior_mean, prior_cov, num_actions)
    if not isinstance(shared, (bool, np.bool_)):
        raise ValidationError(f"shared: expected True or False, got {shared!r}")
    shared = bool(shared)
    num_arms = mean.shape[0]
    alpha = _noise_prior("alpha", alpha, num_arms, shared)
    beta = _noise_prior("beta", beta, num_arms, shared)
    propensity_draws = check_integer("propensity_draws", propensity_draws, minimum=0)
    forgetting, rate, window = check_forgetting(forgetting, forgetting_rate, window)
    blocks = jax.vmap(regression_nig_prior, (0, 0, None, None))(jnp.asarray(mean), jnp.asarray(cov), 0.0, 0.0)
    dtype = blocks.info.dtype
    defaults = LinTSNIGParams(blocks._replace(alpha=jnp.asarray(alpha, dtype), beta=jnp.asarray(beta, dtype)))
    if forgetting in ("exponential", "stabilised"):
        defaults = LinTSNIGForgettingParams(defaults.prior, jnp.asarray(rate, dtype))

    def draw_scores(posterior: RegressionNIG, key: jax.Array, context: jax.Array, shape: tuple[int, ...]):
        theta, _ = regression_nig_sample(posterior, key, shape)  # (*shape, K, d)
        return arm_scores(theta, context)  # (*shape, K)

    def init(key: jax.Array, params: LinTSNIGParams | None = None) -> LinTSNIGState:
        params = defaults if params is None else params
        if forgetting == "window":
            row = {"x": params.prior.info[0], "action": jnp.zeros((), jnp.int32), "reward": params.prior.info[0, 0]}
            return LinTSNIGWindowState(params.prior, params, window_init(row, window))
        return LinTSNIGState(params.prior, params)

    def act(state: LinTSNIGState, key: jax.Array, context: jax.Array) -> tuple[jax.Array, ActInfo]:
        return thompson_choice(lambda k, shape: draw_scores(state.posterior, k, context, shape), key,
                               propensity_draws, context.dtype)

    def update(state: LinTSNIGState, context: jax.Array, action: jax.Array, reward: jax.Array) -> LinTSNIGState:
        if forgetting is None:
            posterior = regression_nig_observe_block(state.posterior, action, arm_features(context, action), reward)
            return LinTSNIGState(posterior, state.params)
        x, posterior, params = arm_features(context, action), state.posterior, state.params
        if forgetting == "exponential":
            posterior = regression_nig_forget(posterior, params.prior, params.forgetting_rate)
        elif forgetting == "stabilised":
            posterior = regression_nig_forget_directional_block(posterior, params.prior, action, x, params.forgetting_rate)
        else:
            buffer, leaving, weight = window_push(state.window, {"x": x, "action": action, "reward": reward},
                                                  posterior.info.dtype)
            posterior = regression_nig_remove_block(posterior, leaving["action"], leaving["x"], leaving["reward"], weight)
        posterior = regression_nig_observe_block(posterior, action, x, reward)
        if forgetting == "window":
            return LinTSNIGWindowState(posterior, params, buffer)
        return LinTSNIGState(posterior, params)

    def posterior_draws(state: LinTSNIGState, key: jax.Array, num_draws: int) -> dict[str, jax.Array]:
        theta, noise_var = regression_nig_sample(state.posterior, key, (num_draws,))
        return {"theta": theta, "noise_var": noise_var}

    return Policy(init, act, update, posterior_draws, defaults)
