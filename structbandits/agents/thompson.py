"""Thompson sampling with closed-form Gaussian posteriors.

``lin_ts`` is linear Thompson sampling on the program ``models.linear_bandit``: one Gaussian
posterior per arm, conditioned on that arm's (context, reward) pairs with known noise σ. Each
round it draws θ̃_a from every arm's posterior and plays argmax_a xᵀθ̃_a; the update is a rank-one
Cholesky update of the pulled arm only (O(d²)).

With two arms the selection probabilities have a closed form (``lin_ts_two_arm_probabilities``): the
score gap x₀ᵀθ₀ − x₁ᵀθ₁ is Gaussian under the posterior, so P(arm 0) = Φ(mean gap / sd of the gap).
``propensity_draws="exact"`` reports it; ``agents.clipping.clipped(..., probabilities=...)`` uses it.

``forgetting`` (off by default, and then the agent is exactly the stationary one) lets the posteriors
track a drifting truth (``inference.forgetting``): "exponential" decays every arm's data toward its
prior by γ each round, "stabilised" decays the pulled arm only along the pulled context, "window" keeps
the last w rounds in a buffer and removes the one leaving it. γ is data (``LinTSForgettingParams``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import solve_triangular
from jax.scipy.special import ndtr

from structbandits.agents.propensity import thompson_choice
from structbandits.agents.protocol import ActInfo, Policy
from structbandits.errors import (
    ValidationError,
    check_finite,
    check_integer,
    check_positive,
    check_positive_definite,
)
from structbandits.inference.conjugate import (
    GaussianInfo,
    gaussian_from_moments,
    gaussian_mean,
    linear_regression_observe,
    stacked_gaussian_draws,
)
from structbandits.inference.forgetting import (
    check_forgetting,
    gaussian_forget,
    gaussian_forget_directional,
    gaussian_remove,
    window_init,
    window_push,
)

__all__ = [
    "LinTSForgettingParams",
    "LinTSParams",
    "LinTSState",
    "LinTSWindowState",
    "arm_draws",
    "arm_features",
    "arm_posterior_draws",
    "arm_scores",
    "broadcast_arm_prior",
    "forgetting_observe_arm",
    "lin_ts",
    "lin_ts_two_arm_probabilities",
    "observe_arm",
    "put_arm",
    "take_arm",
]


def arm_scores(theta: jax.Array, context: jax.Array) -> jax.Array:
    """x_iᵀθ_i for every arm: ``theta`` (..., K, d); ``context`` (d,) shared or (K, d) per arm."""
    return theta @ context if context.ndim == 1 else jnp.sum(theta * context, axis=-1)


def arm_features(context: jax.Array, action: jax.Array) -> jax.Array:
    """The pulled arm's feature vector (d,) from a shared (d,) or per-arm (K, d) context."""
    return context if context.ndim == 1 else context[action]


def take_arm(stack, arm: jax.Array):
    """One arm's slice of a pytree of per-arm arrays (leading axis K)."""
    return jax.tree.map(lambda leaf: leaf[arm], stack)


def put_arm(stack, arm: jax.Array, value):
    """``stack`` with arm's slice replaced by ``value``."""
    return jax.tree.map(lambda leaf, one: leaf.at[arm].set(one), stack, value)


def observe_arm(posteriors: GaussianInfo, context: jax.Array, action: jax.Array, reward: jax.Array,
                noise_var: float) -> GaussianInfo:
    """Per-arm Gaussian posteriors (K stacked) after the pulled arm's linear-Gaussian observation. O(d²)."""
    arm = linear_regression_observe(take_arm(posteriors, action), arm_features(context, action), reward, noise_var)
    return put_arm(posteriors, action, arm)


