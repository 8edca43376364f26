"""The textbook Normal-Inverse-Gamma posterior, written out in NumPy as an oracle for ``inference.nig``.

The scalar model μ | σ² ~ N(m, σ²/κ), σ² ~ InvGamma(α, β), y_t ~ N(μ, σ²) is Bayesian linear
regression with unknown σ² and a single regressor equal to one (Murphy, "Conjugate Bayesian analysis
of the Gaussian distribution", 2007, §6 / eq. 85-90, in the regression form), with prior precision
Λ_0 = κ and prior mean μ_0 = m:

    Λ_n = Λ_0 + XᵀX                  = κ + n
    μ_n = Λ_n⁻¹ (Λ_0 μ_0 + Xᵀy)      = (κ m + Σ y) / (κ + n)
    a_n = a_0 + n/2
    b_n = b_0 + ½ (yᵀy + μ_0ᵀΛ_0μ_0 − μ_nᵀΛ_nμ_n)

This is the raw-sum-of-squares form; the package writes β with the scatter about ȳ instead, so the
two only agree if both are right.
"""

import numpy as np


def nig_textbook(mean, kappa, alpha, beta, ys, mask=None):
    """(m_n, κ_n, α_n, β_n) from prior scalars and observations ``ys`` (n,); ``mask`` (n,) keeps rows."""
    y = np.asarray(ys, dtype=float)
    if mask is not None:
        y = y[np.asarray(mask, dtype=bool)]
    x = np.ones((len(y), 1))  # design matrix: one intercept column
    precision0, mean0 = np.array([[kappa]], float), np.array([mean], float)
    precision = precision0 + x.T @ x
    mean_n = np.linalg.solve(precision, precision0 @ mean0 + x.T @ y)
    alpha_n = alpha + len(y) / 2
    beta_n = beta + 0.5 * (y @ y + mean0 @ precision0 @ mean0 - mean_n @ precision @ mean_n)
    return float(mean_n[0]), float(precision[0, 0]), float(alpha_n), float(beta_n)


def nig_mean_moments(mean, kappa, alpha, beta):
    """E[μ] and Var[μ] of the Student-t marginal (2α dof, scale² β/(ακ)): Var = β / ((α − 1) κ), α > 1."""
    return mean, beta / ((alpha - 1) * kappa)
