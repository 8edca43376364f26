"""The closed-form Gaussian regression against dense textbook formulas."""

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings, strategies as st

from structbandits.inference.conjugate import (
    cholesky_rank_one_update,
    gaussian_covariance,
    gaussian_from_moments,
    gaussian_mean,
    gaussian_sample,
    linear_regression_observe,
    linear_regression_observe_batch,
)


def random_spd(rng, d):
    a = rng.normal(size=(d, d))
    return a @ a.T + d * np.eye(d)


@settings(max_examples=25, deadline=None)
@given(d=st.integers(1, 6), seed=st.integers(0, 10_000))
def test_rank_one_update_matches_dense_cholesky(d, seed):
    rng = np.random.default_rng(seed)
    matrix = random_spd(rng, d)
    x = rng.normal(size=d) * rng.uniform(0.1, 5.0)
    updated = cholesky_rank_one_update(jnp.linalg.cholesky(matrix), jnp.asarray(x))
    np.testing.assert_allclose(updated, np.linalg.cholesky(matrix + np.outer(x, x)), rtol=1e-9, atol=1e-10)
    assert np.allclose(np.triu(np.asarray(updated), 1), 0.0)


def dense_posterior(prior_mean, prior_cov, xs, ys, noise_var):
    """Textbook Bayesian linear regression with explicit inverses (the oracle)."""
    precision = np.linalg.inv(prior_cov) + xs.T @ xs / noise_var
    cov = np.linalg.inv(precision)
    mean = cov @ (np.linalg.solve(prior_cov, prior_mean) + xs.T @ ys / noise_var)
    return mean, cov


def test_sequential_and_batch_updates_match_dense_formula():
    rng = np.random.default_rng(0)
    d, n, noise_var = 4, 30, 0.3
    prior_mean, prior_cov = rng.normal(size=d), random_spd(rng, d) / d
    xs, ys = rng.normal(size=(n, d)), rng.normal(size=n)
    prior = gaussian_from_moments(jnp.asarray(prior_mean), jnp.asarray(prior_cov))
    np.testing.assert_allclose(gaussian_mean(prior), prior_mean, rtol=1e-10)
    np.testing.assert_allclose(gaussian_covariance(prior), prior_cov, rtol=1e-9)

    sequential = prior
    for x, y in zip(xs, ys):
        sequential = linear_regression_observe(sequential, jnp.asarray(x), y, noise_var)
    batch = linear_regression_observe_batch(prior, jnp.asarray(xs), jnp.asarray(ys), noise_var)
    mean, cov = dense_posterior(prior_mean, prior_cov, xs, ys, noise_var)
    for posterior in (sequential, batch):
        np.testing.assert_allclose(gaussian_mean(posterior), mean, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(gaussian_covariance(posterior), cov, rtol=1e-8, atol=1e-12)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 20))
def test_posterior_precision_only_grows(seed, n):
    rng = np.random.default_rng(seed)
    d = 3
    prior = gaussian_from_moments(jnp.zeros(d), jnp.asarray(random_spd(rng, d)))
    posterior = linear_regression_observe_batch(prior, jnp.asarray(rng.normal(size=(n, d))),
                                                jnp.asarray(rng.normal(size=n)), 0.5)
    gain = posterior.precision_chol @ posterior.precision_chol.T - prior.precision_chol @ prior.precision_chol.T
    assert np.linalg.eigvalsh(np.asarray(gain)).min() > -1e-9


def test_samples_have_the_posterior_moments():
    rng = np.random.default_rng(1)
    d = 3
    mean, cov = rng.normal(size=d), random_spd(rng, d)
    g = gaussian_from_moments(jnp.asarray(mean), jnp.asarray(cov))
    draws = np.asarray(gaussian_sample(g, jax.random.PRNGKey(0), (200_000,)))
    assert draws.shape == (200_000, d)
    se = np.sqrt(np.diag(cov) / draws.shape[0])
    assert np.all(np.abs(draws.mean(0) - mean) < 4 * se)
    np.testing.assert_allclose(np.cov(draws.T), cov, rtol=0.02, atol=0.02 * np.abs(cov).max())


def test_jittable_and_float64():
    g = gaussian_from_moments(jnp.zeros(2), jnp.eye(2))
    out = jax.jit(linear_regression_observe)(g, jnp.ones(2), 1.0, 0.5)
    assert out.info.dtype == jnp.float64 and out.precision_chol.dtype == jnp.float64
