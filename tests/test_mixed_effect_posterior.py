"""meTS closed forms against two oracles: the dense joint Gaussian posterior and NUTS on the program."""

import jax
import numpy as np
import pytest
from mixed_effect_oracles import D, K, L, N, NOISE, closed_form, dense_joint_posterior, make_problem

from structbandits.inference.conjugate import (
    action_conditional,
    gaussian_covariance,
    gaussian_mean,
    gaussian_sample,
)
from structbandits.inference.mcmc import nuts_sampler, run_nuts
from structbandits.models.mixed_effect import mixed_effect_linear


@pytest.mark.parametrize("empty_arm", [None, 1])
def test_effect_and_action_posteriors_equal_the_dense_joint(empty_arm):
    problem = make_problem(0, empty_arm)
    effects, marginals, *_ = closed_form(problem)
    mean, cov = dense_joint_posterior(problem)
    np.testing.assert_allclose(gaussian_mean(effects), mean[:L * D], rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(gaussian_covariance(effects), cov[:L * D, :L * D], rtol=1e-8, atol=1e-10)
    for i, (arm_mean, arm_cov) in enumerate(marginals):
        block = slice(L * D + i * D, L * D + (i + 1) * D)
        np.testing.assert_allclose(arm_mean, mean[block], rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(arm_cov, cov[block, block], rtol=1e-8, atol=1e-10)


def test_hierarchical_sampler_has_the_dense_joint_marginals():
    problem = make_problem(1)
    effects, _, action_chol, grams, moments = closed_form(problem)
    mixing = problem[0][0]
    num_draws = 100_000
    psi_key, theta_key = jax.random.split(jax.random.PRNGKey(0))
    psi = gaussian_sample(effects, psi_key, (num_draws,)).reshape(num_draws, L, D)

    def draw_arms(psi_draw, key):
        conditionals = jax.vmap(action_conditional)(action_chol, grams, moments, mixing @ psi_draw)
        return jax.vmap(gaussian_sample)(conditionals, jax.random.split(key, K))

    theta = np.asarray(jax.jit(jax.vmap(draw_arms))(psi, jax.random.split(theta_key, num_draws)))
    mean, cov = dense_joint_posterior(problem)
    joint_theta_sd = np.sqrt(np.diag(cov)[L * D:])
    sample_mean = theta.reshape(num_draws, -1).mean(0)
    assert np.all(np.abs(sample_mean - mean[L * D:]) < 4 * joint_theta_sd / np.sqrt(num_draws))
    np.testing.assert_allclose(np.cov(theta.reshape(num_draws, -1).T), cov[L * D:, L * D:],
                               atol=0.03 * np.abs(cov[L * D:, L * D:]).max())


def test_order_of_observations_does_not_change_the_posterior():
    problem = make_problem(2)
    permutation = np.random.default_rng(0).permutation(N)
    shuffled = (problem[0], problem[1][permutation], problem[2][permutation], problem[3][permutation])
    a, b = closed_form(problem)[0], closed_form(shuffled)[0]
    np.testing.assert_allclose(gaussian_mean(a), gaussian_mean(b), rtol=1e-10)
    np.testing.assert_allclose(gaussian_covariance(a), gaussian_covariance(b), rtol=1e-10)


@pytest.mark.slow
def test_closed_form_matches_nuts_on_the_program():
    problem = make_problem(3)
    sampler = nuts_sampler(mixed_effect_linear, num_warmup=500, num_samples=1500, num_chains=2)
    args, contexts, actions, rewards = problem
    # A fixed-seed statistical check: with 10 components, |z| > 3 for some component has about a
    # 3% chance even when the closed form is exact (the dense-joint test above is the exact oracle).
    draws = run_nuts(sampler, jax.random.PRNGKey(5), *args, NOISE, contexts, actions, rewards)
    effects, marginals, *_ = closed_form(problem)
    from structbandits.diagnostics import from_mcmc, summary

    table = summary(from_mcmc(sampler), var_names=["psi", "theta"])
    assert table["r_hat"].max() < 1.01
    ess = table["ess_bulk"].to_numpy()
    psi = np.asarray(draws["psi"]).reshape(-1, L * D)
    theta = np.asarray(draws["theta"]).reshape(-1, K, D)
    cf_means = np.concatenate([gaussian_mean(effects)] + [m for m, _ in marginals])
    cf_sds = np.sqrt(np.concatenate([np.diag(gaussian_covariance(effects))] + [np.diag(c) for _, c in marginals]))
    nuts_means = np.concatenate([psi.mean(0), theta.reshape(len(theta), -1).mean(0)])
    assert np.all(np.abs(nuts_means - cf_means) < 3 * cf_sds / np.sqrt(ess)), (nuts_means, cf_means)
    pairs = [(np.cov(psi.T), gaussian_covariance(effects))] + [(np.cov(theta[:, i].T), c) for i, (_, c) in enumerate(marginals)]
    for nuts_cov, cf_cov in pairs:
        assert np.linalg.norm(nuts_cov - cf_cov) / np.linalg.norm(cf_cov) < 0.10
