"""Closed-form Gaussian posteriors in information (precision) form with Cholesky factors.

A Gaussian N(m, S) is held as the lower Cholesky factor L of its precision S⁻¹ = L Lᵀ and the
information vector h = S⁻¹ m. Bayesian linear regression with known noise then only adds to both:

    prior N(m0, S0),  y = xᵀθ + ε,  ε ~ N(0, σ²)
    S⁻¹ ← S⁻¹ + x xᵀ / σ²          (a rank-one Cholesky update, O(d²))
    h   ← h   + x y / σ²

The meTS effect and action posteriors (the mixed-effect model) are built from the same pieces at the
end of the module. Means, draws and covariances come from triangular solves; no explicit inverse is formed on the
update or sampling path. Every function works on a single Gaussian (d,) / (d, d); use ``jax.vmap``
for stacks (one posterior per arm) — except ``lower_solve``, ``stacked_gaussian_draws`` and
``stacked_gaussian_score_draws``, which take a stack (K, d, d) directly: an agent that draws from all K
arms every round does it through them.

Why a stack has its own path: ``jax.vmap`` of a triangular solve is one LAPACK call per arm on CPU, each
far dearer than its d² flops for small d; K arms then cost K calls a round. ``stacked_gaussian_draws``
instead applies L⁻¹ and L⁻ᵀ to all arms at once, by substitution vectorised over the stack (from L) or
by two batched mat-vecs (from a stored L⁻¹, as meTS keeps): the same law, O(K d²) in a few fused loops.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.linalg import cho_solve, solve_triangular

__all__ = [
    "GaussianInfo",
    "action_conditional",
    "action_marginal",
    "effect_evidence",
    "effect_evidence_from_conditional",
    "effect_posterior",
    "cholesky_rank_one_update",
    "gaussian_condition",
    "gaussian_covariance",
    "gaussian_from_moments",
    "gaussian_mean",
    "gaussian_sample",
    "linear_regression_observe",
    "linear_regression_observe_batch",
    "linear_regression_stats",
    "lower_solve",
    "stacked_gaussian_draws",
    "stacked_gaussian_score_draws",
    "triangular_inverse",
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


def triangular_inverse(chol: jax.Array) -> jax.Array:
    """L⁻¹ (d, d) of a lower-triangular ``chol`` (d, d), by one triangular solve against the identity. O(d³)."""
    return solve_triangular(chol, jnp.eye(chol.shape[-1], dtype=chol.dtype), lower=True)


# Up to this size the substitution is unrolled (d(d − 1)/2 fused multiply-adds, one loop over the stack);
# above it a fori_loop over the d steps keeps the program small.
_UNROLL_MAX = 16


def lower_solve(chol: jax.Array, rhs: jax.Array, *, transpose: bool = False) -> jax.Array:
    """L⁻¹ b (or L⁻ᵀ b with ``transpose``) for a stack of lower-triangular L, by substitution vectorised over
    the stack.

    ``chol`` (..., d, d) and ``rhs`` (..., d) broadcast against each other over the leading axes. Every step of
    the substitution is an elementwise operation on the whole stack, so K small systems cost one pass of
    O(K d²) flops instead of K LAPACK calls. Solves the same systems as ``solve_triangular`` (different
    summation order: results agree to rounding).
    """
    d = rhs.shape[-1]
    order = range(d - 1, -1, -1) if transpose else range(d)
    if d <= _UNROLL_MAX:
        solution: list = [None] * d
        for j in order:
            others = range(j + 1, d) if transpose else range(j)
            acc = rhs[..., j]
            for i in others:  # row j of L (forward) or column j of L, i.e. row j of Lᵀ (backward)
                acc = acc - (chol[..., i, j] if transpose else chol[..., j, i]) * solution[i]
            solution[j] = acc / chol[..., j, j]
        return jnp.stack(solution, axis=-1)
    shape = jnp.broadcast_shapes(chol.shape[:-2], rhs.shape[:-1]) + (d,)

    def step(k, solution):  # entries not yet solved are 0, so the full row dot is the partial sum
        j = d - 1 - k if transpose else k
        row = jax.lax.dynamic_index_in_dim(chol, j, axis=-1 if transpose else -2, keepdims=False)
        value = (jax.lax.dynamic_index_in_dim(rhs, j, axis=-1, keepdims=False) - jnp.sum(row * solution, axis=-1))
        value = value / jax.lax.dynamic_index_in_dim(row, j, axis=-1, keepdims=False)
        return jax.lax.dynamic_update_index_in_dim(solution, value, j, axis=-1)

    return jax.lax.fori_loop(0, d, step, jnp.zeros(shape, jnp.result_type(chol, rhs)))


def stacked_gaussian_draws(factor: jax.Array, info: jax.Array, noise: jax.Array, *, inverse: bool = False) -> jax.Array:
    """Draws θ_k = L_k⁻ᵀ (L_k⁻¹ h_k + z_k) from a stack of K Gaussians N(C_k⁻¹ h_k, C_k⁻¹), C_k = L_k L_kᵀ.

    The one sampling path of every agent that draws from all its arms each round (LinTS, meTS): with z ~
    N(0, I), θ = C⁻¹h + L⁻ᵀz has mean C⁻¹h and covariance L⁻ᵀL⁻¹ = C⁻¹. A caller that scales ``noise``
    (z σ for a Normal-Inverse-Gamma draw) gets N(C⁻¹h, σ² C⁻¹).

    Parameters
    ----------
    factor : (K, d, d) the precisions' lower Cholesky factors L_k, or with ``inverse`` their inverses L_k⁻¹
        (a caller that keeps them: two batched mat-vecs instead of two substitutions).
    info : (K, d) information vectors h_k.
    noise : (K, *S, d) standard normal z (S: extra draws per arm, () for one).

    Returns
    -------
    θ (K, *S, d). Cost O(K |S| d²) (and O(K d³) from L with extra draws), no per-arm solve.
    """
    sample_axes = noise.ndim - info.ndim
    if not inverse and sample_axes == 0:
        return lower_solve(factor, lower_solve(factor, info) + noise, transpose=True)
    if not inverse:  # many draws per arm: L⁻¹ once (O(K d³), no noise inside the substitution), then batched
        # dots; substituting through (K, *S) noise directly let XLA fuse the normals' generation into the
        # substitution's loops, which for small d ran up to 2.5x slower than the per-arm solves
        identity = jnp.broadcast_to(jnp.eye(factor.shape[-1], dtype=factor.dtype), factor.shape)
        factor = jnp.swapaxes(lower_solve(factor[:, None], identity), -1, -2)  # row j of the solve is L⁻¹e_j
    whitened = jnp.einsum("kab,kb->ka", factor, info)
    if sample_axes == 0:
        return jnp.einsum("kba,kb->ka", factor, whitened + noise)
    spread = whitened.reshape(whitened.shape[:1] + (1,) * sample_axes + whitened.shape[1:]) + noise
    return jnp.einsum("kba,k...b->k...a", factor, spread)


def stacked_gaussian_score_draws(factor: jax.Array, info: jax.Array, features: jax.Array, noise: jax.Array, *,
                                 inverse: bool = False) -> jax.Array:
    """Draws of the scores s_k = x_kᵀθ_k for θ_k ~ N(C_k⁻¹ h_k, C_k⁻¹) (a stack of K Gaussians), without θ.

    Each score is Gaussian, s_k ~ N(x_kᵀC_k⁻¹h_k, ‖L_k⁻¹x_k‖²) (C_k = L_k L_kᵀ), and the K scores are
    independent, so s_k = (L_k⁻¹x_k)ᵀ(L_k⁻¹h_k) + ‖L_k⁻¹x_k‖ z_k with one standard normal z_k per arm has
    the law of x_kᵀθ_k under ``stacked_gaussian_draws``: d times fewer normals, and the argmax over arms (a
    Thompson action) has the same distribution. The draws themselves differ from scoring θ draws.

    Parameters
    ----------
    factor : (K, d, d) L_k, or with ``inverse`` L_k⁻¹.
    info : (K, d) information vectors h_k.
    features : (K, d) one x_k per arm, or (d,) shared.
    noise : (K, *S) standard normal z (S: extra draws per arm, () for one).

    Returns
    -------
    s (K, *S). Cost O(K d² + K |S|).
    """
    features = jnp.broadcast_to(features, info.shape)
    if inverse:  # products and sums rather than batched dots: one fused loop over L⁻¹ (at K = 10,000, d = 5 on
        # CPU a batched (d, d)·(d, 2) dot took ~20x as long, two batched mat-vecs ~2x)
        whitened_info = jnp.sum(factor * info[:, None, :], axis=-1)
        whitened_features = jnp.sum(factor * features[:, None, :], axis=-1)
    else:
        whitened_info, whitened_features = lower_solve(factor, info), lower_solve(factor, features)
    mean = jnp.sum(whitened_info * whitened_features, axis=-1)
    scale = jnp.sqrt(jnp.sum(whitened_features**2, axis=-1))
    expand = (1,) * (noise.ndim - 1)
    return mean.reshape(mean.shape + expand) + scale.reshape(scale.shape + expand) * noise


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


def linear_regression_stats(xs: jax.Array, ys: jax.Array, noise_var: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Sufficient statistics of n observations: G = XᵀX / σ² (d, d) and B = Xᵀy / σ² (d,)."""
    return xs.T @ xs / noise_var, xs.T @ ys / noise_var


