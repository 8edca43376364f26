"""The Normal-Inverse-Gamma posterior of a scalar Gaussian with unknown mean and variance.

Standard (non-mediated) Thompson sampling models each arm's reward as

    σ² ~ InvGamma(α, β),   μ | σ² ~ N(m, σ² / κ),   y | μ, σ² ~ N(μ, σ²),

and one observation y moves (m, κ, α, β) to

    m' = (κ m + y) / (κ + 1),   κ' = κ + 1,   α' = α + 1/2,   β' = β + κ (y − m)² / (2 (κ + 1)).

With σ² integrated out, μ is Student-t with 2α dof, location m and scale √(β / (α κ)); that
marginal is all an arm's Thompson score needs. Functions act elementwise, so the same code serves
one arm, K arms or (cells, K) arms.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from structbandits.inference.sampling import gamma, student_t

__all__ = ["NIG", "nig_observe", "nig_observe_batch", "nig_prior", "nig_sample", "nig_sample_mean"]


class NIG(NamedTuple):
    """Normal-Inverse-Gamma parameters; every field has the same (batch) shape.

    Attributes
    ----------
    mean : location m of μ.
    kappa : pseudo-count κ of the mean (the reference's ν).
    alpha : shape α of σ².
    beta : scale β of σ².
    """

    mean: jax.Array
    kappa: jax.Array
    alpha: jax.Array
    beta: jax.Array


def nig_prior(mean: float, kappa: float, alpha: float, beta: float, shape: tuple[int, ...] = (),
              dtype=jnp.float64) -> NIG:
    """The same NIG(m, κ, α, β) broadcast to ``shape`` (one per arm / cell)."""
    return NIG(*(jnp.full(shape, value, dtype) for value in (mean, kappa, alpha, beta)))


def nig_observe(p: NIG, y: jax.Array) -> NIG:
    """Condition on one observation ``y`` (broadcast against the fields)."""
    return NIG(
        mean=(p.kappa * p.mean + y) / (p.kappa + 1.0),
        kappa=p.kappa + 1.0,
        alpha=p.alpha + 0.5,
        beta=p.beta + p.kappa * (y - p.mean) ** 2 / (2.0 * (p.kappa + 1.0)),
    )


def nig_observe_batch(p: NIG, ys: jax.Array, weights: jax.Array | None = None) -> NIG:
    """Condition a scalar NIG on n observations ``ys`` (n,); ``weights`` (n,) in {0, 1} masks rows."""
    weights = jnp.ones_like(ys) if weights is None else weights.astype(ys.dtype)
    n = jnp.sum(weights)
    ybar = jnp.where(n > 0, weights @ ys / jnp.maximum(n, 1.0), p.mean)
    scatter = weights @ (ys - ybar) ** 2
    return NIG(
        mean=(p.kappa * p.mean + n * ybar) / (p.kappa + n),
        kappa=p.kappa + n,
        alpha=p.alpha + 0.5 * n,
        beta=p.beta + 0.5 * scatter + p.kappa * n * (ybar - p.mean) ** 2 / (2.0 * (p.kappa + n)),
    )


def nig_sample(p: NIG, key: jax.Array, shape: tuple[int, ...] = ()) -> tuple[jax.Array, jax.Array]:
    """Joint draws (μ, σ²), each ``shape + batch shape``."""
    var_key, mean_key = jax.random.split(key)
    full = shape + jnp.shape(p.mean)
    var = p.beta / gamma(var_key, p.alpha, full, p.mean.dtype)
    mean = p.mean + jnp.sqrt(var / p.kappa) * jax.random.normal(mean_key, full, p.mean.dtype)
    return mean, var


def nig_sample_mean(p: NIG, key: jax.Array, shape: tuple[int, ...] = ()) -> jax.Array:
    """Draws of μ alone (Student-t, 2α dof), ``shape + batch shape``."""
    full = shape + jnp.shape(p.mean)
    t = student_t(key, 2.0 * p.alpha, full, p.mean.dtype)
    return p.mean + jnp.sqrt(p.beta / (p.alpha * p.kappa)) * t
