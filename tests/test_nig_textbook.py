"""The Normal-Inverse-Gamma posterior (``inference.nig``, standard TS's per-arm model) against independent answers.

Oracles, none of them the package's code: the Bayesian-regression form of the conjugate update written
in NumPy (``nig_oracle``), the posterior moments by brute-force quadrature of prior × likelihood on a
grid, and scipy's Student-t / inverse-gamma laws for the samplers.
"""

import jax
import jax.numpy as jnp
import numpy as np
from nig_oracle import nig_mean_moments, nig_textbook
from scipy import stats

from structbandits.inference.nig import NIG, nig_observe, nig_observe_batch, nig_prior, nig_sample, nig_sample_mean

RNG = np.random.default_rng(11)
# A (2, 3) batch of (cell, arm) priors, each its own (m, κ, α, β), and 7 rounds of data per element.
PRIOR = NIG(*(jnp.asarray(RNG.uniform(low, high, (2, 3))) for low, high in ((-5, 5), (0.2, 6), (0.6, 4), (0.5, 20))))
YS = RNG.normal(3.0, 2.5, size=(7, 2, 3))


def _elements(p):
    return [tuple(float(np.asarray(field)[i, j]) for field in p) for i in range(2) for j in range(3)]


def test_sequential_updates_equal_the_textbook_posterior_per_cell_and_arm():
    sequential = jax.jit(lambda p, ys: jax.lax.scan(lambda q, y: (nig_observe(q, y), None), p, ys)[0])(PRIOR, jnp.asarray(YS))
    for (i, j), prior, got in zip(np.ndindex(2, 3), _elements(PRIOR), _elements(sequential)):
        np.testing.assert_allclose(got, nig_textbook(*prior, YS[:, i, j]), rtol=1e-12, err_msg=f"element {(i, j)}")


def test_batch_update_with_masks_equals_the_textbook_posterior():
    ys = np.concatenate([YS[:, 0, 0], [1e3, -1e3]])  # the last two rows are padding
    mask = np.r_[np.ones(7, bool), False, False]
    mask[2] = False  # and one real row is masked out too
    for prior in _elements(PRIOR):
        got = nig_observe_batch(nig_prior(*prior), jnp.asarray(ys), jnp.asarray(mask))
        np.testing.assert_allclose([float(v) for v in got], nig_textbook(*prior, ys, mask), rtol=1e-12)
    unmasked = nig_observe_batch(nig_prior(*_elements(PRIOR)[0]), jnp.asarray(YS[:, 0, 0]))
    np.testing.assert_allclose([float(v) for v in unmasked], nig_textbook(*_elements(PRIOR)[0], YS[:, 0, 0]), rtol=1e-12)
    # No data: the prior comes back.
    empty = nig_observe_batch(nig_prior(*_elements(PRIOR)[1]), jnp.asarray(ys), jnp.zeros(9, bool))
    np.testing.assert_allclose([float(v) for v in empty], _elements(PRIOR)[1], rtol=1e-12)


def test_posterior_moments_equal_brute_force_quadrature():
    """E[μ], Var[μ] (the Student-t marginal's) and E[σ²] from the package's posterior equal the
    moments of prior × likelihood integrated on a (μ, log σ²) grid — no conjugacy algebra involved."""
    m0, kappa0, alpha0, beta0 = 1.0, 0.5, 1.5, 2.0
    ys = np.array([2.3, 0.4, 3.1, 1.7, 2.9])
    post = nig_observe_batch(nig_prior(m0, kappa0, alpha0, beta0), jnp.asarray(ys))
    mean_mu, var_mu = nig_mean_moments(*(float(v) for v in post))
    mean_var = float(post.beta) / (float(post.alpha) - 1)

    mu = np.linspace(-20.0, 24.0, 1501)[:, None]  # wide: the t marginal's tails carry Var[μ]
    log_var = np.linspace(-6.0, 7.0, 1501)[None, :]
    var = np.exp(log_var)
    log_density = (stats.norm.logpdf(mu, m0, np.sqrt(var / kappa0)) + stats.invgamma.logpdf(var, alpha0, scale=beta0)
                   + log_var  # Jacobian of σ² = exp(log σ²)
                   + stats.norm.logpdf(ys[:, None, None], mu, np.sqrt(var)).sum(0))
    weight = np.exp(log_density - log_density.max())
    weight /= weight.sum()
    np.testing.assert_allclose(np.sum(weight * mu), mean_mu, rtol=1e-6)
    np.testing.assert_allclose(np.sum(weight * (mu - mean_mu) ** 2), var_mu, rtol=1e-6)
    np.testing.assert_allclose(np.sum(weight * var), mean_var, rtol=1e-6)


def test_samplers_draw_the_textbook_marginals():
    """Draws from the textbook posterior (built from the NumPy oracle, not from the package's update):
    μ alone is Student-t(2α_n, μ_n, √(β_n/(α_n κ_n))), σ² is InvGamma(α_n, β_n), and μ | σ² is N(μ_n, σ²/κ_n)."""
    m, kappa, alpha, beta = nig_textbook(77.0, 5.0, 1.0, 10.0, RNG.normal(80.0, 3.0, size=12))
    posterior = nig_prior(m, kappa, alpha, beta)
    law = stats.t(2 * alpha, loc=m, scale=np.sqrt(beta / (alpha * kappa)))
    draws = jax.jit(nig_sample_mean, static_argnums=2)(posterior, jax.random.PRNGKey(2), (20_000,))
    assert stats.kstest(np.asarray(draws), law.cdf).pvalue > 1e-3
    mean, var = (np.asarray(v) for v in jax.jit(nig_sample, static_argnums=2)(posterior, jax.random.PRNGKey(3), (20_000,)))
    assert stats.kstest(mean, law.cdf).pvalue > 1e-3
    assert stats.kstest(var, stats.invgamma(alpha, scale=beta).cdf).pvalue > 1e-3
    assert stats.kstest((mean - m) * np.sqrt(kappa / var), stats.norm.cdf).pvalue > 1e-3
