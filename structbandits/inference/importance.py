"""Is an approximate posterior good enough? The Pareto k̂ of its importance ratios.

Draw z₁..z_S from an approximation q (a Laplace Gaussian), weigh each by r_s = p(z_s, data) / q(z_s).
If q were the posterior, the ratios would be constant; the heavier their right tail, the worse q
covers the posterior. The generalized Pareto distribution fitted to the largest ratios has shape k;
its estimate k̂ is the diagnostic of Yao, Vehtari, Simpson and Gelman (2018), "Yes, but did it
work?: evaluating variational inference", and of Pareto smoothed importance sampling (Vehtari et al.,
JMLR 2024): k̂ ≤ 0.5 the approximation is good, 0.5 < k̂ ≤ 0.7 usable, k̂ > 0.7 unreliable (the
importance-sampling estimates themselves no longer converge at a practical rate).

``importance_mean_shift`` then asks the question a user cares about: how far (in sds of q) are the
posterior means, estimated by importance sampling from q's own draws, from q's means? It uses
truncated importance sampling (Ionides 2008: weights capped at √S times their mean), which is
consistent whenever the ratios have a finite variance (k̂ < 0.5) and still useful up to k̂ ≈ 0.7;
beyond that k̂ alone condemns q.

``pareto_khat`` follows the PSIS recipe: the M = ⌈min(0.2 S, 3√S)⌉ largest ratios, their exceedances
over the (M+1)-th largest, and Zhang and Stephens' (2009) empirical-Bayes estimate of (k, σ) with
PSIS's weak prior pulling k̂ toward 0.5 by 10 pseudo-observations. It is host-side NumPy (a few
milliseconds). ``tests/test_importance.py`` checks it against ArviZ's ``psislw`` (which the
inference layer may not import) and against exact Pareto samples.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["KHAT_GOOD", "KHAT_USABLE", "importance_mean_shift", "pareto_khat"]

KHAT_GOOD = 0.5
KHAT_USABLE = 0.7
PRIOR_BS = 3.0
PRIOR_K = 10.0


def _generalized_pareto_fit(exceedances: np.ndarray) -> tuple[float, float]:
    """Zhang-Stephens estimate (k, σ) of a generalized Pareto fitted to ``exceedances`` (M,) > 0, sorted
    ascending; k with PSIS's weak prior (10 pseudo-observations at 0.5)."""
    x = exceedances
    n = x.shape[0]
    grid_size = 30 + int(math.sqrt(n))
    # Candidate values of θ = −k/σ, spread by the quantiles of the data as Zhang and Stephens propose.
    theta = 1.0 - np.sqrt(grid_size / (np.arange(1, grid_size + 1) - 0.5))
    theta = theta / (PRIOR_BS * x[int(n / 4 + 0.5) - 1]) + 1.0 / x[-1]
    k = np.log1p(-theta[:, None] * x).mean(axis=1)  # the profile estimate of −k at each θ
    profile = n * (np.log(-theta / k) - k - 1.0)  # profile log-likelihood
    weights = 1.0 / np.exp(profile - profile[:, None]).sum(axis=1)  # posterior weights of the θ grid
    keep = weights >= 10 * np.finfo(float).eps
    theta, weights = theta[keep], weights[keep] / weights[keep].sum()
    theta_hat = float(np.sum(theta * weights))
    k_hat = float(np.log1p(-theta_hat * x).mean())
    sigma = -k_hat / theta_hat
    return (n * k_hat + PRIOR_K * 0.5) / (n + PRIOR_K), sigma


def pareto_khat(log_ratios: np.ndarray) -> float:
    """Pareto k̂ of importance ratios given as logs (S,) (any additive constant); NaN if they are not
    all finite or S < 20; 0 if the largest ratios are all equal (q matches the target there)."""
    log_ratios = np.asarray(log_ratios, dtype=float).reshape(-1)
    if not np.all(np.isfinite(log_ratios)):
        return float("nan")
    draws = log_ratios.shape[0]
    tail = int(math.ceil(min(0.2 * draws, 3.0 * math.sqrt(draws))))
    if draws < 20 or tail < 5:
        return float("nan")
    ordered = np.sort(log_ratios - log_ratios.max())
    cutoff = ordered[-tail - 1]
    exceedances = np.exp(ordered[-tail:]) - np.exp(cutoff)
    if exceedances[-1] <= 0:
        return 0.0
    k, _ = _generalized_pareto_fit(exceedances / exceedances[-1])  # k̂ does not depend on the scale
    return k if math.isfinite(k) else float("nan")


def importance_mean_shift(values: np.ndarray, log_ratios: np.ndarray) -> float:
    """max over components of |E_p[x] − E_q[x]| / sd_q[x]: the posterior means by truncated importance
    sampling from q's draws ``values`` (S, C) with ``log_ratios`` (S,), against q's means. NaN if not finite."""
    values = np.asarray(values, dtype=float).reshape(np.shape(values)[0], -1)
    weights = np.exp(np.asarray(log_ratios, dtype=float) - np.max(log_ratios))
    weights = np.minimum(weights, weights.mean() * math.sqrt(weights.shape[0]))
    weights = weights / weights.sum()
    sd = values.std(axis=0)
    shift = np.abs(weights @ values - values.mean(axis=0)) / np.where(sd > 0, sd, np.inf)
    return float(np.max(shift)) if shift.size and np.all(np.isfinite(weights)) else float("nan")
