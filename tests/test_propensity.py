"""The shared Monte-Carlo propensity helper against exact selection probabilities.

Oracles: for two Gaussian arms P(θ0 > θ1) = Φ((μ0 − μ1) / sqrt(σ0² + σ1²)) (normal CDF, scipy); the
key discipline of a Thompson decision re-derived with plain ``jax.random`` calls; for ``lin_ts`` and
the generic Laplace sampler at their Gaussian prior the same normal CDF of xᵀ(m0 − m1).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from structbandits.agents import lin_ts, monte_carlo_propensity, numpyro_ts, thompson_choice
from structbandits.agents.propensity import keyed_draws
from structbandits.models import linear_bandit

MU = np.array([0.4, 0.1])
SIGMA = np.array([1.0, 0.5])
M = 20_000


def _gaussian_arms(key, shape):
    return jnp.asarray(MU) + jnp.asarray(SIGMA) * jax.random.normal(key, shape + (2,))


def _tolerance(p, m):
    return 4 * np.sqrt(p * (1 - p) / m)


def test_monte_carlo_propensity_of_two_gaussian_arms_is_the_normal_cdf():
    exact = stats.norm.cdf((MU[0] - MU[1]) / np.hypot(*SIGMA))  # P(arm 0 is the argmax) ≈ 0.61
    key = jax.random.PRNGKey(3)
    estimate = monte_carlo_propensity(_gaussian_arms, key, M, jnp.asarray(0))
    first = float(estimate)
    second = float(monte_carlo_propensity(_gaussian_arms, key, M, jnp.asarray(1)))
    assert abs(first - exact) < _tolerance(exact, M)
    assert first + second == 1.0  # the same draws, counted for each arm: no ties with continuous scores
    assert estimate.dtype == jnp.float64  # the default float after configure(), not jnp.mean's float32 for booleans


def test_thompson_choice_acts_on_the_first_half_of_the_key_and_counts_on_the_second():
    key = jax.random.PRNGKey(7)
    act_key, propensity_key = jax.random.split(key)
    expected_action = int(np.argmax(MU + SIGMA * np.asarray(jax.random.normal(act_key, (2,)))))
    draws = MU + SIGMA * np.asarray(jax.random.normal(propensity_key, (500, 2)))
    expected = np.mean(np.argmax(draws, axis=1) == expected_action)
    action, info = jax.jit(lambda k: thompson_choice(_gaussian_arms, k, 500, jnp.float64))(key)
    assert int(action) == expected_action
    assert float(info.propensity) == expected and info.propensity.dtype == jnp.float64
    action_only, none = thompson_choice(_gaussian_arms, key, 0, jnp.float32)
    assert int(action_only) == expected_action and np.isnan(none.propensity) and none.propensity.dtype == jnp.float32


def test_keyed_draws_uses_one_split_key_per_draw():
    def draw_one(k):
        return jnp.asarray(MU) + jnp.asarray(SIGMA) * jax.random.normal(k, (2,))

    key = jax.random.PRNGKey(11)
    expected = np.stack([np.asarray(draw_one(k)) for k in jax.random.split(key, 6)])
    np.testing.assert_array_equal(keyed_draws(draw_one)(key, (6,)), expected)
    np.testing.assert_array_equal(keyed_draws(draw_one)(key, (2, 3)), expected.reshape(2, 3, 2))
    np.testing.assert_array_equal(keyed_draws(draw_one)(key, ()), draw_one(key))


PRIOR_MEAN = np.array([[0.3, 0.0], [0.0, 0.0]])
CONTEXT = np.array([1.0, 0.5])


def _lin_ts(m):
    return lin_ts(PRIOR_MEAN, np.eye(2), 1.0, propensity_draws=m)


def _laplace_ts(m):
    model = functools.partial(linear_bandit, jnp.asarray(PRIOR_MEAN), jnp.broadcast_to(jnp.eye(2), (2, 2, 2)), 1.0)
    return numpyro_ts(model, num_actions=2, example_context=jnp.zeros(2), history_size=2, laplace_steps=30,
                      propensity_draws=m)


@pytest.mark.parametrize("make", [_lin_ts, _laplace_ts], ids=["lin_ts", "numpyro_ts"])
def test_agent_propensities_at_a_gaussian_prior_are_the_normal_cdf(make):
    m = 4000
    policy = make(m)
    p0 = stats.norm.cdf(CONTEXT @ (PRIOR_MEAN[0] - PRIOR_MEAN[1]) / np.sqrt(2 * CONTEXT @ CONTEXT))  # ≈ 0.58
    state = policy.init(jax.random.PRNGKey(0))
    act = jax.jit(policy.act)
    for seed in range(3):
        action, info = act(state, jax.random.PRNGKey(seed), jnp.asarray(CONTEXT))
        exact = p0 if int(action) == 0 else 1 - p0
        assert abs(float(info.propensity) - exact) < _tolerance(exact, m), (int(action), float(info.propensity), exact)
