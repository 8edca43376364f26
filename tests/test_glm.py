"""Laplace pseudo-observations and the logistic agents (meTS-GLM, HierTS-GLM, GLM-TS)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from mixed_effect_oracles import D, K, make_problem
from numpyro.infer import Predictive
from scipy.optimize import minimize

from structbandits.agents import glm_ts, hier_ts_glm, mets, mets_glm
from structbandits.errors import ValidationError
from structbandits.inference import posterior
from structbandits.inference.conjugate import gaussian_covariance, gaussian_mean
from structbandits.inference.pseudo_observations import (
    logistic_derivatives,
    logistic_log_posterior,
    logistic_mode,
    logistic_pseudo_observations,
)
from structbandits.models import marginal_action_prior, mixed_effect_logistic


def logistic_data(seed, n=60, d=3, scale=1.0):
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n, d))
    theta = scale * rng.normal(size=d)
    rewards = (rng.uniform(size=n) < 1 / (1 + np.exp(-features @ theta))).astype(float)
    weights = (rng.uniform(size=n) < 0.7).astype(float)
    return jnp.asarray(features), jnp.asarray(rewards), jnp.asarray(weights)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_newton_mode_matches_a_generic_optimiser(seed):
    features, rewards, weights = logistic_data(seed)
    precision, mean = 0.5 * jnp.eye(3), jnp.asarray([0.3, -0.2, 0.1])
    negative = lambda t: -float(logistic_log_posterior(jnp.asarray(t), features, rewards, weights, precision, mean))
    reference = minimize(negative, np.zeros(3), method="BFGS", options={"gtol": 1e-10}).x
    # A far start: undamped Newton overshoots from here; the damped steps must still converge.
    mode = logistic_mode(jnp.asarray([30.0, -30.0, 30.0]), features, rewards, weights, precision, mean, 40)
    np.testing.assert_allclose(mode, reference, atol=1e-5)


def test_damped_newton_steps_never_decrease_the_objective():
    features, rewards, weights = logistic_data(3, scale=4.0)  # nearly separable: saturated sigmoids
    precision, mean = 0.05 * jnp.eye(3), jnp.zeros(3)
    theta, values = jnp.asarray([10.0, 10.0, -10.0]), []
    for _ in range(10):
        values.append(float(logistic_log_posterior(theta, features, rewards, weights, precision, mean)))
        theta = logistic_mode(theta, features, rewards, weights, precision, mean, 1)
    assert np.all(np.diff(values) >= -1e-12)


def test_pseudo_observations_are_the_second_order_expansion():
    features, rewards, weights = logistic_data(4)
    point = jnp.asarray([0.2, -0.5, 0.4])
    gram, moment = logistic_pseudo_observations(point, features, rewards, weights)
    log_lik = lambda t: logistic_log_posterior(t, features, rewards, weights, jnp.zeros((3, 3)), jnp.zeros(3))
    # The quadratic −½θᵀGθ + Bᵀθ has the log-likelihood's gradient and Hessian at the expansion point.
    np.testing.assert_allclose(-gram @ point + moment, jax.grad(log_lik)(point), rtol=1e-10)
    np.testing.assert_allclose(-gram, jax.hessian(log_lik)(point), rtol=1e-10)
    # At the MLE the gradient term vanishes: B = G θ̂, the seed's pseudo-observations.
    mle = logistic_mode(jnp.zeros(3), features, rewards, weights, 1e-12 * jnp.eye(3), jnp.zeros(3), 30)
    gram, moment = logistic_pseudo_observations(mle, features, rewards, weights)
    np.testing.assert_allclose(moment, gram @ mle, atol=1e-8)
    gradient, _ = logistic_derivatives(mle, features, rewards, weights)
    np.testing.assert_allclose(gradient, 0.0, atol=1e-8)


def logistic_problem(seed, repeats=4):
    (mixing, effect_mean, effect_cov, action_cov), contexts, actions, _ = make_problem(seed)
    contexts, actions = jnp.tile(contexts, (repeats, 1)), jnp.tile(actions, repeats)
    prior = (mixing, effect_mean, effect_cov, action_cov)
    rewards = Predictive(mixed_effect_logistic, num_samples=1)(jax.random.PRNGKey(seed), *prior, contexts, actions)["reward"][0]
    return prior, contexts, actions, rewards


def feed(policy, contexts, actions, rewards):
    def step(state, data):
        return policy.update(state, *data), None

    return jax.lax.scan(step, policy.init(jax.random.PRNGKey(0)), (contexts, actions, rewards))[0]


@pytest.mark.parametrize(("factored", "refit"), [(False, "per_arm"), (True, "per_arm"), (False, "history")])
def test_mets_glm_sequential_state_equals_the_batch_laplace_posterior(factored, refit):
    prior, contexts, actions, rewards = logistic_problem(0)
    state = feed(mets_glm(*prior, history_size=contexts.shape[0], factored=factored, refit=refit), contexts, actions,
                 rewards)
    batch = posterior(mixed_effect_logistic, dict(zip(("mixing", "effect_mean", "effect_cov", "action_cov"), prior),
                                                  contexts=contexts, actions=actions, rewards=rewards), method="laplace")
    # Warm-started refits after every round (per arm to the Newton tolerance, or 3 steps over the whole
    # history) reach the same modes as 50 steps from the prior.
    mean, _ = marginal_action_prior(*prior)
    assert not np.allclose(state.mode, mean)
    assert int(state.failed_refits) == 0  # every per-arm refit met its Newton tolerance
    np.testing.assert_allclose(state.posterior.gram.sum(0), batch_grams(prior, contexts, actions, rewards).sum(0), rtol=1e-6)
    if not factored:
        precision = state.posterior.effect_precision
        np.testing.assert_allclose(np.linalg.solve(precision, state.posterior.effect_info), batch.mean("psi"), atol=1e-6)
        np.testing.assert_allclose(np.linalg.inv(precision), batch.moments["psi"][1], rtol=1e-6)


def batch_grams(prior, contexts, actions, rewards):
    mean, cov = marginal_action_prior(*prior)
    grams = []
    for arm in range(K):
        weights = (actions == arm).astype(float)
        mode = logistic_mode(mean[arm], contexts, rewards, weights, jnp.linalg.inv(cov[arm]), mean[arm], 50)
        grams.append(logistic_pseudo_observations(mode, contexts, rewards, weights)[0])
    return np.stack(grams)


def test_history_is_a_sliding_window_of_the_latest_rounds():
    prior, contexts, actions, rewards = logistic_problem(1, repeats=1)
    window = 20
    state = feed(mets_glm(*prior, history_size=window), contexts, actions, rewards)
    np.testing.assert_array_equal(np.sort(np.asarray(state.history.rows["actions"])), np.sort(np.asarray(actions[-window:])))
    assert int(state.history.count) == contexts.shape[0]


def test_glm_ts_is_the_per_arm_laplace_posterior():
    prior, contexts, actions, rewards = logistic_problem(2)
    mean, cov = marginal_action_prior(*prior)
    state = feed(glm_ts(mean, cov, history_size=contexts.shape[0]), contexts, actions, rewards)
    for arm in range(K):
        weights = (actions == arm).astype(float)
        precision = jnp.linalg.inv(cov[arm])
        mode = logistic_mode(mean[arm], contexts, rewards, weights, precision, mean[arm], 50)
        _, hessian = logistic_derivatives(mode, contexts, rewards, weights)
        posterior_arm = jax.tree.map(lambda leaf: leaf[arm], state.posterior)
        np.testing.assert_allclose(gaussian_mean(posterior_arm), mode, atol=1e-6)  # N(θ̂, (Λ + H)⁻¹)
        np.testing.assert_allclose(gaussian_covariance(posterior_arm), np.linalg.inv(precision + hessian), rtol=1e-6)


def test_hier_ts_glm_is_mets_glm_with_one_shared_effect():
    prior, contexts, actions, rewards = logistic_problem(3, repeats=1)
    _, effect_mean, effect_cov, action_cov = prior
    state = feed(hier_ts_glm(effect_mean, effect_cov, action_cov, num_actions=K, history_size=64), contexts, actions, rewards)
    assert state.posterior.effect_precision.shape == (D, D)
    average = np.asarray(effect_cov).reshape(2, D, 2, D).sum(axis=(0, 2)) / 4
    reference = feed(mets_glm(np.ones((K, 1)), np.asarray(effect_mean).mean(0, keepdims=True), average, action_cov,
                              history_size=64), contexts, actions, rewards)
    np.testing.assert_allclose(state.posterior.effect_precision, reference.posterior.effect_precision, rtol=1e-12)


def test_mets_glm_learns_on_a_logistic_bandit():
    from structbandits.envs import mixed_effect_bandit
    from structbandits.experiments.runner import batched_simulator, seed_keys

    env = mixed_effect_bandit(10, 2, 2, rewards="logistic", mixing_high=2.0)
    params = env.model.params
    policy = mets_glm(params["mixing"], params["effect_mean"], params["effect_cov"], params["action_cov"], history_size=300)
    regret = batched_simulator(policy, env, 300)(seed_keys(0, 8)).expected_regret
    early, late = np.asarray(regret[:, :50]).mean(), np.asarray(regret[:, -50:]).mean()
    assert late < 0.5 * early


def test_glm_agents_validate_their_arguments():
    prior, *_ = logistic_problem(0, repeats=1)
    with pytest.raises(ValidationError, match="history_size: expected an integer >= 1"):
        mets_glm(*prior, history_size=0)
    with pytest.raises(ValidationError, match="newton_steps"):
        glm_ts(jnp.zeros(2), jnp.eye(2), num_actions=3, history_size=10, newton_steps=0)
    with pytest.raises(ValidationError, match="mixing: expected shape"):
        mets_glm(np.ones(3), *prior[1:], history_size=10)
    with pytest.raises(ValidationError, match="noise_scale"):
        mets(*prior, noise_scale=-1.0)
