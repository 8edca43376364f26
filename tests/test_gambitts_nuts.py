"""The GAMBITTS closed forms against NUTS on the same NumPyro program (``models.mediated.mediated_linear``).

Given observed treatments and rewards, the joint posterior factorises into the Normal-Inverse-Wishart
treatment posterior per cell (``inference.niw``) and the Gaussian reward posterior
(``inference.conjugate``), so one NUTS run checks both.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer import Predictive

from structbandits.diagnostics import from_mcmc, summary
from structbandits.inference.conjugate import (
    GaussianInfo,
    gaussian_covariance,
    gaussian_mean,
    linear_regression_observe_batch,
)
from structbandits.inference.mcmc import nuts_sampler, run_nuts
from structbandits.inference.niw import niw_covariance_mean, niw_mean_covariance, niw_observe_batch, niw_prior
from structbandits.models.mediated import mediated_linear, with_intercept

pytestmark = pytest.mark.slow

D, CELLS, N, NOISE = 2, 2, 40, 1.5
MEAN0, KAPPA0, PSI0, NU0 = jnp.zeros(D), 1.0, jnp.eye(D), float(D)
REWARD_MEAN, REWARD_PRECISION = jnp.asarray([77.0, 0.0, 0.0]), jnp.asarray([0.01, 1.0, 1.0])


@pytest.fixture(scope="module")
def problem():
    cells = jnp.asarray(np.random.default_rng(0).integers(0, CELLS, size=N))
    args = (MEAN0, KAPPA0, PSI0, NU0, CELLS, REWARD_MEAN, REWARD_PRECISION, NOISE)
    draw = Predictive(mediated_linear, num_samples=1)(jax.random.PRNGKey(4), *args, cells)
    return args, cells, draw["treatment"][0], draw["reward"][0]


def _program(cells, treatments, rewards):
    # Hyperparameters closed over: NUTS jits the model's arguments, and the plate size must stay static.
    mediated_linear(MEAN0, KAPPA0, PSI0, NU0, CELLS, REWARD_MEAN, REWARD_PRECISION, NOISE, cells, treatments, rewards)


@pytest.fixture(scope="module")
def nuts_draws(problem):
    _, cells, treatments, rewards = problem
    sampler = nuts_sampler(_program, num_warmup=500, num_samples=1500, num_chains=2)
    draws = run_nuts(sampler, jax.random.PRNGKey(1), cells, treatments, rewards)
    table = summary(from_mcmc(sampler), var_names=["mean", "beta"])
    return draws, table


def _closed_forms(problem):
    _, cells, treatments, rewards = problem
    prior = niw_prior(MEAN0, KAPPA0, PSI0, NU0)
    cells_post = [niw_observe_batch(prior, treatments, cells == c) for c in range(CELLS)]
    reward_prior = GaussianInfo(jnp.diag(jnp.sqrt(REWARD_PRECISION)), REWARD_PRECISION * REWARD_MEAN)
    reward_post = linear_regression_observe_batch(reward_prior, with_intercept(treatments), rewards, NOISE**2)
    return cells_post, reward_post


def test_nuts_converged(nuts_draws):
    assert nuts_draws[1]["r_hat"].max() < 1.02


def test_niw_posterior_matches_nuts(problem, nuts_draws):
    draws, table = nuts_draws
    cells_post, _ = _closed_forms(problem)
    mean = np.asarray(draws["mean"]).reshape(-1, CELLS, D)
    cov = np.asarray(draws["cov"]).reshape(-1, CELLS, D, D)
    ess = table.filter(like="mean[", axis=0)["ess_bulk"].to_numpy().reshape(CELLS, D)
    for c, post in enumerate(cells_post):
        sd = np.sqrt(np.diag(niw_mean_covariance(post)))
        assert np.all(np.abs(mean[:, c].mean(0) - post.mean) < 4 * sd / np.sqrt(ess[c])), c
        rel = np.linalg.norm(np.cov(mean[:, c].T) - niw_mean_covariance(post)) / np.linalg.norm(niw_mean_covariance(post))
        assert rel < 0.15, (c, rel)
        expected_cov = np.asarray(niw_covariance_mean(post))
        rel = np.linalg.norm(cov[:, c].mean(0) - expected_cov) / np.linalg.norm(expected_cov)
        assert rel < 0.1, (c, rel)


def test_reward_posterior_matches_nuts(problem, nuts_draws):
    draws, table = nuts_draws
    _, reward_post = _closed_forms(problem)
    beta = np.asarray(draws["beta"]).reshape(-1, D + 1)
    cov = np.asarray(gaussian_covariance(reward_post))
    ess = table.filter(like="beta[", axis=0)["ess_bulk"].to_numpy()
    assert np.all(np.abs(beta.mean(0) - gaussian_mean(reward_post)) < 4 * np.sqrt(np.diag(cov) / ess))
    assert np.linalg.norm(np.cov(beta.T) - cov) / np.linalg.norm(cov) < 0.1
