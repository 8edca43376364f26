"""Generator-mediated bandits (GAMBITTS): the agent's prompt reaches the reward only through a treatment.

    context x, prompt a  →  treatment z ~ p(z | x, a)  →  reward y ~ p(y | z, x)

Two stages, each a plain NumPyro program:

* treatment stage, one Gaussian per treatment cell c = (context cell, prompt) with a
  Normal-Inverse-Wishart prior (what foGAMBITTS conditions in closed form, ``inference.niw``)::

      Σ_c ~ InverseWishart(ν0, Ψ0),   μ_c | Σ_c ~ N(m0, Σ_c / κ0),   z_t | c_t ~ N(μ_{c_t}, Σ_{c_t})

* reward stage, linear in a feature map φ(z, x) (closed form: ``inference.conjugate``)::

      β ~ N(b0, P0⁻¹),   y_t | z_t, x_t ~ N(βᵀ φ_t, σ²)

  or a one-hidden-layer ReLU network (posterior approximated by the perturbed ensembles of
  ``inference.ensemble``; the nonlinear mHealth simulator's outcome surface is a draw of it).

``mediated_linear`` joins the two stages with φ(z) = [1, z]; given observed treatments and rewards its
posterior factorises into the treatment-stage and reward-stage posteriors, so one NUTS run checks
both closed forms (``tests/test_gambitts_nuts.py``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

__all__ = ["linear_reward_stage", "mediated_linear", "mlp_apply", "mlp_reward_stage", "treatment_stage", "with_intercept"]


def treatment_stage(
    mean0: jax.Array,
    kappa0: float,
    psi0: jax.Array,
    nu0: float,
    num_cells: int,
    cells: jax.Array | None = None,
    treatments: jax.Array | None = None,
) -> None:
    """Per-cell Gaussian treatments with a Normal-Inverse-Wishart prior.

    Parameters
    ----------
    mean0 : (d,) prior mean m0 of every cell's mean.
    kappa0 : prior pseudo-count κ0 > 0 of the mean.
    psi0 : (d, d) Inverse-Wishart scale Ψ0 (positive definite).
    nu0 : Inverse-Wishart degrees of freedom ν0 > d − 1.
    num_cells : number of treatment cells C (e.g. context cells × prompts).
    cells : (n,) integer cell of each observed treatment, or None to sample only the parameters.
    treatments : (n, d) observed treatments z_t, or None to sample them.

    Sites: ``cov`` (C, d, d), ``mean`` (C, d) latent; ``treatment`` (n, d). Returns the treatments
    (observed or sampled; None without ``cells``).
    """
    with numpyro.plate("cell", num_cells):
        cov = numpyro.sample("cov", dist.InverseWishart(concentration=nu0, scale_matrix=psi0))
        mean = numpyro.sample("mean", dist.MultivariateNormal(mean0, covariance_matrix=cov / kappa0))
    if cells is None:
        return None
    with numpyro.plate("round", cells.shape[0]):
        return numpyro.sample("treatment", dist.MultivariateNormal(mean[cells], covariance_matrix=cov[cells]),
                              obs=treatments)


def linear_reward_stage(
    prior_mean: jax.Array,
    prior_precision: jax.Array,
    noise_scale: float,
    features: jax.Array | None = None,
    rewards: jax.Array | None = None,
) -> None:
    """Bayesian linear regression of the reward on treatment features φ(z, x).

    Parameters
    ----------
    prior_mean : (p,) prior mean b0 of the coefficients β.
    prior_precision : (p,) diagonal or (p, p) prior precision P0.
    noise_scale : reward noise standard deviation σ > 0.
    features : (n, p) features φ_t, or None to sample only β.
    rewards : (n,) observed rewards, or None to sample them.

    Sites: ``beta`` (p,) latent; ``reward`` (n,).
    """
    precision = jnp.diag(prior_precision) if jnp.ndim(prior_precision) == 1 else prior_precision
    beta = numpyro.sample("beta", dist.MultivariateNormal(prior_mean, precision_matrix=precision))
    if features is None:
        return
    with numpyro.plate("round", features.shape[0]):
        numpyro.sample("reward", dist.Normal(features @ beta, noise_scale), obs=rewards)


def mediated_linear(
    mean0: jax.Array,
    kappa0: float,
    psi0: jax.Array,
    nu0: float,
    num_cells: int,
    reward_prior_mean: jax.Array,
    reward_prior_precision: jax.Array,
    noise_scale: float,
    cells: jax.Array | None = None,
    treatments: jax.Array | None = None,
    rewards: jax.Array | None = None,
) -> None:
    """Both stages with φ(z) = [1, z]: ``reward_prior_mean`` is (d + 1,), intercept first.

    ``cells`` (n,) and ``treatments`` (n, d) as in ``treatment_stage``; ``rewards`` (n,) observed, or
    None to sample them (when ``treatments`` is None too, the treatments are sampled first).
    Sites: ``cov``, ``mean``, ``treatment``, ``beta``, ``reward``.
    """
    treatments = treatment_stage(mean0, kappa0, psi0, nu0, num_cells, cells, treatments)
    features = None if treatments is None else with_intercept(treatments)
    linear_reward_stage(reward_prior_mean, reward_prior_precision, noise_scale, features, rewards)


def with_intercept(treatments: jax.Array) -> jax.Array:
    """[1, z]: ``treatments`` (..., d) → (..., d + 1)."""
    return jnp.concatenate([jnp.ones(treatments.shape[:-1] + (1,), treatments.dtype), treatments], axis=-1)


def mlp_apply(params: dict[str, jax.Array], inputs: jax.Array) -> jax.Array:
    """One-hidden-layer ReLU network: ``inputs`` (..., d) → (...,).

    ``params``: ``w1`` (d, H), ``b1`` (H,), ``w2`` (H,), ``b2`` ().
    """
    hidden = jax.nn.relu(inputs @ params["w1"] + params["b1"])
    return hidden @ params["w2"] + params["b2"]


def mlp_reward_stage(
    num_inputs: int,
    num_hidden: int,
    weight_scale: float,
    noise_scale: float,
    inputs: jax.Array | None = None,
    rewards: jax.Array | None = None,
    output_bias_mean: float = 0.0,
    output_bias_scale: float = 1.0,
) -> None:
    """A Bayesian one-hidden-layer ReLU reward model y ~ N(MLP(z), σ²) with Gaussian weights.

    Parameters
    ----------
    num_inputs : d, the treatment dimension.
    num_hidden : H hidden units.
    weight_scale : prior standard deviation of every weight and hidden bias.
    noise_scale : reward noise standard deviation σ > 0.
    inputs : (n, d) treatments, or None to sample only the weights.
    rewards : (n,) observed rewards, or None to sample them.
    output_bias_mean, output_bias_scale : prior of the output bias b2 (the reward's level).

    Sites: ``w1`` (d, H), ``b1`` (H,), ``w2`` (H,), ``b2`` (), latent; ``reward`` (n,).
    """
    params = {
        "w1": numpyro.sample("w1", dist.Normal(0.0, weight_scale).expand([num_inputs, num_hidden]).to_event(2)),
        "b1": numpyro.sample("b1", dist.Normal(0.0, weight_scale).expand([num_hidden]).to_event(1)),
        "w2": numpyro.sample("w2", dist.Normal(0.0, weight_scale).expand([num_hidden]).to_event(1)),
        "b2": numpyro.sample("b2", dist.Normal(output_bias_mean, output_bias_scale)),
    }
    if inputs is None:
        return
    with numpyro.plate("round", inputs.shape[0]):
        numpyro.sample("reward", dist.Normal(mlp_apply(params, inputs), noise_scale), obs=rewards)
