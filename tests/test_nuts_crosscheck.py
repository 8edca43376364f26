"""The core promise: the closed-form LinTS posterior equals NUTS on the same NumPyro program."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer import Predictive

from structbandits.diagnostics import from_mcmc, summary
from structbandits.inference.conjugate import (
    gaussian_covariance,
    gaussian_from_moments,
    gaussian_mean,
    linear_regression_observe_batch,
)
from structbandits.inference.mcmc import nuts_sampler, run_nuts
from structbandits.models import linear_bandit

pytestmark = pytest.mark.slow

K, D, N, NOISE = 2, 2, 40, 0.7


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(3)
    prior_mean = jnp.asarray(rng.normal(size=(K, D)))
    a = rng.normal(size=(K, D, D))
    prior_cov = jnp.asarray(a @ np.swapaxes(a, 1, 2) + np.eye(D))
    contexts = jnp.asarray(rng.uniform(-1, 1, size=(N, D)))
    actions = jnp.asarray(rng.integers(0, K, size=N))
    simulated = Predictive(linear_bandit, num_samples=1)(
        jax.random.PRNGKey(0), prior_mean, prior_cov, NOISE, contexts, actions)
    rewards = simulated["reward"][0]
    return prior_mean, prior_cov, contexts, actions, rewards


@pytest.fixture(scope="module")
def nuts_run(problem):
    sampler = nuts_sampler(linear_bandit, num_warmup=500, num_samples=1500, num_chains=2)
    draws = run_nuts(sampler, jax.random.PRNGKey(1), *problem[:2], NOISE, *problem[2:])
    return sampler, draws


def closed_form(problem):
    prior_mean, prior_cov, contexts, actions, rewards = problem
    means, covs = [], []
    for arm in range(K):
        mine = np.asarray(actions) == arm
        g = linear_regression_observe_batch(gaussian_from_moments(prior_mean[arm], prior_cov[arm]),
                                            contexts[mine], rewards[mine], NOISE**2)
        means.append(gaussian_mean(g))
        covs.append(gaussian_covariance(g))
    return np.stack(means), np.stack(covs)


def test_closed_form_means_within_three_mcse_of_nuts(problem, nuts_run):
    sampler, draws = nuts_run
    theta = np.asarray(draws["theta"])  # (chains, draws, K, D)
    assert theta.shape == (2, 1500, K, D)
    table = summary(from_mcmc(sampler, dims={"theta": ["action", "feature"]}), var_names=["theta"])
    assert table["r_hat"].max() < 1.01
    mean_cf, cov_cf = closed_form(problem)
    nuts_mean = theta.mean(axis=(0, 1))
    mcse = np.sqrt(np.diagonal(cov_cf, axis1=1, axis2=2) / table["ess_bulk"].to_numpy().reshape(K, D))
    assert np.all(np.abs(nuts_mean - mean_cf) < 3 * mcse), (nuts_mean, mean_cf, mcse)


def test_closed_form_covariances_within_ten_percent_of_nuts(problem, nuts_run):
    theta = np.asarray(nuts_run[1]["theta"]).reshape(-1, K, D)
    _, cov_cf = closed_form(problem)
    for arm in range(K):
        cov_nuts = np.cov(theta[:, arm].T)
        rel = np.linalg.norm(cov_nuts - cov_cf[arm]) / np.linalg.norm(cov_cf[arm])
        assert rel < 0.10, (arm, rel)
