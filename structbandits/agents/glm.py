"""Thompson sampling for logistic (Bernoulli-logit) rewards by Laplace pseudo-observations.

meTS-GLM, its factored variant, HierTS-GLM and GLM-TS keep every observation in a history buffer
and, after each round, refit only the pulled arm: a few warm-started Newton (IRLS) steps for the
mode of its log-likelihood under its marginal prior, then the Gaussian pseudo-observations
G = Hessian, B = G θ̂ + ∇ℓ(θ̂) at that mode (``inference.pseudo_observations``). meTS-GLM feeds (G, B) to the same
effect and action posteriors as linear meTS (``mets_core``); GLM-TS conditions each arm's marginal
prior on them, which is the usual per-arm Laplace posterior N(θ̂, (Λ + G)⁻¹).

The buffer has a fixed size ``history_size`` (static shapes under ``jit``): an agent run for longer
than that refits on the most recent ``history_size`` rounds (a sliding window). Each update costs
O(history_size · d² · newton_steps); give a size at least the horizon to keep all data (the
experiment registry passes the horizon).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from structbandits.agents.mets import (
    METSParams,
    METSState,
    average_effect_prior,
    check_effect_prior,
    mets_core,
    validate_mixed_effect_prior,
)
from structbandits.agents.protocol import ActInfo, Policy, no_propensity
from structbandits.agents.thompson import (
    arm_features,
    arm_posterior_draws,
    arm_scores,
    broadcast_arm_prior,
    put_arm,
    take_arm,
)
from structbandits.errors import check_integer
from structbandits.inference.conjugate import GaussianInfo, gaussian_condition, gaussian_from_moments, gaussian_sample
from structbandits.inference.pseudo_observations import logistic_mode, logistic_pseudo_observations
from structbandits.inference.ring_buffer import RingBuffer, ring_append, ring_filled, ring_init
from structbandits.models.mixed_effect import marginal_action_prior

__all__ = ["GLMTSParams", "GLMTSState", "LaplacePrior", "METSGLMParams", "METSGLMState", "glm_ts", "hier_ts_glm",
           "mets_glm"]


def _history_init(size: int, d: int) -> RingBuffer:
    """An empty history of ``size`` rounds: rows ``features`` (d,), ``actions`` () int32, ``rewards`` ()."""
    return ring_init({"features": jnp.zeros(d), "actions": jnp.zeros((), jnp.int32), "rewards": jnp.zeros(())}, size)


def _append(history: RingBuffer, context: jax.Array, action: jax.Array, reward: jax.Array) -> RingBuffer:
    return ring_append(history, {"features": arm_features(context, action), "actions": action, "rewards": reward})


class LaplacePrior(NamedTuple):
    """The per-arm marginal priors the Laplace refits work against: ``mean`` (K, d), ``precision`` (K, d, d)."""

    mean: jax.Array
    precision: jax.Array


def _laplace_prior(prior_mean: np.ndarray, prior_cov: np.ndarray) -> LaplacePrior:
    precision_chol = jax.vmap(gaussian_from_moments)(jnp.asarray(prior_mean), jnp.asarray(prior_cov)).precision_chol
    return LaplacePrior(jnp.asarray(prior_mean), precision_chol @ jnp.swapaxes(precision_chol, 1, 2))


def _refit(prior: LaplacePrior, newton_steps: int, history: RingBuffer, arm: jax.Array,
           start: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Mode (d,) of arm's data under its marginal prior, warm-started at ``start``, and its (G, B)."""
    features, rewards = history.rows["features"], history.rows["rewards"]
    weights = ((history.rows["actions"] == arm) & ring_filled(history)).astype(rewards.dtype)
    mode = logistic_mode(start, features, rewards, weights, prior.precision[arm], prior.mean[arm], newton_steps)
    return (mode, *logistic_pseudo_observations(mode, features, rewards, weights))


def _check_sizes(history_size: int, newton_steps: int) -> tuple[int, int]:
    return (check_integer("history_size", history_size, minimum=1),
            check_integer("newton_steps", newton_steps, minimum=1))


class METSGLMParams(NamedTuple):
    """meTS-GLM hyperparameters: ``core`` (METSParams, the mixed-effect prior in information form;
    ``noise_var`` 1 and unused) and ``laplace`` (LaplacePrior, each arm's marginal prior, Ψ integrated out)."""

    core: METSParams
    laplace: LaplacePrior


class METSGLMState(NamedTuple):
    """meTS-GLM state: ``posterior`` (METSState over the pseudo-observations, holding ``params.core``),
    ``history``, ``mode`` (K, d), each arm's latest Laplace expansion point (the warm start), and ``params``."""

    posterior: METSState
    history: RingBuffer
    mode: jax.Array
    params: METSGLMParams


