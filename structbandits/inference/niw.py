"""The Normal-Inverse-Wishart posterior of a Gaussian with unknown mean and covariance.

The treatment stage of ``models.mediated.treatment_stage`` in closed form (what foGAMBITTS conditions):

    Σ ~ IW(ν, Ψ),   μ | Σ ~ N(m, Σ / κ),   z | μ, Σ ~ N(μ, Σ)

One observation z moves (m, κ, ν, Ψ) to

    m' = (κ m + z) / (κ + 1),   κ' = κ + 1,   ν' = ν + 1,   Ψ' = Ψ + κ/(κ + 1) (z − m)(z − m)ᵀ,

so Ψ is kept as its lower Cholesky factor and updated by the rank-one sweep of
``inference.conjugate`` (O(d²)). Sampling uses the Bartlett decomposition: with Ψ = L Lᵀ and A the
lower-triangular Bartlett factor of a standard Wishart(ν, I) (A_ii² ~ χ²(ν − i), A_ij ~ N(0, 1) below
the diagonal), Σ⁻¹ = L⁻ᵀ A Aᵀ L⁻¹ ~ Wishart(ν, Ψ⁻¹), hence Σ = R Rᵀ with R = L A⁻ᵀ. With Σ
integrated out, μ is multivariate t: μ = m + L ε / √(κ g), g ~ χ²(ν − d + 1), which needs one
χ² draw instead of d (what a linear reward model needs, since only E[z] enters its score).
χ² variates come from ``inference.sampling`` (exact, batched rejection; faster than jax.random's).

All functions act on one NIW (d,) / (d, d); ``jax.vmap`` them over cells.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular

from structbandits.inference.conjugate import cholesky_rank_one_update
from structbandits.inference.sampling import chisquare

__all__ = [
    "NIW",
    "niw_covariance_mean",
    "niw_mean_covariance",
    "niw_observe",
    "niw_observe_batch",
    "niw_prior",
    "niw_sample",
    "niw_sample_mean",
]


class NIW(NamedTuple):
    """Normal-Inverse-Wishart parameters.

    Attributes
    ----------
    mean : (d,) location m of μ.
    kappa : () pseudo-count κ of the mean.
    nu : () degrees of freedom ν (> d − 1).
    scale_chol : (d, d) lower Cholesky factor L of the scale matrix Ψ = L Lᵀ.
    """

    mean: jax.Array
    kappa: jax.Array
    nu: jax.Array
    scale_chol: jax.Array


def niw_prior(mean0: jax.Array, kappa0: float, psi0: jax.Array, nu0: float) -> NIW:
    """NIW(m0, κ0, Ψ0, ν0) in Cholesky form. ``mean0`` (d,), ``psi0`` (d, d) positive definite."""
    mean0 = jnp.asarray(mean0)
    dtype = mean0.dtype
    return NIW(mean0, jnp.asarray(kappa0, dtype), jnp.asarray(nu0, dtype), jnp.linalg.cholesky(jnp.asarray(psi0, dtype)))


def niw_observe(p: NIW, z: jax.Array) -> NIW:
    """Condition on one observation ``z`` (d,). O(d²)."""
    gain = p.kappa / (p.kappa + 1.0)
    residual = z - p.mean
    return NIW(
        mean=p.mean + residual / (p.kappa + 1.0),
        kappa=p.kappa + 1.0,
        nu=p.nu + 1.0,
        scale_chol=cholesky_rank_one_update(p.scale_chol, jnp.sqrt(gain) * residual),
    )


def niw_observe_batch(p: NIW, zs: jax.Array, weights: jax.Array | None = None) -> NIW:
    """Condition on n observations ``zs`` (n, d) at once; ``weights`` (n,) in {0, 1} masks rows.

    Ψ_n = Ψ + S + κ n / (κ + n) (z̄ − m)(z̄ − m)ᵀ with S the scatter about z̄. One O(d³) refactorisation.
    """
    weights = jnp.ones(zs.shape[0], zs.dtype) if weights is None else weights.astype(zs.dtype)
    n = jnp.sum(weights)
    zbar = jnp.where(n > 0, weights @ zs / jnp.maximum(n, 1.0), p.mean)
    centred = (zs - zbar) * jnp.sqrt(weights)[:, None]
    offset = zbar - p.mean
    psi = (p.scale_chol @ p.scale_chol.T + centred.T @ centred
           + (p.kappa * n / (p.kappa + n)) * jnp.outer(offset, offset))
    return NIW(
        mean=(p.kappa * p.mean + n * zbar) / (p.kappa + n),
        kappa=p.kappa + n,
        nu=p.nu + n,
        scale_chol=jnp.linalg.cholesky(0.5 * (psi + psi.T)),
    )


def niw_sample(p: NIW, key: jax.Array, shape: tuple[int, ...] = ()) -> tuple[jax.Array, jax.Array]:
    """Joint draws of (μ, Σ) as (mean ``shape + (d,)``, root ``shape + (d, d)``) with Σ = R Rᵀ.

    The root R = L A⁻ᵀ (Bartlett) is what Monte-Carlo treatment draws need: z = μ + R ε.
    """
    d = p.mean.shape[-1]
    dtype = p.mean.dtype
    chi_key, normal_key, mean_key = jax.random.split(key, 3)
    diag = jnp.sqrt(chisquare(chi_key, p.nu - jnp.arange(d, dtype=dtype), shape + (d,), dtype))
    below = jnp.tril(jax.random.normal(normal_key, shape + (d, d), dtype), k=-1)
    bartlett = below + diag[..., :, None] * jnp.eye(d, dtype=dtype)
    eye = jnp.broadcast_to(jnp.eye(d, dtype=dtype), shape + (d, d))
    inv_t = solve_triangular(bartlett, eye, lower=True, trans="T")  # A⁻ᵀ
    root = p.scale_chol @ inv_t
    eps = jax.random.normal(mean_key, shape + (d,), dtype)
    mean = p.mean + jnp.einsum("...ij,...j->...i", root, eps) / jnp.sqrt(p.kappa)
    return mean, root


def niw_sample_mean(p: NIW, key: jax.Array, shape: tuple[int, ...] = ()) -> jax.Array:
    """Draws of μ alone (Σ integrated out; multivariate t with ν − d + 1 dof): ``shape + (d,)``."""
    d = p.mean.shape[-1]
    dtype = p.mean.dtype
    chi_key, normal_key = jax.random.split(key)
    g = chisquare(chi_key, p.nu - d + 1.0, shape, dtype)
    eps = jax.random.normal(normal_key, shape + (d,), dtype)
    return p.mean + (eps @ p.scale_chol.T) / jnp.sqrt(p.kappa * g)[..., None]


def niw_covariance_mean(p: NIW) -> jax.Array:
    """E[Σ] = Ψ / (ν − d − 1) (d, d); finite for ν > d + 1. For reporting and tests."""
    d = p.mean.shape[-1]
    return p.scale_chol @ p.scale_chol.T / (p.nu - d - 1.0)


def niw_mean_covariance(p: NIW) -> jax.Array:
    """Cov[μ] = Ψ / (κ (ν − d − 1)) (d, d); finite for ν > d + 1. For reporting and tests."""
    return niw_covariance_mean(p) / p.kappa
