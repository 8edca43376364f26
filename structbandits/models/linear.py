"""The linear contextual bandit: independent Gaussian arm parameters, linear-Gaussian rewards.

    θ_a ~ N(m0_a, S0_a)                     a = 1..K,   θ_a ∈ R^d
    y_t | x_t, a_t ~ N(x_tᵀ θ_{a_t}, σ²)    t = 1..n

This program is the prior of the synthetic environment (``envs.synthetic``), the model that LinTS
(``agents.thompson``) conditions in closed form (``inference.conjugate``), and the program NUTS
runs in the tests to check that closed form.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

__all__ = ["linear_bandit"]


def linear_bandit(
    prior_mean: jax.Array,
    prior_cov: jax.Array,
    noise_scale: jax.Array,
    contexts: jax.Array | None = None,
    actions: jax.Array | None = None,
    rewards: jax.Array | None = None,
) -> None:
    """Linear contextual bandit with per-arm Gaussian priors.

    Parameters
    ----------
    prior_mean : (K, d) prior means m0_a.
    prior_cov : (K, d, d) prior covariances S0_a (positive definite).
    noise_scale : scalar σ, the known reward noise standard deviation.
    contexts : (n, d) contexts x_t, or None to sample only the arm parameters.
    actions : (n,) integer arms a_t in [0, K).
    rewards : (n,) observed rewards y_t, or None to sample them.

    Sites: ``theta`` (K, d) latent; ``reward`` (n,) observed when ``rewards`` is given.
    """
    num_actions = prior_mean.shape[0]
    with numpyro.plate("action", num_actions):
        theta = numpyro.sample("theta", dist.MultivariateNormal(prior_mean, covariance_matrix=prior_cov))
    if contexts is None:
        return
    mean = jnp.sum(contexts * theta[actions], axis=-1)
    with numpyro.plate("round", contexts.shape[0]):
        numpyro.sample("reward", dist.Normal(mean, noise_scale), obs=rewards)