def mets_glm(mixing, effect_mean, effect_cov, action_cov, *, history_size: int, factored: bool = False,
             newton_steps: int = 3) -> Policy:
    """meTS for Bernoulli(sigmoid(xᵀθ_a)) rewards with Laplace pseudo-observations.

    Parameters
    ----------
    mixing, effect_mean, effect_cov, action_cov : the mixed-effect prior, as in ``mets``.
    history_size : T, observations kept for the per-arm refits (at least the horizon to keep all).
    factored : block-diagonal effect posterior (meTS-GLM-factored).
    newton_steps : Newton steps per refit, warm-started from the arm's previous mode.

    Contexts are (d,) shared or (K, d) per arm; rewards are 0 or 1. ``Policy.params`` is a
    ``METSGLMParams``; ``history_size``, ``newton_steps`` and ``factored`` are structural.
    """
    mixing, effect_mean, effect_cov, action_cov = validate_mixed_effect_prior(mixing, effect_mean, effect_cov, action_cov)
    history_size, newton_steps = _check_sizes(history_size, newton_steps)
    core = mets_core(mixing, effect_mean, effect_cov, action_cov, factored)
    marginal_mean, marginal_cov = marginal_action_prior(*(jnp.asarray(a) for a in (mixing, effect_mean, effect_cov, action_cov)))
    defaults = METSGLMParams(core.params, _laplace_prior(marginal_mean, marginal_cov))
    d = effect_mean.shape[1]

    def init(key: jax.Array, params: METSGLMParams | None = None) -> METSGLMState:
        params = defaults if params is None else params
        return METSGLMState(core.init(params.core), _history_init(history_size, d), params.laplace.mean, params)

    def act(state: METSGLMState, key: jax.Array, context: jax.Array) -> tuple[jax.Array, ActInfo]:
        theta = core.sample_actions(state.posterior, key)
        return jnp.argmax(arm_scores(theta, context)), no_propensity(theta.dtype)

    def update(state: METSGLMState, context: jax.Array, action: jax.Array, reward: jax.Array) -> METSGLMState:
        history = _append(state.history, context, action, reward)
        mode, gram, moment = _refit(state.params.laplace, newton_steps, history, action, state.mode[action])
        conditional = state.posterior.params.action_precision[action] + gram
        conditional_chol = jnp.linalg.cholesky(0.5 * (conditional + conditional.T))
        posterior = core.set_arm(state.posterior, action, gram, moment, conditional_chol)
        return METSGLMState(posterior, history, state.mode.at[action].set(mode), state.params)

    def posterior_draws(state: METSGLMState, key: jax.Array, num_draws: int) -> dict[str, jax.Array]:
        return core.posterior_draws(state.posterior, key, num_draws)

    return Policy(init, act, update, posterior_draws, defaults)


def hier_ts_glm(effect_mean, effect_cov, action_cov, *, num_actions: int, history_size: int,
                newton_steps: int = 3) -> Policy:
    """HierTS for logistic rewards: ``mets_glm`` with one shared hyper-parameter (see ``hier_ts``)."""
    mean, cov = average_effect_prior(*check_effect_prior(effect_mean, effect_cov))
    return mets_glm(np.ones((num_actions, 1)), mean, cov, action_cov, history_size=history_size,
                    newton_steps=newton_steps)


class GLMTSParams(NamedTuple):
    """GLM-TS hyperparameters: the per-arm prior in information form (``prior``: ``precision_chol``
    (K, d, d), ``info`` (K, d)) and as the Laplace refits use it (``laplace``: mean (K, d), precision (K, d, d))."""

    prior: GaussianInfo
    laplace: LaplacePrior


class GLMTSState(NamedTuple):
    """GLM-TS state: per-arm Laplace posteriors ``posterior`` (K stacked), ``history``, ``mode`` (K, d), ``params``."""

    posterior: GaussianInfo
    history: RingBuffer
    mode: jax.Array
    params: GLMTSParams


def glm_ts(prior_mean, prior_cov, *, history_size: int, num_actions: int | None = None,
           newton_steps: int = 3) -> Policy:
    """GLM-TS: independent per-arm Laplace posteriors for Bernoulli(sigmoid(xᵀθ_a)) rewards.

    Parameters
    ----------
    prior_mean : (d,) shared or (K, d) per-arm prior means (for meTS comparisons, the marginal prior).
    prior_cov : (d, d) or (K, d, d) prior covariances.
    history_size, newton_steps : as in ``mets_glm``.
    num_actions : K, required when neither prior has a leading arm axis.

    ``Policy.params`` is a ``GLMTSParams``; ``history_size`` and ``newton_steps`` are structural.
    """
    mean, cov = broadcast_arm_prior(prior_mean, prior_cov, num_actions)
    history_size, newton_steps = _check_sizes(history_size, newton_steps)
    defaults = GLMTSParams(jax.vmap(gaussian_from_moments)(jnp.asarray(mean), jnp.asarray(cov)),
                           _laplace_prior(mean, cov))
    num_arms, d = mean.shape

    def init(key: jax.Array, params: GLMTSParams | None = None) -> GLMTSState:
        params = defaults if params is None else params
        return GLMTSState(params.prior, _history_init(history_size, d), params.laplace.mean, params)

    def act(state: GLMTSState, key: jax.Array, context: jax.Array) -> tuple[jax.Array, ActInfo]:
        theta = jax.vmap(gaussian_sample)(state.posterior, jax.random.split(key, num_arms))
        return jnp.argmax(arm_scores(theta, context)), no_propensity(theta.dtype)

    def update(state: GLMTSState, context: jax.Array, action: jax.Array, reward: jax.Array) -> GLMTSState:
        history = _append(state.history, context, action, reward)
        mode, gram, moment = _refit(state.params.laplace, newton_steps, history, action, state.mode[action])
        arm = gaussian_condition(take_arm(state.params.prior, action), gram, moment)
        return GLMTSState(put_arm(state.posterior, action, arm), history, state.mode.at[action].set(mode),
                          state.params)

    def posterior_draws(state: GLMTSState, key: jax.Array, num_draws: int) -> dict[str, jax.Array]:
        return arm_posterior_draws(state.posterior, key, num_draws)

    return Policy(init, act, update, posterior_draws, defaults)
