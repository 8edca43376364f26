"""Closed-form Gaussian posteriors in information (precision) form with Cholesky factors.

A Gaussian N(m, S) is held as the lower Cholesky factor L of its precision S⁻¹ = L Lᵀ and the
information vector h = S⁻¹ m. Bayesian linear regression with known noise then only adds to both:

    prior N(m0, S0),  y = xᵀθ + ε,  ε ~ N(0, σ²)
    S⁻¹ ← S⁻¹ + x xᵀ / σ²          (a rank-one Cholesky update, O(d²))
    h   ← h   + x y / σ²

Means, draws and covariances come from triangular solves; no explicit inverse is formed on the
update or sampling path. Every function works on a single Gaussian (d,) / (d, d); use ``jax.vmap``
for stacks (one posterior per arm).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.linalg import cho_solve, solve_triangular

__all__ = [
    "GaussianInfo",
    "cholesky_rank_one_update",
    "gaussian_covariance",
    "gaussian_from_moments",
    "gaussian_mean",
    "gaussian_sample",
    "linear_regression_observe",
    "linear_regression_observe_batch",
]


class GaussianInfo(NamedTuple):
    """A Gaussian in information form.

    Attributes
    ----------
    precision_chol : (d, d) lower-triangular L with precision = L Lᵀ.
    info : (d,) information vector precision @ mean.
    """

    precision_chol: jax.Array
    info: jax.Array


def gaussian_from_moments(mean: jax.Array, cov: jax.Array) -> GaussianInfo:
    """Convert N(mean, cov) to information form. ``mean`` (d,), ``cov`` (d, d) positive definite.

    This runs once per prior, so it may solve against the identity to get the precision.
    """
    cov_chol = jnp.linalg.cholesky(cov)
    precision = cho_solve((cov_chol, True), jnp.eye(cov.shape[-1], dtype=cov.dtype))
    precision = 0.5 * (precision + precision.T)
    return GaussianInfo(jnp.linalg.cholesky(precision), cho_solve((cov_chol, True), mean))


def gaussian_mean(g: GaussianInfo) -> jax.Array:
    """Posterior mean (d,): solves L Lᵀ m = h."""
    return cho_solve((g.precision_chol, True), g.info)


def gaussian_covariance(g: GaussianInfo) -> jax.Array:
    """Covariance (d, d). For reporting and tests; the hot paths never need it."""
    d = g.info.shape[-1]
    return cho_solve((g.precision_chol, True), jnp.eye(d, dtype=g.info.dtype))


def gaussian_sample(g: GaussianInfo, key: jax.Array, shape: tuple[int, ...] = ()) -> jax.Array:
    """Draws with shape ``shape + (d,)``: θ = m + L⁻ᵀ z with z ~ N(0, I), since Cov = L⁻ᵀ L⁻¹."""
    d = g.info.shape[-1]
    z = jax.random.normal(key, shape + (d,), dtype=g.info.dtype)
    # Solve Lᵀ u = z for every draw at once: z is flattened into the columns of a (d, n) matrix.
    u = solve_triangular(g.precision_chol, z.reshape(-1, d).T, lower=True, trans="T")
    return gaussian_mean(g) + u.T.reshape(shape + (d,))


def cholesky_rank_one_update(chol: jax.Array, x: jax.Array) -> jax.Array:
    """Lower Cholesky factor of ``chol @ chol.T + outer(x, x)`` in O(d²).

    The classical column sweep with Givens-like rotations; rows above the current column are
    masked rather than sliced so the loop has static shapes and can be jitted.
    """
    d = x.shape[-1]
    rows = jnp.arange(d)

    def sweep(k, carry):
        chol, x = carry
        diag = chol[k, k]
        r = jnp.sqrt(diag * diag + x[k] * x[k])
        c, s = r / diag, x[k] / diag
        below = rows > k
        column = jnp.where(below, (chol[:, k] + s * x) / c, chol[:, k]).at[k].set(r)
        x = jnp.where(below, c * x - s * column, x)
        return chol.at[:, k].set(column), x

    chol, _ = jax.lax.fori_loop(0, d, sweep, (chol, x))
    return chol


def linear_regression_observe(g: GaussianInfo, x: jax.Array, y: jax.Array, noise_var: jax.Array) -> GaussianInfo:
    """Condition θ on one observation y = xᵀθ + N(0, noise_var). ``x`` (d,), ``y`` scalar. O(d²)."""
    scale = jnp.sqrt(noise_var)
    return GaussianInfo(cholesky_rank_one_update(g.precision_chol, x / scale), g.info + x * (y / noise_var))


def linear_regression_observe_batch(
    g: GaussianInfo, xs: jax.Array, ys: jax.Array, noise_var: jax.Array
) -> GaussianInfo:
    """Condition θ on n observations at once. ``xs`` (n, d), ``ys`` (n,). One O(d³) refactorisation."""
    precision = g.precision_chol @ g.precision_chol.T + xs.T @ xs / noise_var
    return GaussianInfo(jnp.linalg.cholesky(precision), g.info + xs.T @ ys / noise_var)
