"""The linear contextual bandit: independent Gaussian arm parameters, linear-Gaussian rewards.

    θ_a ~ N(m0_a, S0_a)                     a = 1..K,   θ_a ∈ R^d
    y_t | x_t, a_t ~ N(x_tᵀ θ_{a_t}, σ²)    t = 1..n

This program is the prior of the synthetic environment (``envs.synthetic``), the model that LinTS
(``agents.thompson``) conditions in closed form (``inference.conjugate``), and the program NUTS
runs in the tests to check that closed form.

``linear_bandit_nig`` is the same bandit with an unknown noise variance under a Normal-Inverse-Gamma
prior, one σ² per arm or one shared by all arms (LinTS-NIG, ``agents.lin_ts_nig``; closed form in
``inference.nig``):

    σ²_a ~ InvGamma(α, β),   θ_a | σ²_a ~ N(m0_a, σ²_a V_a),   y_t ~ N(x_tᵀ θ_{a_t}, σ²_{a_t})
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

__all__ = ["linear_bandit", "linear_bandit_nig"]


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


def linear_bandit_nig(
    prior_mean: jax.Array,
    prior_cov: jax.Array,
    alpha: jax.Array,
    beta: jax.Array,
    contexts: jax.Array | None = None,
    actions: jax.Array | None = None,
    rewards: jax.Array | None = None,
    shared: bool = False,
) -> None:
    """Linear contextual bandit with unknown noise variance and a Normal-Inverse-Gamma prior per arm.

    Parameters
    ----------
    prior_mean : (K, d) prior means m0_a.
    prior_cov : (K, d, d) covariances V_a of θ_a per unit noise variance (positive definite):
        θ_a | σ² ~ N(m0_a, σ² V_a).
    alpha, beta : shape and scale of the InvGamma prior of the noise variance; scalars, or (K,)
        per arm when not ``shared``.
    contexts : (n, d) contexts x_t, or None to sample only the arm parameters.
    actions : (n,) integer arms a_t in [0, K).
    rewards : (n,) observed rewards y_t, or None to sample them.
    shared : False: one noise variance σ²_a per arm; True: one σ² for all arms (the θ_a are
        independent given it).

    Sites: ``noise_var`` (K,) (shared: ()), ``theta`` (K, d) latent; ``reward`` (n,) observed when
    ``rewards`` is given.
    """
    num_actions = prior_mean.shape[0]
    cov_chol = jnp.linalg.cholesky(prior_cov)
    if shared:
        noise_var = numpyro.sample("noise_var", dist.InverseGamma(alpha, beta))
        arm_var = jnp.broadcast_to(noise_var, (num_actions,))
    with numpyro.plate("action", num_actions):
        if not shared:
            arm_var = numpyro.sample("noise_var", dist.InverseGamma(alpha, beta))
        theta = numpyro.sample("theta", dist.MultivariateNormal(prior_mean,
                                                                scale_tril=jnp.sqrt(arm_var)[:, None, None] * cov_chol))
    if contexts is None:
        return
    mean = jnp.sum(contexts * theta[actions], axis=-1)
    with numpyro.plate("round", contexts.shape[0]):
        numpyro.sample("reward", dist.Normal(mean, jnp.sqrt(arm_var[actions])), obs=rewards)
