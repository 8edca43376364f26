"""The generic NumPyro Thompson sampler: exact on a conjugate program, learns on a hierarchical one."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from structbandits.agents import lin_ts, numpyro_ts, uniform_random
from structbandits.agents.generic import program_data
from structbandits.envs import random_effects_bandit
from structbandits.errors import ValidationError
from structbandits.experiments import run_experiment
from structbandits.inference import posterior
from structbandits.inference.program import latent_space
from structbandits.models import linear_bandit, random_intercept_logistic

K, D, NOISE = 3, 2, 0.5


def linear_data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return (jnp.asarray(rng.uniform(-1, 1, (n, D))), jnp.asarray(rng.integers(0, K, n)), jnp.asarray(rng.normal(size=n)))


def feed(policy, state, contexts, actions, rewards):
    def step(s, data):
        return policy.update(s, *data), None

    return jax.jit(lambda s: jax.lax.scan(step, s, (contexts, actions, rewards))[0])(state)


def test_laplace_refit_is_exact_on_the_conjugate_program():
    prior_mean, prior_cov = jnp.zeros((K, D)), jnp.broadcast_to(jnp.eye(D), (K, D, D))
    model = functools.partial(linear_bandit, prior_mean, prior_cov, NOISE)
    policy = numpyro_ts(model, num_actions=K, example_context=jnp.zeros(D), history_size=40, refit_every=8)
    contexts, actions, rewards = linear_data()
    state = feed(policy, policy.init(jax.random.PRNGKey(0)), contexts, actions, rewards)
    closed = lin_ts(prior_mean, prior_cov, NOISE)
    exact = feed(closed, closed.init(jax.random.PRNGKey(0)), contexts, actions, rewards)
    # A Gaussian posterior is its own Laplace approximation: the refit's mode and precision are exact.
    mean = jax.vmap(lambda g: jax.scipy.linalg.cho_solve((g[0], True), g[1]))(tuple(exact.posterior))
    np.testing.assert_allclose(np.asarray(state.mode).reshape(K, D), mean, atol=1e-6)
    precision = np.asarray(state.precision_chol @ state.precision_chol.T)
    blocks = np.asarray(exact.posterior.precision_chol @ jnp.swapaxes(exact.posterior.precision_chol, 1, 2))
    for arm in range(K):
        np.testing.assert_allclose(precision[arm * D:(arm + 1) * D, arm * D:(arm + 1) * D], blocks[arm], rtol=1e-6)


def test_refits_happen_every_m_rounds_and_the_window_slides():
    model = functools.partial(linear_bandit, jnp.zeros((K, D)), jnp.broadcast_to(jnp.eye(D), (K, D, D)), NOISE)
    policy = numpyro_ts(model, num_actions=K, example_context=jnp.zeros(D), history_size=10, refit_every=7)
    contexts, actions, rewards = linear_data(13)
    state = policy.init(jax.random.PRNGKey(0))
    after_six = feed(policy, state, contexts[:6], actions[:6], rewards[:6])
    np.testing.assert_array_equal(after_six.mode, state.mode)  # no refit before the 7th observation
    after_seven = feed(policy, after_six, contexts[6:7], actions[6:7], rewards[6:7])
    assert not np.allclose(after_seven.mode, state.mode)
    full = feed(policy, after_seven, contexts[7:], actions[7:], rewards[7:])
    data = program_data(full.history)
    assert int(full.history.count) == 13 and int(data["mask"].sum()) == 10
    np.testing.assert_array_equal(np.sort(data["rewards"]), np.sort(rewards[3:]))


@pytest.mark.slow
def test_laplace_refit_matches_autolaplace_on_the_hierarchical_program():
    env = random_effects_bandit(3, 6, 2)
    params = env.model.params
    truth = env.init(jax.random.PRNGKey(0))
    rng = np.random.default_rng(1)
    n = 200
    contexts = {"user": jnp.asarray(rng.integers(0, 6, n)), "features": jnp.asarray(rng.uniform(-1, 1, (n, 2)))}
    actions = jnp.asarray(rng.integers(0, 3, n))
    logits = jnp.sum(contexts["features"] * truth.theta[actions], -1) + truth.user_effect[contexts["user"]]
    rewards = jax.random.bernoulli(jax.random.PRNGKey(2), jax.nn.sigmoid(logits)).astype(jnp.float64)
    model = functools.partial(random_intercept_logistic, **params)
    policy = numpyro_ts(model, num_actions=3, example_context={"user": jnp.asarray(0), "features": jnp.zeros(2)},
                        history_size=n, refit_every=n, laplace_steps=200)
    state = feed(policy, policy.init(jax.random.PRNGKey(0)), contexts, actions, rewards)
    reference = posterior(model, dict(contexts=contexts, actions=actions, rewards=rewards), method="laplace",
                          num_draws=4000, laplace_steps=5000)
    data = program_data(state.history)
    space = latent_space(model, "reward", data, jax.random.PRNGKey(0))
    draws = jax.vmap(lambda z: space.constrain(z, data))(
        state.mode + jax.random.normal(jax.random.PRNGKey(3), (4000, state.mode.shape[0]))
        @ jnp.linalg.inv(state.precision_chol))
    for site in ("theta", "user_scale"):
        ours, theirs = np.asarray(draws[site]), reference.draws[site][0]
        np.testing.assert_allclose(ours.mean(0), theirs.mean(0), atol=0.1 * theirs.std(0).max() + 0.02)
        np.testing.assert_allclose(ours.std(0), theirs.std(0), rtol=0.15)


def test_generic_sampler_learns_on_the_hierarchical_bandit():
    env = random_effects_bandit(4, 10, 2)
    model = functools.partial(random_intercept_logistic, **env.model.params)
    example = {"user": jnp.asarray(0), "features": jnp.zeros(2)}
    agents = {"generic": numpyro_ts(model, num_actions=4, example_context=example, history_size=150, refit_every=10,
                                    propensity_draws=8),
              "random": uniform_random(4)}
    results = run_experiment(agents, env, horizon=150, num_seeds=4, seed=0, progress=False)
    final = results[results["round"] == 149].groupby("agent")["cumulative_regret"].mean()
    assert final["generic"] < 0.7 * final["random"]
    propensity = results.loc[results["agent"] == "generic", "propensity"]
    assert propensity.between(0, 1).all()


def test_bad_programs_and_arguments_are_rejected():
    model = functools.partial(linear_bandit, jnp.zeros((K, D)), jnp.broadcast_to(jnp.eye(D), (K, D, D)), NOISE)
    with pytest.raises(ValidationError, match="method: expected one of laplace, nuts, got 'vi'"):
        numpyro_ts(model, num_actions=K, example_context=jnp.zeros(D), history_size=5, method="vi")
    with pytest.raises(ValidationError, match="model: expected a NumPyro program .* observed site 'y'"):
        numpyro_ts(model, num_actions=K, example_context=jnp.zeros(D), history_size=5, reward_site="y")
    with pytest.raises(ValidationError, match="refit_every: expected an integer >= 1"):
        numpyro_ts(model, num_actions=K, example_context=jnp.zeros(D), history_size=5, refit_every=0)
    with pytest.raises(ValidationError, match="example_context: per_arm_context needs a leading axis of 3 arms"):
        numpyro_ts(model, num_actions=K, example_context=jnp.zeros(D), history_size=5, per_arm_context=True)