def gaussian_condition(g: GaussianInfo, gram: jax.Array, moment: jax.Array) -> GaussianInfo:
    """Add a Gaussian likelihood in statistics form: precision += G, information += B. O(d³)."""
    precision = g.precision_chol @ g.precision_chol.T + gram
    return GaussianInfo(jnp.linalg.cholesky(0.5 * (precision + precision.T)), g.info + moment)


def linear_regression_observe_batch(
    g: GaussianInfo, xs: jax.Array, ys: jax.Array, noise_var: jax.Array
) -> GaussianInfo:
    """Condition θ on n observations at once. ``xs`` (n, d), ``ys`` (n,). One O(d³) refactorisation."""
    return gaussian_condition(g, *linear_regression_stats(xs, ys, noise_var))


# --- Mixed-effect (meTS) posteriors -------------------------------------------------------------
# Model (models.mixed_effect): vec Ψ ~ N(μ_Ψ, Σ_Ψ), θ_i | Ψ ~ N(A_i vec Ψ, Σ0_i) with
# A_i = b_iᵀ ⊗ I_d, and arm i's data summarised by G_i = Σ x xᵀ/σ², B_i = Σ x y/σ².
# Integrating θ_i out, arm i's data are a Gaussian likelihood for A_i vec Ψ with precision
# P_i = (Σ0_i + G_i⁻¹)⁻¹ and information u_i = (Σ0_i + G_i⁻¹)⁻¹ G_i⁻¹ B_i. Both are computed through
# C_i = Σ0_i⁻¹ + G_i, which is always invertible, so arms with no data (G_i = 0) need no regulariser.


