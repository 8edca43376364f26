"""The Normal-Inverse-Gamma posterior of a scalar Gaussian with unknown mean and variance.

Standard (non-mediated) Thompson sampling models each arm's reward as

    σ² ~ InvGamma(α, β),   μ | σ² ~ N(m, σ² / κ),   y | μ, σ² ~ N(μ, σ²),

and one observation y moves (m, κ, α, β) to

    m' = (κ m + y) / (κ + 1),   κ' = κ + 1,   α' = α + 1/2,   β' = β + κ (y − m)² / (2 (κ + 1)).

With σ² integrated out, μ is Student-t with 2α dof, location m and scale √(β / (α κ)); that
marginal is all an arm's Thompson score needs. Functions act elementwise, so the same code serves
one arm, K arms or (cells, K) arms.

The regression NIG (``RegressionNIG``, LinTS-NIG's per-arm model and the closed form of the program
``models.linear_bandit_nig``) is the same prior on a coefficient vector θ ∈ R^d:

    σ² ~ InvGamma(α, β),   θ | σ² ~ N(m, σ² Λ⁻¹),   y | x, θ, σ² ~ N(xᵀθ, σ²).

Λ is the *unscaled* precision, held as its Cholesky factor with the information η = Λ m (the
``conjugate.GaussianInfo`` form with σ² = 1). One observation (x, y) moves it to

    Λ' = Λ + x xᵀ,   η' = η + x y,   α' = α + 1/2,   β' = β + ½ (y − xᵀm)² / (1 + xᵀΛ⁻¹x),

the textbook β' = β + ½ (y² + mᵀΛm − m'ᵀΛ'm') written with the one-step prediction residual, which
has no cancellation of large terms; n observations at once add ½ (‖y − X m_n‖² + (m_n − m)ᵀΛ(m_n − m)).
With σ² integrated out, θ is multivariate Student-t with 2α dof, location m and scale matrix
(β/α) Λ⁻¹. K coefficient blocks that share one σ² (independent θ_a | σ²) are one NIG with the
block-diagonal Λ: stack the blocks' ``precision_chol`` (K, d, d) and ``info`` (K, d) and keep
``alpha``, ``beta`` scalar; an observation of block a updates block a's Λ, η and the shared α, β.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import solve_triangular

from structbandits.errors import ValidationError, check_positive
from structbandits.inference.bandit_data import check_linear_bandit_data
from structbandits.inference.conjugate import (
    GaussianInfo,
    gaussian_condition,
    gaussian_covariance,
    gaussian_from_moments,
    gaussian_mean,
    linear_regression_observe,
    stacked_gaussian_draws,
)
from structbandits.inference.sampling import gamma, student_t

__all__ = [
    "NIG",
    "RegressionNIG",
    "check_linear_bandit_nig_data",
    "linear_bandit_nig_draws",
    "linear_bandit_nig_posterior",
    "nig_observe",
    "nig_observe_batch",
    "nig_prior",
    "nig_sample",
    "nig_sample_mean",
    "regression_nig_moments",
    "regression_nig_observe",
    "regression_nig_observe_batch",
    "regression_nig_observe_block",
    "regression_nig_prior",
    "regression_nig_sample",
    "regression_observe",
    "regression_observe_batch",
]


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


# --- Regression NIG: θ ∈ R^d with unknown noise variance ---------------------------------------


class RegressionNIG(NamedTuple):
    """NIG prior or posterior of regression coefficients: θ | σ² ~ N(m, σ² Λ⁻¹), σ² ~ InvGamma(α, β).

    Attributes
    ----------
    precision_chol : (..., d, d) lower-triangular L with the unscaled precision Λ = L Lᵀ.
    info : (..., d) information η = Λ m.
    alpha : (...) shape α of σ²; or () for one σ² shared by the stacked blocks (module docstring).
    beta : (...) scale β of σ², shaped as ``alpha``.
    """

    precision_chol: jax.Array
    info: jax.Array
    alpha: jax.Array
    beta: jax.Array


def regression_nig_prior(mean: jax.Array, cov: jax.Array, alpha: jax.Array, beta: jax.Array) -> RegressionNIG:
    """θ | σ² ~ N(mean, σ² cov), σ² ~ InvGamma(alpha, beta) for one block: ``mean`` (d,), ``cov`` (d, d)
    positive definite (the covariance per unit noise variance), scalars ``alpha``, ``beta``. ``jax.vmap``
    it for a stack."""
    g = gaussian_from_moments(mean, cov)
    return RegressionNIG(g.precision_chol, g.info, jnp.asarray(alpha, g.info.dtype), jnp.asarray(beta, g.info.dtype))


def _gaussian(p: RegressionNIG) -> GaussianInfo:
    return GaussianInfo(p.precision_chol, p.info)


def regression_observe(g: GaussianInfo, x: jax.Array, y: jax.Array) -> tuple[GaussianInfo, jax.Array]:
    """One observation for the unscaled Gaussian part: (Λ + x xᵀ, η + x y) and β's increment
    ½ (y − xᵀm)² / (1 + xᵀΛ⁻¹x) (a scalar). ``x`` (d,), ``y`` scalar; O(d²)."""
    whitened = solve_triangular(g.precision_chol, x, lower=True)  # xᵀΛ⁻¹x = ‖L⁻¹x‖²
    residual = y - x @ gaussian_mean(g)
    return linear_regression_observe(g, x, y, 1.0), 0.5 * residual**2 / (1.0 + whitened @ whitened)


def regression_observe_batch(g: GaussianInfo, xs: jax.Array, ys: jax.Array,
                             weights: jax.Array | None = None) -> tuple[GaussianInfo, jax.Array, jax.Array]:
    """n observations at once: ``xs`` (n, d), ``ys`` (n,), ``weights`` (n,) in {0, 1} masking rows.

    Returns the unscaled Gaussian (Λ + XᵀWX, η + XᵀWy), β's increment ½ (Σ w (y − X m_n)² +
    (m_n − m)ᵀΛ(m_n − m)) and the count Σ w (α's increment is half of it). One O(d³) refactorisation.
    """
    weights = jnp.ones_like(ys) if weights is None else weights.astype(ys.dtype)
    posterior = gaussian_condition(g, xs.T @ (xs * weights[:, None]), xs.T @ (ys * weights))
    mean = gaussian_mean(posterior)
    shift = g.precision_chol.T @ (mean - gaussian_mean(g))  # (m_n − m)ᵀΛ(m_n − m) = ‖Lᵀ(m_n − m)‖²
    scatter = weights @ (ys - xs @ mean) ** 2
    return posterior, 0.5 * (scatter + shift @ shift), jnp.sum(weights)


def regression_nig_observe(p: RegressionNIG, x: jax.Array, y: jax.Array) -> RegressionNIG:
    """One block's NIG (fields (d, d), (d,), (), ()) after one observation ``x`` (d,), ``y`` ()."""
    g, increment = regression_observe(_gaussian(p), x, y)
    return RegressionNIG(g.precision_chol, g.info, p.alpha + 0.5, p.beta + increment)


def regression_nig_observe_batch(p: RegressionNIG, xs: jax.Array, ys: jax.Array,
                                 weights: jax.Array | None = None) -> RegressionNIG:
    """One block's NIG after n observations ``xs`` (n, d), ``ys`` (n,) (``weights`` (n,) in {0, 1})."""
    g, increment, count = regression_observe_batch(_gaussian(p), xs, ys, weights)
    return RegressionNIG(g.precision_chol, g.info, p.alpha + 0.5 * count, p.beta + increment)


def regression_nig_observe_block(p: RegressionNIG, block: jax.Array, x: jax.Array, y: jax.Array) -> RegressionNIG:
    """A stack of K blocks (``precision_chol`` (K, d, d), ``info`` (K, d)) after one observation of
    block ``block`` (integer ()): that block's Λ and η change, and its own α, β ((K,) fields) or the
    shared α, β (scalar fields: one σ² for all blocks). O(d²)."""
    g, increment = regression_observe(GaussianInfo(p.precision_chol[block], p.info[block]), x, y)
    chol, info = p.precision_chol.at[block].set(g.precision_chol), p.info.at[block].set(g.info)
    if jnp.ndim(p.alpha) == 0:
        return RegressionNIG(chol, info, p.alpha + 0.5, p.beta + increment)
    return RegressionNIG(chol, info, p.alpha.at[block].add(0.5), p.beta.at[block].add(increment))


def regression_nig_sample(p: RegressionNIG, key: jax.Array, shape: tuple[int, ...] = ()) -> tuple[jax.Array, jax.Array]:
    """Joint draws (θ, σ²): σ² = β / Gamma(α, 1), then θ = m + σ L⁻ᵀ z with z ~ N(0, I).

    For blocks with batch shape B (``info`` B + (d,)), θ has shape ``shape + B + (d,)`` and σ²
    ``shape + alpha.shape`` (B per block, or () when the blocks share σ²). Every block is drawn at once
    through ``conjugate.stacked_gaussian_draws`` (θ = L⁻ᵀ(L⁻¹η + σz), no per-block solve), from the standard
    normals z = ``jax.random.normal(split(key)[1], (|B|, n, d))``. Cost O(n |B| d²) (plus O(|B| d³) for n > 1).
    """
    batch, d = p.info.shape[:-1], p.info.shape[-1]
    dtype = p.info.dtype
    var_key, coef_key = jax.random.split(key)
    var = p.beta / gamma(var_key, p.alpha, shape + jnp.shape(p.alpha), dtype)
    num = int(np.prod(shape, dtype=int))
    size = int(np.prod(batch, dtype=int))
    z = jax.random.normal(coef_key, (size, num, d), dtype)
    sd = jnp.sqrt(var).reshape(num, 1 if jnp.ndim(p.alpha) == 0 else size).T  # (1, num) shared σ², else (size, num)
    noise = z * sd[..., None]  # σz, (size, num, d)
    chol, info = p.precision_chol.reshape(size, d, d), p.info.reshape(size, d)
    if num == 1:  # one draw per block: two substitutions, no L⁻¹
        theta = stacked_gaussian_draws(chol, info, noise[:, 0])[:, None]
    else:
        theta = stacked_gaussian_draws(chol, info, noise)  # (size, num, d)
    return jnp.moveaxis(theta, 0, 1).reshape(shape + batch + (d,)), var


def regression_nig_moments(p: RegressionNIG) -> dict[str, tuple[jax.Array, jax.Array]]:
    """Exact posterior moments where they exist: θ's mean m (B + (d,)) and covariance β/(α − 1) Λ⁻¹
    (B + (d, d); needs α > 1); σ²'s mean β/(α − 1) and variance β² / ((α − 1)² (α − 2)) (needs α > 2),
    each shaped as ``alpha``. Values where a moment does not exist are infinite."""
    batch, d = p.info.shape[:-1], p.info.shape[-1]
    chol, info = p.precision_chol.reshape(-1, d, d), p.info.reshape(-1, d)
    gaussians = GaussianInfo(chol, info)
    mean = jax.vmap(gaussian_mean)(gaussians).reshape(batch + (d,))
    unscaled = jax.vmap(gaussian_covariance)(gaussians).reshape(batch + (d, d))
    alpha, beta = p.alpha, p.beta
    var_mean = jnp.where(alpha > 1.0, beta / (alpha - 1.0), jnp.inf)
    var_var = jnp.where(alpha > 2.0, var_mean**2 / (alpha - 2.0), jnp.inf)
    scale = jnp.broadcast_to(var_mean, batch) if jnp.ndim(alpha) == 0 else var_mean
    return {"theta": (mean, scale[..., None, None] * unscaled), "noise_var": (var_mean, var_var)}


# --- The program models.linear_bandit_nig -----------------------------------------------------


def check_linear_bandit_nig_data(data) -> None:
    """``linear_bandit_nig``: prior_mean (K, d), prior_cov (K, d, d) positive definite, alpha and
    beta > 0 of shape () (or (K,) per arm when not ``shared``), contexts (n, d), actions (n,) in
    [0, K), rewards (n,)."""
    check_linear_bandit_data({**data, "noise_scale": 1.0})
    num_arms = int(np.shape(data["prior_mean"])[0])
    shared = bool(data.get("shared", False))
    for name in ("alpha", "beta"):
        value = check_positive(f"data[{name!r}]", data[name])
        if value.shape not in ((), (num_arms,)) or (shared and value.shape != ()):
            expected = "() with shared=True (one noise variance)" if shared else f"() or ({num_arms},)"
            raise ValidationError(f"data[{name!r}]: expected shape {expected}, got shape {value.shape}")


def linear_bandit_nig_posterior(prior_mean: jax.Array, prior_cov: jax.Array, alpha: jax.Array, beta: jax.Array,
                                contexts: jax.Array, actions: jax.Array, rewards: jax.Array,
                                shared: bool = False) -> RegressionNIG:
    """The closed-form posterior of ``models.linear_bandit_nig`` given n rounds.

    ``prior_mean`` (K, d), ``prior_cov`` (K, d, d), ``alpha``, ``beta`` () or (K,) (() when
    ``shared``), ``contexts`` (n, d), ``actions`` (n,), ``rewards`` (n,). Returns the K stacked
    blocks: per arm, fields (K, d, d), (K, d), (K,), (K,); shared, ``alpha`` and ``beta`` scalars
    (α + n/2 and β plus every arm's residual term).
    """
    num_arms = prior_mean.shape[0]
    prior = jax.vmap(gaussian_from_moments)(prior_mean, prior_cov)
    masks = (actions[None, :] == jnp.arange(num_arms)[:, None]).astype(contexts.dtype)  # (K, n)
    arms, increments, counts = jax.vmap(regression_observe_batch, (0, None, None, 0))(prior, contexts, rewards, masks)
    if shared:
        return RegressionNIG(arms.precision_chol, arms.info, alpha + 0.5 * jnp.sum(counts), beta + jnp.sum(increments))
    alpha, beta = (jnp.broadcast_to(jnp.asarray(v, contexts.dtype), (num_arms,)) for v in (alpha, beta))
    return RegressionNIG(arms.precision_chol, arms.info, alpha + 0.5 * counts, beta + increments)


@functools.partial(jax.jit, static_argnames=("shared", "num_draws"))
def _posterior_and_draws(prior_mean, prior_cov, alpha, beta, contexts, actions, rewards, key, *, shared, num_draws):
    arms = linear_bandit_nig_posterior(prior_mean, prior_cov, alpha, beta, contexts, actions, rewards, shared)
    return arms, *regression_nig_sample(arms, key, (num_draws,))


_PROGRAM_ARGUMENTS = ("prior_mean", "prior_cov", "alpha", "beta", "contexts", "actions", "rewards")


def linear_bandit_nig_draws(data, key: jax.Array, num_draws: int) -> tuple[dict[str, np.ndarray], dict]:
    """``num_draws`` independent posterior draws of ``linear_bandit_nig`` (``theta`` (num_draws, K, d),
    ``noise_var`` (num_draws, K) or (num_draws,)) and the exact moments that exist: θ's mean and
    per-arm covariance when every α_n > 1 (σ² is left to its draws). For ``inference.posterior``."""
    arms, theta, noise_var = _posterior_and_draws(*(jnp.asarray(data[name]) for name in _PROGRAM_ARGUMENTS), key,
                                                  shared=bool(data.get("shared", False)), num_draws=num_draws)
    moments = {}
    if np.all(np.asarray(arms.alpha) > 1.0):
        mean, cov = regression_nig_moments(arms)["theta"]
        moments["theta"] = (np.asarray(mean), np.asarray(cov))
    return {"theta": np.asarray(theta), "noise_var": np.asarray(noise_var)}, moments