def arm_draws(posteriors: GaussianInfo, key: jax.Array, shape: tuple[int, ...] = ()) -> jax.Array:
    """θ̃ (K, *shape, d) from per-arm Gaussian posteriors (K stacked), all arms at once.

    Arm k's standard normals are ``jax.random.normal(split(key, K)[k], shape + (d,))``, the draws
    ``jax.vmap(gaussian_sample)`` over the split keys would use, mapped through
    ``stacked_gaussian_draws`` (substitution vectorised over the arms, not K triangular solves): the same
    law and the same normals, so the draws agree with the per-arm solves to rounding (~1e-16 relative).
    """
    num_arms, d = posteriors.info.shape
    keys = jax.random.split(key, num_arms)
    noise = jax.vmap(lambda k: jax.random.normal(k, shape + (d,), dtype=posteriors.info.dtype))(keys)
    return stacked_gaussian_draws(posteriors.precision_chol, posteriors.info, noise)


def arm_posterior_draws(posteriors: GaussianInfo, key: jax.Array, num_draws: int) -> dict[str, jax.Array]:
    """{"theta": (num_draws, K, d)} from per-arm Gaussian posteriors (K stacked)."""
    return {"theta": jnp.swapaxes(arm_draws(posteriors, key, (num_draws,)), 0, 1)}


class LinTSParams(NamedTuple):
    """LinTS hyperparameters: the per-arm prior in information form (``precision_chol`` (K, d, d),
    ``info`` (K, d)) and the noise variance σ² (scalar)."""

    prior: GaussianInfo
    noise_var: jax.Array


class LinTSForgettingParams(NamedTuple):
    """``LinTSParams`` and the forgetting rate γ () of ``lin_ts(..., forgetting="exponential" or
    "stabilised")``: data, so a sweep over γ runs one program."""

    prior: GaussianInfo
    noise_var: jax.Array
    forgetting_rate: jax.Array


class LinTSState(NamedTuple):
    """Per-arm posteriors, stacked: ``precision_chol`` (K, d, d), ``info`` (K, d); and the params."""

    posterior: GaussianInfo
    params: LinTSParams


class LinTSWindowState(NamedTuple):
    """``LinTSState`` of ``lin_ts(..., forgetting="window")`` with ``window``, a ``RingBuffer`` of the last
    w rounds' rows {"x": (d,) pulled arm's features, "action": (), "reward": ()}."""

    posterior: GaussianInfo
    params: LinTSParams
    window: Any


def forgetting_observe_arm(forgetting: str, state, context: jax.Array, action: jax.Array, reward: jax.Array):
    """(posteriors, buffer or None) of a LinTS-form state after forgetting and the pulled arm's observation:
    per-arm Gaussians ``state.posterior`` with priors ``state.params.prior``, noise ``state.params.noise_var``
    and, for "exponential" / "stabilised", γ ``state.params.forgetting_rate``; "window" reads
    ``state.window``. O(K d³) for "exponential" (every arm decays), O(d³) otherwise."""
    params, posterior = state.params, state.posterior
    x = arm_features(context, action)
    buffer = None
    if forgetting == "exponential":
        posterior = jax.vmap(gaussian_forget, (0, 0, None))(posterior, params.prior, params.forgetting_rate)
    elif forgetting == "stabilised":
        arm = gaussian_forget_directional(take_arm(posterior, action), take_arm(params.prior, action), x,
                                          params.forgetting_rate)
        posterior = put_arm(posterior, action, arm)
    else:
        buffer, leaving, weight = window_push(state.window, {"x": x, "action": action, "reward": reward},
                                              posterior.info.dtype)
        arm = gaussian_remove(take_arm(posterior, leaving["action"]), leaving["x"], leaving["reward"],
                              params.noise_var, weight)
        posterior = put_arm(posterior, leaving["action"], arm)
    return observe_arm(posterior, context, action, reward, params.noise_var), buffer


