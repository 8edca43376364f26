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
