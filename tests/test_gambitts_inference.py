"""GAMBITTS inference pieces against independent oracles: scipy laws, batch vs sequential updates.

The NIG posterior (standard TS) is checked against its textbook formulas in test_nig_textbook.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from structbandits.errors import ValidationError
from structbandits.inference.empirical import (
    empirical_means,
    empirical_sample,
    empirical_subsample,
    empirical_treatment,
    empirical_weights,
)
from structbandits.inference.niw import (
    niw_covariance_mean,
    niw_mean_covariance,
    niw_observe,
    niw_observe_batch,
    niw_prior,
    niw_sample,
    niw_sample_mean,
)
from structbandits.inference.sampling import chisquare, gamma, student_t


def test_gamma_sampler_matches_scipy():
    shapes = (0.5, 0.8, 1.0, 4.5, 300.0)
    alpha = jnp.repeat(jnp.asarray(shapes), 20_000).reshape(len(shapes), -1)
    draws = np.asarray(jax.jit(gamma, static_argnums=2)(jax.random.PRNGKey(3), alpha, alpha.shape))
    for row, shape_param in enumerate(shapes):
        assert stats.kstest(draws[row], stats.gamma(shape_param).cdf).pvalue > 1e-3


def test_chisquare_and_t_match_scipy_with_per_element_parameters():
    df = jnp.repeat(jnp.asarray([1.0, 3.0, 17.0]), 20_000).reshape(3, -1)
    chi = np.asarray(jax.jit(chisquare, static_argnums=2)(jax.random.PRNGKey(1), df, df.shape))
    t = np.asarray(jax.jit(student_t, static_argnums=2)(jax.random.PRNGKey(2), df, df.shape))
    for row, k in enumerate((1.0, 3.0, 17.0)):
        assert stats.kstest(chi[row], stats.chi2(k).cdf).pvalue > 1e-3
        assert stats.kstest(t[row], stats.t(k).cdf).pvalue > 1e-3


@pytest.fixture(scope="module")
def niw_data():
    rng = np.random.default_rng(0)
    root = np.array([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [-0.3, 0.2, 1.5]])
    zs = jnp.asarray(rng.normal(size=(25, 3)) @ root.T + np.array([1.0, -2.0, 0.5]))
    prior = niw_prior(jnp.zeros(3), 1.0, jnp.eye(3), 3.0)
    return prior, zs


def _sequential(observe, prior, values):
    return jax.jit(lambda p, v: jax.lax.scan(lambda q, x: (observe(q, x), None), p, v)[0])(prior, values)


def test_niw_sequential_updates_equal_the_batch_formula(niw_data):
    prior, zs = niw_data
    sequential = _sequential(niw_observe, prior, zs)
    batch = niw_observe_batch(prior, zs)
    for a, b in zip(sequential, batch):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)
    masked = niw_observe_batch(prior, jnp.concatenate([zs, 100.0 + zs[:5]]), jnp.arange(30) < 25)
    for a, b in zip(masked, batch):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)


def test_niw_textbook_posterior(niw_data):
    """Murphy (2007) eq. 250-254 with the explicit scatter matrix, computed in NumPy."""
    prior, zs = niw_data
    z = np.asarray(zs)
    n, zbar = len(z), z.mean(0)
    scatter = (z - zbar).T @ (z - zbar)
    psi = np.eye(3) + scatter + (1.0 * n / (1.0 + n)) * np.outer(zbar, zbar)
    post = niw_observe_batch(prior, zs)
    np.testing.assert_allclose(post.mean, n * zbar / (1 + n), rtol=1e-12)
    np.testing.assert_allclose(post.scale_chol @ post.scale_chol.T, psi, rtol=1e-10)
    assert float(post.nu) == 3 + n and float(post.kappa) == 1 + n


def test_niw_draws_have_the_analytic_moments(niw_data):
    prior, zs = niw_data
    post = niw_observe_batch(prior, zs[:8])  # few data: wide posterior, heavy tails still finite moments
    mean, root = jax.jit(niw_sample, static_argnums=2)(post, jax.random.PRNGKey(5), (60_000,))
    cov = np.asarray(root @ jnp.swapaxes(root, -1, -2))
    expected_cov = np.asarray(niw_covariance_mean(post))
    assert np.abs(cov.mean(0) - expected_cov).max() < 0.05 * np.abs(expected_cov).max()
    np.testing.assert_allclose(np.asarray(mean).mean(0), post.mean, atol=0.02)
    np.testing.assert_allclose(np.cov(np.asarray(mean).T), niw_mean_covariance(post), rtol=0.06, atol=0.01)
    # The marginal sampler of μ has the same law: each coordinate is a scaled Student-t.
    marginal = np.asarray(jax.jit(niw_sample_mean, static_argnums=2)(post, jax.random.PRNGKey(6), (20_000,)))
    psi = np.asarray(post.scale_chol @ post.scale_chol.T)
    dof = float(post.nu) - 3 + 1
    for i in range(3):
        scale = np.sqrt(psi[i, i] / (float(post.kappa) * dof))
        law = stats.t(dof, loc=float(post.mean[i]), scale=scale)
        assert stats.kstest(marginal[:, i], law.cdf).pvalue > 1e-3
        assert stats.kstest(np.asarray(mean)[:20_000, i], law.cdf).pvalue > 1e-3


def test_empirical_treatment_means_subsamples_and_resamples_only_valid_rows():
    rng = np.random.default_rng(2)
    draws = rng.normal(size=(3, 2, 6, 2))
    counts = np.array([[6, 2], [4, 1], [3, 5]])
    draws[np.arange(6) >= counts[..., None]] = 1e6  # padding must never be read
    model = empirical_treatment(draws, counts)
    expected = np.stack([[draws[k, c, :counts[k, c]].mean(0) for c in range(2)] for k in range(3)])
    np.testing.assert_allclose(empirical_means(model), expected)
    sample = np.asarray(jax.jit(empirical_sample, static_argnums=3)(model, jax.random.PRNGKey(0), 1, (500,)))
    assert sample.shape == (500, 3, 2) and np.abs(sample).max() < 1e5
    for k in range(3):
        assert len(np.unique(sample[:, k, 0])) == counts[k, 1]
    weights = np.asarray(jax.jit(empirical_weights, static_argnums=3)(model, jax.random.PRNGKey(0), 1, 500))
    np.testing.assert_array_equal(weights.sum(axis=1), 500)
    assert np.all(weights[np.arange(6) >= counts[:, 1, None]] == 0)  # padding is never drawn
    def score(z):  # any nonlinear function of a treatment
        return np.sin(3 * z[..., 0]) * z[..., 1] ** 2

    np.testing.assert_allclose((weights * score(draws[:, 1])).sum(axis=1) / 500, score(sample).mean(axis=0),
                               rtol=1e-12)
    sub = jax.jit(empirical_subsample, static_argnums=2)(model, jax.random.PRNGKey(1), 3)
    np.testing.assert_array_equal(sub.counts, np.minimum(counts, 3))
    for k in range(3):
        for c in range(2):
            kept = np.asarray(sub.draws[k, c, :int(sub.counts[k, c])])
            valid = draws[k, c, :counts[k, c]]
            assert all(any(np.allclose(row, v) for v in valid) for row in kept)
            assert len({tuple(r) for r in kept}) == len(kept)  # without replacement
    with pytest.raises(ValidationError, match="treatment_counts"):
        empirical_treatment(draws, counts + 1)
    with pytest.raises(ValidationError, match="treatment_draws"):
        empirical_treatment(draws[0])
