"""The closed forms and per-program registries behind ``inference.posterior`` (moved from there; it
re-exports the registries): the conjugate posteriors of ``linear_bandit``, ``linear_bandit_nig``,
``mixed_effect_linear`` and ``restless_dirichlet``, the meTS pseudo-observation Laplace of
``mixed_effect_logistic``, and the tables ``CLOSED_FORMS``, ``CONDITIONAL_FORMS``, ``OBSERVATIONS``,
``DATA_CHECKS`` and ``LAPLACE_FORMS`` that ``posterior`` looks programs up in. Each form takes
``(data, key, num_draws)`` and returns a ``PosteriorResult`` with one chain of ``num_draws`` draws.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from structbandits.inference.conjugate import (
    action_conditional,
    action_marginal,
    effect_evidence,
    effect_posterior,
    gaussian_covariance,
    gaussian_from_moments,
    gaussian_mean,
    gaussian_sample,
    linear_regression_observe_batch,
    linear_regression_stats,
)
from structbandits.inference.bandit_data import check_linear_bandit_data, check_mixed_effect_data
from structbandits.inference.nig import check_linear_bandit_nig_data, linear_bandit_nig_draws
from structbandits.models.linear import linear_bandit, linear_bandit_nig
from structbandits.models.restless import restless_dirichlet
from structbandits.inference.dirichlet import (
    check_transition_data,
    dirichlet_covariance,
    dirichlet_mean,
    dirichlet_sample,
    transition_counts,
)
from structbandits.inference.laplace import DECREMENT_TOLERANCE
from structbandits.inference.posterior_result import PosteriorResult
from structbandits.inference.pseudo_observations import logistic_mode, logistic_pseudo_observations
from structbandits.models.mixed_effect import marginal_action_prior, mixed_effect_linear, mixed_effect_logistic

__all__ = ["CLOSED_FORMS", "CONDITIONAL_FORMS", "DATA_CHECKS", "LAPLACE_FORMS", "LAPLACE_NEWTON_STEPS", "OBSERVATIONS"]


def _arrays(data: Mapping[str, Any], names: tuple[str, ...]) -> tuple[jax.Array, ...]:
    return tuple(jnp.asarray(data[name]) for name in names)


def _linear_bandit_conjugate(data, key, num_draws) -> PosteriorResult:
    prior_mean, prior_cov, contexts, actions, rewards = _arrays(data, ("prior_mean", "prior_cov", "contexts", "actions", "rewards"))
    noise_var = jnp.asarray(data["noise_scale"]) ** 2
    mask = (actions[None, :] == jnp.arange(prior_mean.shape[0])[:, None]).astype(contexts.dtype)  # (K, n)

    def arm_posterior(mean, cov, weights):
        return linear_regression_observe_batch(gaussian_from_moments(mean, cov), contexts * weights[:, None],
                                               rewards * weights, noise_var)

    arms = jax.vmap(arm_posterior)(prior_mean, prior_cov, mask)
    theta = jax.vmap(gaussian_sample, (0, 0, None))(arms, jax.random.split(key, prior_mean.shape[0]), (num_draws,))
    moments = {"theta": (np.asarray(jax.vmap(gaussian_mean)(arms)), np.asarray(jax.vmap(gaussian_covariance)(arms)))}
    return PosteriorResult("conjugate", {"theta": np.asarray(jnp.swapaxes(theta, 0, 1))[None]}, moments)


def _linear_bandit_nig_conjugate(data, key, num_draws) -> PosteriorResult:
    draws, moments = linear_bandit_nig_draws(data, key, num_draws)  # inference.nig
    return PosteriorResult("conjugate", {name: value[None] for name, value in draws.items()}, moments)


def _mixed_effect_from_statistics(data, grams, moments, method, key, num_draws) -> PosteriorResult:
    """The meTS posterior given per-arm statistics ``grams`` (K, d, d), ``moments`` (K, d)."""
    mixing, effect_mean, effect_cov, action_cov = _arrays(data, ("mixing", "effect_mean", "effect_cov", "action_cov"))
    num_arms, (num_effects, d) = mixing.shape[0], effect_mean.shape
    action_chol = jax.vmap(lambda c: gaussian_from_moments(jnp.zeros(d), c).precision_chol)(action_cov)
    effects = effect_posterior(gaussian_from_moments(effect_mean.reshape(-1), effect_cov), mixing,
                               *jax.vmap(effect_evidence)(action_chol, grams, moments))
    effect_key, action_key = jax.random.split(key)
    psi = gaussian_sample(effects, effect_key, (num_draws,))

    def draw_arms(psi_draw, draw_key):
        conditionals = jax.vmap(action_conditional)(action_chol, grams, moments, mixing @ psi_draw.reshape(num_effects, d))
        return jax.vmap(gaussian_sample)(conditionals, jax.random.split(draw_key, num_arms))

    theta = jax.vmap(draw_arms)(psi, jax.random.split(action_key, num_draws))
    theta_mean, theta_cov = jax.vmap(action_marginal, (0, 0, 0, 0, None))(action_chol, grams, moments, mixing, effects)
    exact = {"psi": (np.asarray(gaussian_mean(effects)), np.asarray(gaussian_covariance(effects))),
             "theta": (np.asarray(theta_mean), np.asarray(theta_cov))}
    return PosteriorResult(method, {"psi": np.asarray(psi)[None], "theta": np.asarray(theta)[None]}, exact)


def _arm_masks(data) -> jax.Array:
    """(K, n) 0/1 weights selecting each arm's rounds."""
    actions = jnp.asarray(data["actions"])
    return (actions[None, :] == jnp.arange(np.shape(data["mixing"])[0])[:, None]).astype(jnp.float64)


