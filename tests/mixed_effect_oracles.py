"""Shared oracles for the mixed-effect tests: a random small problem, the closed forms, and the
dense joint Gaussian posterior over (vec Ψ, θ_1..θ_K) computed with explicit inverses."""

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer import Predictive

from structbandits.inference.conjugate import (
    action_marginal,
    effect_evidence,
    effect_posterior,
    gaussian_from_moments,
    linear_regression_stats,
)
from structbandits.models.mixed_effect import mixed_effect_linear

K, L, D, N, NOISE = 3, 2, 2, 50, 0.5


def make_problem(seed, empty_arm=None):
    rng = np.random.default_rng(seed)
    mixing = rng.uniform(-1, 1, size=(K, L))  # negative weights are allowed
    effect_mean = rng.normal(size=(L, D))
    a = rng.normal(size=(L * D, L * D))
    effect_cov = a @ a.T / (L * D) + np.eye(L * D)
    b = rng.normal(size=(K, D, D))
    action_cov = 0.3 * (b @ np.swapaxes(b, 1, 2) / D + np.eye(D))
    contexts = rng.uniform(-1, 1, size=(N, D))
    actions = rng.integers(0, K, size=N)
    if empty_arm is not None:
        actions[actions == empty_arm] = (empty_arm + 1) % K
    args = tuple(map(jnp.asarray, (mixing, effect_mean, effect_cov, action_cov)))
    draw = Predictive(mixed_effect_linear, num_samples=1)(jax.random.PRNGKey(seed), *args, NOISE,
                                                            jnp.asarray(contexts), jnp.asarray(actions))
    return args, jnp.asarray(contexts), jnp.asarray(actions), draw["reward"][0]


def closed_form(problem):
    (mixing, effect_mean, effect_cov, action_cov), contexts, actions, rewards = problem
    stats = [linear_regression_stats(contexts[actions == i], rewards[actions == i], NOISE**2) for i in range(K)]
    grams, moments = jnp.stack([s[0] for s in stats]), jnp.stack([s[1] for s in stats])
    action_chol = jax.vmap(lambda c: gaussian_from_moments(jnp.zeros(D), c).precision_chol)(action_cov)
    evidence = jax.vmap(effect_evidence)(action_chol, grams, moments)
    effects = effect_posterior(gaussian_from_moments(effect_mean.reshape(-1), effect_cov), mixing, *evidence)
    marginals = [action_marginal(action_chol[i], grams[i], moments[i], mixing[i], effects) for i in range(K)]
    return effects, marginals, action_chol, grams, moments


def dense_joint_posterior(problem):
    """The textbook Gaussian posterior over z = (vec Ψ, θ_1..θ_K) with explicit inverses."""
    (mixing, effect_mean, effect_cov, action_cov), contexts, actions, rewards = map(
        lambda v: np.asarray(v) if not isinstance(v, tuple) else tuple(map(np.asarray, v)), problem)
    a = np.kron(mixing, np.eye(D))  # (K d, L d): stacked A_i = b_iᵀ ⊗ I_d
    block_diag = np.zeros((K * D, K * D))
    for i in range(K):
        block_diag[i * D:(i + 1) * D, i * D:(i + 1) * D] = action_cov[i]
    prior_mean = np.concatenate([effect_mean.reshape(-1), a @ effect_mean.reshape(-1)])
    prior_cov = np.block([[effect_cov, effect_cov @ a.T], [a @ effect_cov, a @ effect_cov @ a.T + block_diag]])
    design = np.zeros((N, L * D + K * D))
    for t, (x, i) in enumerate(zip(contexts, actions)):
        design[t, L * D + i * D:L * D + (i + 1) * D] = x
    precision = np.linalg.inv(prior_cov) + design.T @ design / NOISE**2
    cov = np.linalg.inv(precision)
    mean = cov @ (np.linalg.solve(prior_cov, prior_mean) + design.T @ rewards / NOISE**2)
    return mean, cov
