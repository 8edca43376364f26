"""The mixed-effect bandit of meTS (Aouali, Kveton and Katariya, 2023).

    vec Ψ ~ N(μ_Ψ, Σ_Ψ)                               Ψ = (ψ_1, ..., ψ_L), ψ_l ∈ R^d, vec stacks ψ_1 first
    θ_i | Ψ ~ N(Σ_l b_il ψ_l, Σ0_i)                   i = 1..K, mixing weights b (K, L) are data, any sign
    y_t | x_t, a_t, θ ~ N(x_tᵀ θ_{a_t}, σ²)           (``mixed_effect_linear``)
    y_t | x_t, a_t, θ ~ Bernoulli(sigmoid(x_tᵀ θ_{a_t}))  (``mixed_effect_logistic``)

Sites: ``psi`` (L·d,) in vec order, ``theta`` (K, d), ``reward`` (n,). Contexts are (n, d), one
per round for the pulled arm.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

__all__ = ["marginal_action_prior", "mixed_effect_linear", "mixed_effect_logistic"]


def _effects_and_actions(mixing, effect_mean, effect_cov, action_cov) -> jax.Array:
    num_effects, d = effect_mean.shape
    psi = numpyro.sample("psi", dist.MultivariateNormal(effect_mean.reshape(-1), covariance_matrix=effect_cov))
    with numpyro.plate("action", mixing.shape[0]):
        return numpyro.sample("theta", dist.MultivariateNormal(mixing @ psi.reshape(num_effects, d),
                                                               covariance_matrix=action_cov))


def marginal_action_prior(mixing, effect_mean, effect_cov, action_cov) -> tuple[jax.Array, jax.Array]:
    """The prior of each θ_i with Ψ integrated out: N(A_i μ_Ψ, Σ0_i + A_i Σ_Ψ A_iᵀ), A_i = b_iᵀ ⊗ I_d.

    What structure-blind baselines (LinTS, GLM-TS) are given. Shapes as in ``mixed_effect_linear``;
    returns means (K, d) and covariances (K, d, d).
    """
    num_effects, d = effect_mean.shape
    blocks = effect_cov.reshape(num_effects, d, num_effects, d)
    mixed_cov = jnp.einsum("kl,km,lamb->kab", mixing, mixing, blocks)
    return mixing @ effect_mean, action_cov + mixed_cov


def mixed_effect_linear(
    mixing: jax.Array,
    effect_mean: jax.Array,
    effect_cov: jax.Array,
    action_cov: jax.Array,
    noise_scale: jax.Array,
    contexts: jax.Array | None = None,
    actions: jax.Array | None = None,
    rewards: jax.Array | None = None,
) -> None:
    """Mixed-effect model with linear-Gaussian rewards.

    Parameters
    ----------
    mixing : (K, L) weights b_il of effect l in action i.
    effect_mean : (L, d) prior means of the effects μ_Ψ.
    effect_cov : (L·d, L·d) prior covariance Σ_Ψ of vec Ψ.
    action_cov : (K, d, d) action covariances Σ0_i around their mixed means.
    noise_scale : σ, the known reward noise standard deviation.
    contexts, actions, rewards : (n, d), (n,), (n,) data; None to sample only parameters (or rewards).
    """
    theta = _effects_and_actions(mixing, effect_mean, effect_cov, action_cov)
    if contexts is None:
        return
    with numpyro.plate("round", contexts.shape[0]):
        numpyro.sample("reward", dist.Normal(jnp.sum(contexts * theta[actions], -1), noise_scale), obs=rewards)


def mixed_effect_logistic(
    mixing: jax.Array,
    effect_mean: jax.Array,
    effect_cov: jax.Array,
    action_cov: jax.Array,
    contexts: jax.Array | None = None,
    actions: jax.Array | None = None,
    rewards: jax.Array | None = None,
) -> None:
    """Mixed-effect model with Bernoulli(sigmoid(xᵀθ_a)) rewards; arguments as ``mixed_effect_linear``."""
    theta = _effects_and_actions(mixing, effect_mean, effect_cov, action_cov)
    if contexts is None:
        return
    with numpyro.plate("round", contexts.shape[0]):
        numpyro.sample("reward", dist.Bernoulli(logits=jnp.sum(contexts * theta[actions], -1)), obs=rewards)