def _mixed_effect_linear_conjugate(data, key, num_draws) -> PosteriorResult:
    contexts, rewards = _arrays(data, ("contexts", "rewards"))
    noise_var = jnp.asarray(data["noise_scale"]) ** 2
    grams, moments = jax.vmap(lambda w: linear_regression_stats(contexts * w[:, None], rewards * w, noise_var))(_arm_masks(data))
    return _mixed_effect_from_statistics(data, grams, moments, "conjugate", key, num_draws)


LAPLACE_NEWTON_STEPS = 50


def _mixed_effect_logistic_laplace(data, key, num_draws) -> PosteriorResult:
    """The seed's Laplace: per-arm pseudo-observations (G = Hessian, B = G θ̂ + ∇ℓ) at each arm's mode
    under its marginal prior, then the closed-form meTS posterior (``inference.pseudo_observations``)."""
    contexts, rewards = _arrays(data, ("contexts", "rewards"))
    prior_mean, prior_cov = marginal_action_prior(*_arrays(data, ("mixing", "effect_mean", "effect_cov", "action_cov")))
    prior_precision = jnp.linalg.inv(prior_cov)  # once per call, (K, d, d), not a hot path

    def pseudo_observations(weights, mean, precision):
        mode = logistic_mode(mean, contexts, rewards, weights, precision, mean, LAPLACE_NEWTON_STEPS)
        gram, moment = logistic_pseudo_observations(mode, contexts, rewards, weights)
        # Convergence of the arm's Newton: the gradient of its log posterior at the mode and the
        # Newton decrement √(gᵀ(G + Λ)⁻¹g), in sds of the arm's Laplace Gaussian.
        gradient = moment - gram @ mode - precision @ (mode - mean)
        decrement = jnp.sqrt(gradient @ jnp.linalg.solve(gram + precision, gradient))
        return gram, moment, jnp.max(jnp.abs(gradient)), decrement

    grams, moments, gradient_norms, decrements = jax.vmap(pseudo_observations)(_arm_masks(data), prior_mean,
                                                                               prior_precision)
    result = _mixed_effect_from_statistics(data, grams, moments, "laplace", key, num_draws)
    decrement = float(jnp.max(decrements))
    converged = bool(np.isfinite(decrement) and decrement <= DECREMENT_TOLERANCE)
    diagnostics = {"converged": converged, "gradient_norm": float(jnp.max(gradient_norms)),
                   "iterations": LAPLACE_NEWTON_STEPS, "positive_definite": True, "newton_decrement": decrement}
    reason = None if converged else (f"the per-arm Newton stopped after {LAPLACE_NEWTON_STEPS} steps "
                                     f"{decrement:.3g} posterior sds from an arm's mode (tolerance {DECREMENT_TOLERANCE:g})")
    return replace(result, diagnostics=diagnostics), reason


def _restless_dirichlet_conjugate(data, key, num_draws) -> PosteriorResult:
    """Dirichlet(α + n) per transition row (``inference.dirichlet``); n from the counts and/or the list."""
    checked = check_transition_data(**data)
    concentration = jnp.asarray(checked["concentration"])
    if "counts" in checked:
        concentration = concentration + jnp.asarray(checked["counts"])
    if "arms" in checked:
        concentration = concentration + transition_counts(*(jnp.asarray(checked[name]) for name in
                                                             ("arms", "states", "actions", "next_states")),
                                                          concentration.shape)
    draws = dirichlet_sample(key, concentration, (num_draws,))
    moments = {"transitions": (np.asarray(dirichlet_mean(concentration)), np.asarray(dirichlet_covariance(concentration)))}
    return PosteriorResult("conjugate", {"transitions": np.asarray(draws)[None]}, moments)


CLOSED_FORMS: dict[Callable, Callable[..., PosteriorResult]] = {
    linear_bandit: _linear_bandit_conjugate,
    linear_bandit_nig: _linear_bandit_nig_conjugate,
    mixed_effect_linear: _mixed_effect_linear_conjugate,
    restless_dirichlet: _restless_dirichlet_conjugate,
}
# Programs whose closed form holds for some arguments only: when ``applies(data)`` is False, "auto"
# uses the given method instead (the hierarchical restless prior is not conjugate: NUTS).
CONDITIONAL_FORMS: dict[Callable, tuple[Callable[[Mapping[str, Any]], bool], str]] = {
    restless_dirichlet: (lambda data: data.get("groups") is None, "nuts"),
}
# Observed sites a program needs, where they are not the bandits' contexts/actions/rewards.
OBSERVATIONS: dict[Callable, tuple[str, ...]] = {restless_dirichlet: ()}
# Program-specific checks of the data, run for every method (NUTS included).
DATA_CHECKS: dict[Callable, Callable[..., Any]] = {
    restless_dirichlet: lambda data: check_transition_data(**data),
    linear_bandit: check_linear_bandit_data,
    linear_bandit_nig: check_linear_bandit_nig_data,
    mixed_effect_linear: check_mixed_effect_data,
    mixed_effect_logistic: lambda data: check_mixed_effect_data(data, binary=True),
}
LAPLACE_FORMS: dict[Callable, Callable[..., PosteriorResult]] = {
    mixed_effect_logistic: _mixed_effect_logistic_laplace,
}
