"""Posterior predictive draws (``PosteriorResult.predictive_draws``, as ArviZ data through
``diagnostics.posterior_predictive_to_arviz``): draws of the reward from the posterior, on the same program.

Oracles: for the linear-Gaussian programs the posterior predictive of y_t is Gaussian with mean
x_tᵀ E[θ_{a_t}] and variance x_tᵀ Cov[θ_{a_t}] x_t + σ² (closed form from the exact moments); for a
program with no closed form, the Bernoulli draws' frequencies equal the mean success probability
over the posterior draws that were substituted.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from mixed_effect_oracles import NOISE, make_problem
from numpyro.infer import Predictive

from structbandits.diagnostics import posterior_predictive_to_arviz, posterior_to_arviz
from structbandits.errors import ValidationError
from structbandits.inference import PosteriorResult, posterior
from structbandits.models import linear_bandit, mixed_effect_linear, random_intercept_logistic

DRAWS = 2000


def _check_gaussian_predictive(idata, result, contexts, actions):
    predicted = idata.posterior_predictive["reward"]
    assert predicted.dims == ("chain", "draw", "round")
    values = predicted.values.reshape(-1, contexts.shape[0])
    mean, cov = result.moments["theta"]
    x, arm = np.asarray(contexts), np.asarray(actions)
    expected_mean = np.sum(x * mean[arm], -1)
    expected_var = np.einsum("ti,tij,tj->t", x, cov[arm], x) + NOISE**2
    np.testing.assert_allclose(values.mean(0), expected_mean, atol=5 * np.sqrt(expected_var.max() / values.shape[0]))
    np.testing.assert_allclose(values.var(0), expected_var, rtol=0.12)


def test_linear_bandit_predictive_matches_closed_form_moments():
    (mixing, *_), contexts, actions, rewards = make_problem(0)
    k, d = mixing.shape[0], contexts.shape[1]
    data = {"prior_mean": jnp.zeros((k, d)), "prior_cov": jnp.broadcast_to(jnp.eye(d), (k, d, d)),
            "noise_scale": NOISE, "contexts": contexts, "actions": actions, "rewards": rewards}
    result = posterior(linear_bandit, data, num_draws=DRAWS)
    idata = posterior_predictive_to_arviz(result, linear_bandit, data, key=jax.random.PRNGKey(1))
    _check_gaussian_predictive(idata, result, contexts, actions)
    np.testing.assert_array_equal(idata.observed_data["reward"].values, np.asarray(rewards))
    assert dict(idata.posterior["theta"].sizes) == {"chain": 2, "draw": DRAWS, "action": k, "feature": d}


def test_mixed_effect_predictive_at_new_contexts_without_rewards():
    (mixing, effect_mean, effect_cov, action_cov), contexts, actions, rewards = make_problem(1)
    hyper = {"mixing": mixing, "effect_mean": effect_mean, "effect_cov": effect_cov, "action_cov": action_cov,
             "noise_scale": NOISE}
    result = posterior(mixed_effect_linear, {**hyper, "contexts": contexts, "actions": actions, "rewards": rewards},
                       num_draws=DRAWS)
    rng = np.random.default_rng(5)
    new_contexts = jnp.asarray(rng.uniform(-1, 1, size=(7, contexts.shape[1])))
    new_actions = jnp.asarray(rng.integers(0, mixing.shape[0], size=7))
    idata = posterior_predictive_to_arviz(result, mixed_effect_linear,
                                          {**hyper, "contexts": new_contexts, "actions": new_actions})
    assert "observed_data" not in idata.groups()
    assert dict(idata.posterior_predictive["reward"].sizes) == {"chain": 2, "draw": DRAWS, "round": 7}
    _check_gaussian_predictive(idata, result, new_contexts, new_actions)


def test_predictive_of_a_program_without_closed_form():
    hyper = {"num_users": 3, "num_actions": 2, "num_features": 2}
    draws = Predictive(random_intercept_logistic, num_samples=300)(jax.random.PRNGKey(0), **hyper)
    result = PosteriorResult("nuts", {name: np.asarray(value)[None] for name, value in draws.items()})
    rng = np.random.default_rng(0)
    contexts = {"user": jnp.asarray(rng.integers(0, 3, size=5)), "features": jnp.asarray(rng.normal(size=(5, 2)))}
    actions = jnp.asarray(rng.integers(0, 2, size=5))
    # Many predictive draws per posterior draw: repeat the 300 draws 40 times.
    repeated = PosteriorResult("nuts", {name: np.tile(value, (40,) + (1,) * (value.ndim - 1)) for name, value in result.draws.items()})
    values = repeated.predictive_draws(random_intercept_logistic, {**hyper, "contexts": contexts, "actions": actions})
    assert values.shape == (40, 300, 5)  # (chains, draws, rounds)
    values = values.reshape(-1, 5)
    theta, user_effect = np.asarray(draws["theta"]), np.asarray(draws["user_effect"])  # (300, K, d), (300, U)
    logits = (np.sum(np.asarray(contexts["features"]) * theta[:, np.asarray(actions)], -1)
              + user_effect[:, np.asarray(contexts["user"])])  # (300, 5)
    probability = (1 / (1 + np.exp(-logits))).mean(0)
    np.testing.assert_allclose(values.mean(0), probability, atol=5 * np.sqrt(0.25 / values.shape[0]))


def test_predictive_validates_its_arguments():
    (mixing, *_), contexts, actions, rewards = make_problem(0)
    k, d = mixing.shape[0], contexts.shape[1]
    data = {"prior_mean": jnp.zeros((k, d)), "prior_cov": jnp.broadcast_to(jnp.eye(d), (k, d, d)),
            "noise_scale": NOISE, "contexts": contexts, "actions": actions, "rewards": rewards}
    result = posterior(linear_bandit, data, num_draws=10)
    with pytest.raises(ValidationError, match="data\\['horizon'\\]: not an argument"):
        result.predictive_draws(linear_bandit, {**data, "horizon": 3})
    with pytest.raises(ValidationError, match="site: expected a sample site"):
        posterior_predictive_to_arviz(result, linear_bandit, data, site="y")
    with pytest.raises(ValidationError, match="result: expected a PosteriorResult"):
        posterior_to_arviz(result.draws)
