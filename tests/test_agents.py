import jax
import jax.numpy as jnp
import numpy as np
import pytest

from structbandits.agents import lin_ts, lin_ucb, uniform_random
from structbandits.errors import ValidationError
from structbandits.inference.conjugate import gaussian_mean


def test_lints_update_touches_only_the_pulled_arm():
    policy = lin_ts(jnp.zeros(2), jnp.eye(2), 0.5, num_actions=3)
    state = policy.init(jax.random.PRNGKey(0))
    new = jax.jit(policy.update)(state, jnp.array([1.0, -1.0]), jnp.asarray(1), jnp.asarray(2.0))
    changed = np.any(np.asarray(new.posterior.info != state.posterior.info), axis=1)
    np.testing.assert_array_equal(changed, [False, True, False])
    np.testing.assert_allclose(new.posterior.info[1], np.array([1.0, -1.0]) * 2.0 / 0.25)


def test_lints_concentrates_on_the_best_arm():
    theta = jnp.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    policy = lin_ts(jnp.zeros(2), jnp.eye(2), 0.1, num_actions=3, propensity_draws=200)
    state = policy.init(jax.random.PRNGKey(0))
    update = jax.jit(policy.update)
    rng = np.random.default_rng(0)
    for _ in range(30):
        x = jnp.asarray(rng.uniform(-1, 1, 2))
        for arm in range(3):  # every arm observed: the posterior means approach theta
            state = update(state, x, jnp.asarray(arm), theta[arm] @ x + 0.1 * rng.normal())
    np.testing.assert_allclose(jax.vmap(gaussian_mean)(state.posterior), theta, atol=0.1)
    action, info = jax.jit(policy.act)(state, jax.random.PRNGKey(1), jnp.array([1.0, 0.2]))
    assert int(action) == 0
    assert 0.9 <= float(info.propensity) <= 1.0


def test_lints_propensity_matches_selection_frequency():
    policy = lin_ts(jnp.zeros(2), jnp.eye(2), 1.0, num_actions=3, propensity_draws=500)
    state = policy.init(jax.random.PRNGKey(0))
    act = jax.jit(jax.vmap(policy.act, (None, 0, None)))
    actions, info = act(state, jax.random.split(jax.random.PRNGKey(1), 3000), jnp.array([0.5, 0.5]))
    frequency = np.mean(np.asarray(actions)[:, None] == np.arange(3), axis=0)
    reported = np.array([np.asarray(info.propensity)[np.asarray(actions) == a].mean() for a in range(3)])
    np.testing.assert_allclose(reported, frequency, atol=0.04)  # about 3.5 standard errors


def test_lints_without_propensity_draws_reports_nan():
    policy = lin_ts(jnp.zeros(2), jnp.eye(2), 1.0, num_actions=2)
    _, info = policy.act(policy.init(jax.random.PRNGKey(0)), jax.random.PRNGKey(1), jnp.ones(2))
    assert np.isnan(info.propensity)


def test_uniform_random_is_uniform_with_exact_propensity():
    policy = uniform_random(4)
    actions, info = jax.vmap(policy.act, (None, 0, None))(
        policy.init(jax.random.PRNGKey(0)), jax.random.split(jax.random.PRNGKey(0), 8000), jnp.zeros(1))
    counts = np.bincount(np.asarray(actions), minlength=4)
    assert np.all(np.abs(counts / 8000 - 0.25) < 0.02)
    np.testing.assert_allclose(info.propensity, 0.25)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(prior_mean=np.zeros(2), prior_cov=np.eye(3), noise_scale=1.0, num_actions=2), r"prior_cov: expected shape \(..., 2, 2\)"),
        (dict(prior_mean=np.zeros(2), prior_cov=-np.eye(2), noise_scale=1.0, num_actions=2), "prior_cov: expected a positive-definite"),
        (dict(prior_mean=np.zeros(2), prior_cov=np.eye(2), noise_scale=0.0, num_actions=2), "noise_scale: expected values > 0"),
        (dict(prior_mean=[np.nan, 0.0], prior_cov=np.eye(2), noise_scale=1.0, num_actions=2), "prior_mean: expected finite"),
        (dict(prior_mean=np.zeros(2), prior_cov=np.eye(2), noise_scale=1.0), "num_actions: expected the number of arms"),
        (dict(prior_mean=np.zeros((3, 2)), prior_cov=np.eye(2), noise_scale=1.0, num_actions=4), "num_actions: .* got \\[3, 4\\]"),
        (dict(prior_mean=np.zeros(2), prior_cov=np.eye(2), noise_scale=1.0, num_actions=2, propensity_draws=-1), "propensity_draws"),
    ],
)
def test_lints_rejects_bad_hyperparameters(kwargs, message):
    with pytest.raises(ValidationError, match=message):
        lin_ts(**kwargs)