def lin_ts_two_arm_probabilities(state: LinTSState, context: jax.Array) -> jax.Array:
    """Exact probabilities (2,) that ``lin_ts`` with two arms plays arm 0 and arm 1 at ``state``, ``context``.

    The arms' posteriors are independent Gaussians N(m_a, Σ_a), so the Thompson score gap
    g = x₀ᵀθ₀ − x₁ᵀθ₁ is N(x₀ᵀm₀ − x₁ᵀm₁, x₀ᵀΣ₀x₀ + x₁ᵀΣ₁x₁) and P(arm 0) = P(g > 0) = Φ(mean / sd);
    each tail is computed as Φ of its own argument (no 1 − Φ cancellation). xᵀΣx = ‖L⁻¹x‖² with the
    precision's Cholesky factor L (Σ = L⁻ᵀL⁻¹), so no covariance is formed. Where the gap has sd 0
    (a zero context) argmax breaks the tie towards arm 0, as ``act`` does. Jittable.

    Parameters
    ----------
    state : a ``LinTSState`` with two arms (``posterior.info`` (2, d)).
    context : (d,) shared by both arms, or (2, d), one row per arm.
    """
    posterior = state.posterior
    if posterior.info.shape[0] != 2:
        raise ValidationError(f"state: expected a lin_ts state with two arms (the closed form is for a pair of "
                              f"Gaussian scores), got {posterior.info.shape[0]} arms")
    features = jnp.broadcast_to(context, posterior.info.shape)  # (2, d), whether shared or per arm
    means = jax.vmap(gaussian_mean)(posterior)
    whitened = jax.vmap(lambda chol, x: solve_triangular(chol, x, lower=True))(posterior.precision_chol, features)
    gap = jnp.sum(features[0] * means[0]) - jnp.sum(features[1] * means[1])
    sd = jnp.sqrt(jnp.sum(whitened**2))
    z = gap / jnp.where(sd > 0, sd, 1.0)
    first = jnp.where(sd > 0, ndtr(z), (gap >= 0).astype(z.dtype))
    second = jnp.where(sd > 0, ndtr(-z), (gap < 0).astype(z.dtype))
    return jnp.stack([first, second])


