"""The synthetic linear bandit against its analytic expectations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from structbandits.envs import linear_contextual_bandit
from structbandits.errors import ValidationError


def test_ground_truth_is_a_prior_draw_of_the_program():
    env = linear_contextual_bandit(4, 3, prior_scale=2.0)
    theta = np.asarray(jax.jit(jax.vmap(env.init))(jax.random.split(jax.random.PRNGKey(0), 5000)).theta)
    assert theta.shape == (5000, 4, 3)
    flat = theta.reshape(5000, -1)
    assert np.all(np.abs(flat.mean(0)) < 4 * 2.0 / np.sqrt(5000))
    np.testing.assert_allclose(flat.std(0), 2.0, rtol=0.05)
    assert np.abs(np.corrcoef(flat.T)[np.triu_indices(12, 1)]).max() < 0.08


def test_contexts_rewards_and_means():
    env = linear_contextual_bandit(3, 2, noise_scale=0.5)
    state = env.init(jax.random.PRNGKey(1))
    keys = jax.random.split(jax.random.PRNGKey(2), 20000)
    contexts = np.asarray(jax.vmap(env.context, (None, 0))(state, keys))
    assert contexts.min() >= -1 and contexts.max() <= 1
    np.testing.assert_allclose(contexts.var(0), 1 / 3, rtol=0.05)  # Uniform[-1, 1]
    x = jnp.array([0.3, -0.7])
    np.testing.assert_allclose(env.mean_rewards(state, x), state.theta @ x)
    rewards = np.asarray(jax.vmap(env.reward, (None, 0, None, None))(state, keys, x, jnp.asarray(2)))
    assert abs(rewards.mean() - float(state.theta[2] @ x)) < 4 * 0.5 / np.sqrt(20000)
    np.testing.assert_allclose(rewards.std(), 0.5, rtol=0.03)


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((1, 2), {}, "num_actions: expected an integer >= 2, got 1"),
        ((3, 0), {}, "num_features: expected an integer >= 1, got 0"),
        ((3, 2), {"noise_scale": -0.1}, "noise_scale: expected values >= 0"),
        ((3, 2), {"prior_scale": float("nan")}, "prior_scale: expected finite"),
    ],
)
def test_bad_arguments(args, kwargs, message):
    with pytest.raises(ValidationError, match=message):
        linear_contextual_bandit(*args, **kwargs)


def test_mixed_effect_env_draws_from_the_program():
    from structbandits.envs import mixed_effect_bandit

    env = mixed_effect_bandit(6, 2, 3, effect_scale=2.0, action_scale=0.5, context_pool=7, structure_seed=4)
    params = env.model.params
    assert env.model.model == "mixed_effect_linear" and env.context_shape == (6, 3)
    assert params["mixing"].shape == (6, 2) and np.all(np.abs(params["mixing"]) <= 1)
    np.testing.assert_array_equal(params["mixing"], mixed_effect_bandit(6, 2, 3, structure_seed=4).model.params["mixing"])
    states = jax.jit(jax.vmap(env.init))(jax.random.split(jax.random.PRNGKey(0), 4000))
    psi = np.asarray(states.psi).reshape(-1, 2, 3)
    np.testing.assert_allclose(psi.std(0), 2.0, rtol=0.05)
    residual = np.asarray(states.theta) - np.einsum("kl,sld->skd", params["mixing"], psi)
    np.testing.assert_allclose(residual.std(0), 0.5, rtol=0.06)
    state = jax.tree.map(lambda leaf: leaf[0], states)
    context = np.asarray(env.context(state, jax.random.PRNGKey(1)))
    pool = np.asarray(state.context_pool)
    assert context.shape == (6, 3) and all(any(np.allclose(row, p) for p in pool) for row in context)
    np.testing.assert_allclose(env.mean_rewards(state, context), np.sum(np.asarray(state.theta) * context, -1))


def test_mixed_effect_env_rejects_bad_arguments():
    from structbandits.envs import mixed_effect_bandit

    with pytest.raises(ValidationError, match="mixing_high: expected a value > mixing_low = 1.0, got 0.5"):
        mixed_effect_bandit(4, 2, 2, mixing_low=1.0, mixing_high=0.5)
    with pytest.raises(ValidationError, match="context_pool: expected an integer >= 1, got 0"):
        mixed_effect_bandit(4, 2, 2, context_pool=0)


def test_logistic_mixed_effect_env_pays_bernoulli_with_sigmoid_means():
    from structbandits.envs import mixed_effect_bandit

    env = mixed_effect_bandit(5, 2, 2, rewards="logistic", mixing_high=2.0, structure_seed=1)
    assert env.model.model == "mixed_effect_logistic" and "noise_scale" not in env.model.params
    assert np.all(env.model.params["mixing"] >= -1) and np.all(env.model.params["mixing"] <= 2)
    state = env.init(jax.random.PRNGKey(0))
    context = env.context(state, jax.random.PRNGKey(1))
    means = np.asarray(env.mean_rewards(state, context))
    np.testing.assert_allclose(means, 1 / (1 + np.exp(-np.sum(np.asarray(state.theta) * context, -1))))
    draws = jax.vmap(lambda k: jax.vmap(lambda a: env.reward(state, k, context, a))(jnp.arange(5)))(
        jax.random.split(jax.random.PRNGKey(2), 20_000))
    assert set(np.unique(draws)) <= {0.0, 1.0}
    np.testing.assert_allclose(np.asarray(draws).mean(0), means, atol=4 * 0.5 / np.sqrt(20_000))
    with pytest.raises(ValidationError, match="rewards: expected 'linear' or 'logistic', got 'poisson'"):
        mixed_effect_bandit(4, 2, 2, rewards="poisson")
    with pytest.raises(ValidationError, match="noise_scale: logistic rewards have no noise scale"):
        mixed_effect_bandit(4, 2, 2, rewards="logistic", noise_scale=0.5)