def test_uniform_random_rejects_bad_arm_count():
    with pytest.raises(ValidationError, match="num_actions: expected an integer >= 1, got 0"):
        uniform_random(0)


def test_linucb_scores_are_the_oful_bound():
    rng = np.random.default_rng(0)
    prior_cov = np.stack([np.eye(2) * s for s in (1.0, 2.0, 0.5)])
    policy = lin_ucb(np.zeros((3, 2)), prior_cov, 0.5, delta=0.1)
    state = policy.init(jax.random.PRNGKey(0))
    xs, arms, ys = rng.uniform(-1, 1, (20, 2)), rng.integers(0, 2, 20), rng.normal(size=20)
    for x, a, y in zip(xs, arms, ys):
        state = policy.update(state, jnp.asarray(x), jnp.asarray(a), jnp.asarray(y))
    context = rng.uniform(-1, 1, (3, 2))
    scores = []
    for arm in range(3):  # the textbook OFUL score in numpy, with explicit inverses
        prior_precision = np.linalg.inv(prior_cov[arm])
        x, y = xs[arms == arm], ys[arms == arm]
        precision = prior_precision + x.T @ x / 0.25
        mean = np.linalg.solve(precision, x.T @ y / 0.25)
        beta = np.sqrt(2 * np.log(10) + np.linalg.slogdet(precision)[1] - np.linalg.slogdet(prior_precision)[1]) + np.sqrt(2)
        scores.append(context[arm] @ mean + beta * np.sqrt(context[arm] @ np.linalg.solve(precision, context[arm])))
    action, info = policy.act(state, jax.random.PRNGKey(1), jnp.asarray(context))
    assert int(action) == int(np.argmax(scores)) and np.isnan(info.propensity)


def test_linucb_breaks_ties_at_random_and_validates():
    policy = lin_ucb(jnp.zeros(2), jnp.eye(2), 1.0, num_actions=4)
    state = policy.init(jax.random.PRNGKey(0))
    picks = {int(policy.act(state, jax.random.PRNGKey(i), jnp.ones(2))[0]) for i in range(40)}
    assert picks == {0, 1, 2, 3}
    with pytest.raises(ValidationError, match=r"delta: expected a probability in \(0, 1\), got 1.5"):
        lin_ucb(jnp.zeros(2), jnp.eye(2), 1.0, num_actions=4, delta=1.5)


def test_linucb_finds_the_best_arm():
    theta = jnp.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    policy = lin_ucb(jnp.zeros(2), jnp.eye(2), 0.1, num_actions=3)
    act, update = jax.jit(policy.act), jax.jit(policy.update)
    state, rng, picks = policy.init(jax.random.PRNGKey(0)), np.random.default_rng(1), []
    for t in range(300):
        x = jnp.asarray(rng.uniform(-1, 1, 2))
        action, _ = act(state, jax.random.PRNGKey(t), x)
        state = update(state, x, action, theta[action] @ x + 0.1 * rng.normal())
        picks.append(int(action) == int(jnp.argmax(theta @ x)))
    assert np.mean(picks[-100:]) > 0.9