def broadcast_arm_prior(prior_mean, prior_cov, num_actions: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Validate a per-arm Gaussian prior and broadcast it to (K, d) means and (K, d, d) covariances."""
    mean = check_finite("prior_mean", prior_mean)
    cov = check_positive_definite("prior_cov", prior_cov)
    if mean.ndim not in (1, 2):
        raise ValidationError(f"prior_mean: expected shape (d,) or (K, d), got shape {mean.shape}")
    if cov.ndim not in (2, 3):
        raise ValidationError(f"prior_cov: expected shape (d, d) or (K, d, d), got shape {cov.shape}")
    d = mean.shape[-1]
    if num_actions is not None:
        num_actions = check_integer("num_actions", num_actions, minimum=1)
    if cov.shape[-1] != d:
        raise ValidationError(f"prior_cov: expected shape (..., {d}, {d}) to match prior_mean, got shape {cov.shape}")
    sizes = {n for n in (mean.shape[0] if mean.ndim == 2 else None, cov.shape[0] if cov.ndim == 3 else None,
                         num_actions) if n is not None}
    if len(sizes) != 1:
        raise ValidationError(
            "num_actions: expected the number of arms to be given by num_actions or by a leading axis of "
            f"prior_mean / prior_cov, and all of them to agree; got {sorted(sizes) or 'none'}"
        )
    k = sizes.pop()
    return np.broadcast_to(mean, (k, d)).copy(), np.broadcast_to(cov, (k, d, d)).copy()


def lin_ts(
    prior_mean,
    prior_cov,
    noise_scale: float,
    *,
    num_actions: int | None = None,
    propensity_draws: int | str = 0,
    forgetting: str | None = None,
    forgetting_rate: float = 1.0,
    window: int | None = None,
) -> Policy:
    """Linear Thompson sampling with a Gaussian prior N(prior_mean, prior_cov) per arm.

    Parameters
    ----------
    prior_mean : (d,) shared or (K, d) per-arm prior means.
    prior_cov : (d, d) shared or (K, d, d) per-arm prior covariances.
    noise_scale : known reward noise standard deviation σ > 0.
    num_actions : K, required when neither prior has a leading arm axis.
    propensity_draws : M >= 0. With M > 0 each decision also reports a Monte-Carlo estimate of its
        selection probability from M extra posterior draws (cost O(M K d²) per round); with 0 the
        propensity is NaN. With ``"exact"`` (two arms only) it reports the exact probability
        (``lin_ts_two_arm_probabilities``, O(d²)); the action is the same as with any M.
    forgetting : None (default: the stationary posterior), "exponential" (before each observation every
        arm's precision and information decay toward the prior, Λ ← γΛ + (1 − γ)Λ₀; O(K d³) per round),
        "stabilised" (the pulled arm forgets only along the pulled context, Λ − Λ₀ ≥ γ(Λ_old − Λ₀);
        O(d³)) or "window" (the posterior of the last ``window`` rounds; O(d³)). See ``inference.forgetting``.
    forgetting_rate : γ in (0, 1] for "exponential" and "stabilised" (1: nothing is forgotten); held in
        ``Policy.params`` (``LinTSForgettingParams``), so every γ shares one program.
    window : w >= 1 rounds, with ``forgetting="window"`` only (a buffer shape: structural).

    Returns
    -------
    Policy whose context is a (d,) vector shared by all arms or a (K, d) matrix with one row per
    arm, and whose reward is a scalar. State ``LinTSState`` (``LinTSWindowState`` with a window).
    """
    mean, cov = broadcast_arm_prior(prior_mean, prior_cov, num_actions)
    noise_var = float(check_positive("noise_scale", noise_scale)) ** 2
    if isinstance(propensity_draws, str) and propensity_draws != "exact":
        raise ValidationError(f'propensity_draws: expected an integer >= 0 or "exact", got {propensity_draws!r}')
    exact = isinstance(propensity_draws, str)
    if exact and mean.shape[0] != 2:
        raise ValidationError(f'propensity_draws: "exact" is available for two arms only (a closed form for a pair '
                              f"of Gaussian scores), got {mean.shape[0]} arms; pass a number of Monte-Carlo draws")
    propensity_draws = 0 if exact else check_integer("propensity_draws", propensity_draws, minimum=0)
    forgetting, rate, window = check_forgetting(forgetting, forgetting_rate, window)
    defaults = LinTSParams(jax.vmap(gaussian_from_moments)(jnp.asarray(mean), jnp.asarray(cov)),
                           jnp.asarray(noise_var))
    if forgetting in ("exponential", "stabilised"):
        defaults = LinTSForgettingParams(*defaults, jnp.asarray(rate, defaults.noise_var.dtype))

    def draw_scores(posterior: GaussianInfo, key: jax.Array, context: jax.Array, shape: tuple[int, ...]):
        theta = arm_draws(posterior, key, shape)  # (K, *shape, d)
        return arm_scores(jnp.moveaxis(theta, 0, -2), context)  # (*shape, K)

    def init(key: jax.Array, params: LinTSParams | None = None) -> LinTSState:
        params = defaults if params is None else params
        if forgetting == "window":
            row = {"x": params.prior.info[0], "action": jnp.zeros((), jnp.int32), "reward": params.noise_var}
            return LinTSWindowState(params.prior, params, window_init(row, window))
        return LinTSState(params.prior, params)

    def act(state: LinTSState, key: jax.Array, context: jax.Array) -> tuple[jax.Array, ActInfo]:
        if exact:  # the acting draw is thompson_choice's (first half of the key): the same actions
            action = jnp.argmax(draw_scores(state.posterior, jax.random.split(key)[0], context, ()))
            probabilities = lin_ts_two_arm_probabilities(state, context)
            return action, ActInfo(probabilities[action].astype(context.dtype))
        return thompson_choice(lambda k, shape: draw_scores(state.posterior, k, context, shape), key,
                               propensity_draws, context.dtype)

    def update(state: LinTSState, context: jax.Array, action: jax.Array, reward: jax.Array) -> LinTSState:
        if forgetting is None:
            return LinTSState(observe_arm(state.posterior, context, action, reward, state.params.noise_var), state.params)
        posterior, buffer = forgetting_observe_arm(forgetting, state, context, action, reward)
        return LinTSState(posterior, state.params) if buffer is None else LinTSWindowState(posterior, state.params, buffer)

    def posterior_draws(state: LinTSState, key: jax.Array, num_draws: int) -> dict[str, jax.Array]:
        return arm_posterior_draws(state.posterior, key, num_draws)

    return Policy(init, act, update, posterior_draws, defaults)