def effect_evidence(
    action_precision_chol: jax.Array, gram: jax.Array, moment: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """One arm's evidence about its mixed mean A_i vec Ψ, with θ_i integrated out.

    P = G − G C⁻¹ G and u = B − G C⁻¹ B with C = Σ0⁻¹ + G (Woodbury forms of (Σ0 + G⁻¹)⁻¹ and
    (Σ0 + G⁻¹)⁻¹ G⁻¹ B that never invert G). ``action_precision_chol`` (d, d) is the Cholesky
    factor of Σ0⁻¹; ``gram`` (d, d), ``moment`` (d,). Returns P (d, d) and u (d,).
    """
    precision = action_precision_chol @ action_precision_chol.T + gram
    return effect_evidence_from_conditional(jnp.linalg.cholesky(0.5 * (precision + precision.T)), gram, moment)


def effect_evidence_from_conditional(
    conditional_chol: jax.Array, gram: jax.Array, moment: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """``effect_evidence`` given the Cholesky factor of C = Σ0⁻¹ + G, for callers that keep it (meTS)."""
    whitened_gram = solve_triangular(conditional_chol, gram, lower=True)  # C = LLᵀ: G C⁻¹ G = (L⁻¹G)ᵀ(L⁻¹G)
    evidence_precision = gram - whitened_gram.T @ whitened_gram
    evidence_info = moment - whitened_gram.T @ solve_triangular(conditional_chol, moment, lower=True)
    return 0.5 * (evidence_precision + evidence_precision.T), evidence_info


def effect_posterior(
    effect_prior: GaussianInfo, mixing: jax.Array, evidence_precision: jax.Array, evidence_info: jax.Array
) -> GaussianInfo:
    """The effect posterior Q_t over vec Ψ (L·d,).

    Precision Σ_Ψ⁻¹ + Σ_i (b_i b_iᵀ) ⊗ P_i and information Σ_Ψ⁻¹ μ_Ψ + Σ_i b_i ⊗ u_i.
    ``mixing`` (K, L); ``evidence_precision`` (K, d, d) and ``evidence_info`` (K, d) from
    ``effect_evidence`` per arm. Cost O(K L² d² + (L d)³).
    """
    num_effects, d = mixing.shape[1], evidence_info.shape[-1]
    gram = jnp.einsum("kl,km,kab->lamb", mixing, mixing, evidence_precision).reshape(num_effects * d, -1)
    moment = jnp.einsum("kl,ka->la", mixing, evidence_info).reshape(-1)
    return gaussian_condition(effect_prior, gram, moment)


def action_conditional(
    action_precision_chol: jax.Array, gram: jax.Array, moment: jax.Array, mixed_mean: jax.Array
) -> GaussianInfo:
    """θ_i | Ψ, data: precision Σ0⁻¹ + G, information Σ0⁻¹ (Σ_l b_il ψ_l) + B.

    ``mixed_mean`` (d,) is Σ_l b_il ψ_l for the Ψ being conditioned on (a draw from Q_t).
    """
    prior = GaussianInfo(action_precision_chol, action_precision_chol @ (action_precision_chol.T @ mixed_mean))
    return gaussian_condition(prior, gram, moment)


def action_marginal(
    action_precision_chol: jax.Array,
    gram: jax.Array,
    moment: jax.Array,
    mixing_row: jax.Array,
    effects: GaussianInfo,
) -> tuple[jax.Array, jax.Array]:
    """Mean (d,) and covariance (d, d) of θ_i given the data with Ψ integrated out.

    Mean C⁻¹(Σ0⁻¹ A μ̄ + B); covariance C⁻¹ + C⁻¹ Σ0⁻¹ A Σ̄ Aᵀ Σ0⁻¹ C⁻¹ (total covariance),
    with C = Σ0⁻¹ + G, (μ̄, Σ̄) the effect posterior and A = b_iᵀ ⊗ I_d. For reporting and tests.
    """
    d = moment.shape[-1]
    num_effects = mixing_row.shape[-1]
    conditional = action_conditional(action_precision_chol, gram, moment, mixing_row @ gaussian_mean(effects).reshape(num_effects, d))
    effect_cov = gaussian_covariance(effects).reshape(num_effects, d, num_effects, d)
    mixed_cov = jnp.einsum("l,m,lamb->ab", mixing_row, mixing_row, effect_cov)
    prior_precision = action_precision_chol @ action_precision_chol.T
    gain = cho_solve((conditional.precision_chol, True), prior_precision)  # C⁻¹ Σ0⁻¹
    cov = gaussian_covariance(conditional) + gain @ mixed_cov @ gain.T
    return gaussian_mean(conditional), 0.5 * (cov + cov.T)
