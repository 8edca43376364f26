"""``agents.clipping.clipped``: logged propensities are the probabilities the actions were drawn with.

Oracles, all independent of the package's arithmetic:
- frequencies: with a fixed action distribution the share of each action over 20,000 decisions is
  the logged propensity (binomial sd); with Monte-Carlo distributions that change from decision to
  decision, the Horvitz–Thompson identity E[1{A = a} / p(A)] = 1, which holds for every action only
  if p(A) is the probability A was drawn with;
- the clipping arithmetic by hand (fractions) and by a NumPy bisection for the smallest feasible ε;
- the two-arm LinTS probability against 200,000 NumPy draws from the posterior's mean and covariance
  (computed here from the information form) and SciPy's normal tail;
- hyperparameters as data: ``tests/params_as_data.py``;
- the runner and ``OnlineAgent`` with a clipped policy: every logged propensity in [p_min, p_max].
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from params_as_data import check_params_are_data
from scipy import stats

from structbandits import ValidationError
from structbandits.agents import clip_probabilities, clipped, lin_ts, lin_ts_two_arm_probabilities
from structbandits.envs import linear_contextual_bandit
from structbandits.experiments import run_experiment
from structbandits.study import OnlineAgent

K, D = 3, 2
# A confident three-arm posterior: at X the scores are ≈ N(1, .05), N(.6, .05), N(-1, .05), so the
# Thompson probabilities are ≈ (0.9, 0.1, 0): clipping to [0.05, 0.8] binds at both bounds.
CONFIDENT_MEAN = np.array([[1.0, 0.0], [0.6, 0.0], [-1.0, 0.0]])
CONFIDENT_COV = 0.05 * np.eye(D)
X = jnp.array([1.0, 0.0])
P_MIN, P_MAX = 0.05, 0.8


def _confident_inner(**kwargs):
    return lin_ts(CONFIDENT_MEAN, CONFIDENT_COV, 0.5, **kwargs)


def _fixed(pi):
    pi = jnp.asarray(pi, dtype=jnp.float64)
    return lambda state, context: pi


def _decisions(policy, n, seed=0, context=X):
    """(actions (n,), logged propensities (n,)) of n decisions from one state, one key each."""
    state = policy.init(jax.random.PRNGKey(0))
    keys = jax.random.split(jax.random.PRNGKey(seed), n)
    actions, info = jax.jit(jax.vmap(lambda k: policy.act(state, k, context)))(keys)
    return np.asarray(actions), np.asarray(info.propensity)


def _smallest_mixture(pi, p_min, p_max):
    """NumPy bisection for the least ε in [0, 1] with (1 − ε)π + ε/K inside [p_min, p_max]."""
    pi = np.asarray(pi, dtype=float)
    uniform = 1.0 / pi.size

    def feasible(eps):
        q = (1 - eps) * pi + eps * uniform
        return np.all(q >= p_min - 1e-13) and np.all(q <= p_max + 1e-13)

    if feasible(0.0):
        return pi
    low, high = 0.0, 1.0
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (low, mid) if feasible(mid) else (mid, high)
    return (1 - high) * pi + high * uniform


# ----------------------------------------------------------------------------- (a) frequencies


def test_actions_are_drawn_with_the_logged_probability():
    # A fixed π = (0.9, 0.1, 0) through the probabilities hook: p_max needs ε = 0.1/(0.9 − 1/3) = 0.176,
    # p_min needs 0.05/(1/3) = 0.15, so q = (0.8, 0.141, 0.059), the same for every decision.
    policy = clipped(_confident_inner(), num_actions=K, p_min=P_MIN, p_max=P_MAX,
                     probabilities=_fixed([0.9, 0.1, 0.0]))
    n = 20_000
    actions, logged = _decisions(policy, n)
    eps = max((0.9 - P_MAX) / (0.9 - 1 / 3), (P_MIN - 0.0) / (1 / 3 - 0.0))
    q = (1 - eps) * np.array([0.9, 0.1, 0.0]) + eps / 3
    for a in range(K):
        chosen = actions == a
        assert chosen.any()
        np.testing.assert_allclose(logged[chosen], q[a], rtol=0, atol=1e-12)
        assert abs(chosen.mean() - q[a]) < 4 * np.sqrt(q[a] * (1 - q[a]) / n), (a, chosen.mean(), q[a])
    assert logged.min() >= P_MIN and logged.max() <= P_MAX


def test_monte_carlo_distributions_log_the_probability_the_action_was_drawn_with():
    # π̂ from 40 inner draws changes from decision to decision; whatever it is, the logged q(A) must be
    # the probability A was drawn with: then the mean of 1{A = a}/q(A) is 1 for every action a.
    policy = clipped(_confident_inner(), num_actions=K, p_min=P_MIN, p_max=P_MAX, probability_draws=40)
    n = 20_000
    actions, logged = _decisions(policy, n, seed=1)
    assert logged.min() >= P_MIN and logged.max() <= P_MAX
    assert np.all((logged > 0) & (logged < 1))
    for a in range(K):
        weights = (actions == a) / logged
        sd = weights.std() / np.sqrt(n)
        assert abs(weights.mean() - 1.0) < 4 * sd + 1e-12, (a, weights.mean(), sd)
    # the bounds bind: the dominant arm is held at p_max, the hopeless one raised to p_min
    assert np.any(np.isclose(logged[actions == 0], P_MAX)) and np.any(np.isclose(logged[actions == 2], P_MIN))


def test_without_bounds_the_action_is_drawn_from_the_estimate_itself():
    policy = clipped(_confident_inner(), num_actions=K, probabilities=_fixed([0.7, 0.3, 0.0]))
    actions, logged = _decisions(policy, 2000, seed=2)
    assert not np.any(actions == 2)  # π̂ = 0: never drawn
    np.testing.assert_allclose(logged, np.where(actions == 0, 0.7, 0.3), atol=1e-12)


# ----------------------------------------------------------------------------- (b) the arithmetic


@pytest.mark.parametrize(("pi", "p_min", "p_max", "expected"), [
    ((1.0, 0.0, 0.0), 0.1, 1.0, (0.8, 0.1, 0.1)),                    # ε = 0.1/(1/3) = 0.3
    ((0.95, 0.05), 0.0, 0.9, (0.9, 0.1)),                            # p_max: ε = 0.05/0.45 = 1/9
    ((0.6, 0.3, 0.1, 0.0), 0.05, 0.5, (0.5, 2 / 7, 1 / 7, 1 / 14)),  # both bind; p_max needs more, ε = 2/7
    ((0.5, 0.3, 0.2), 0.1, 0.9, (0.5, 0.3, 0.2)),                    # inside already: ε = 0
    ((0.0, 1.0), 0.5, 0.5, (0.5, 0.5)),                              # p_min = p_max = 1/K: uniform
])
def test_the_clipped_distribution_is_the_smallest_uniform_mixture_inside_the_bounds(pi, p_min, p_max, expected):
    num = len(pi)
    np.testing.assert_allclose(_smallest_mixture(pi, p_min, p_max), expected, atol=1e-9)  # the oracle agrees
    np.testing.assert_allclose(np.asarray(clip_probabilities(jnp.asarray(pi), p_min, p_max)), expected, atol=1e-12)
    # the same q through the policy: every action, drawn over 300 decisions, logs q[action]
    policy = clipped(_confident_inner() if num == K else lin_ts(np.zeros((num, D)), np.eye(D), 0.5),
                     num_actions=num, p_min=p_min, p_max=p_max, probabilities=_fixed(pi))
    actions, logged = _decisions(policy, 300)
    for a in range(num):
        if expected[a] > 0.02:
            assert np.any(actions == a)
        np.testing.assert_allclose(logged[actions == a], expected[a], atol=1e-12)


def test_random_distributions_match_a_bisection_for_the_smallest_mixture():
    rng = np.random.default_rng(5)
    for num in (2, 3, 5):
        pis = rng.dirichlet(np.full(num, 0.3), size=40)
        p_min, p_max = 0.3 / num, min(1.0, 2.5 / num)
        got = np.asarray(jax.jit(jax.vmap(lambda p: clip_probabilities(p, p_min, p_max)))(jnp.asarray(pis)))
        expected = np.stack([_smallest_mixture(pi, p_min, p_max) for pi in pis])
        np.testing.assert_allclose(got, expected, atol=1e-9)
        assert np.all(got >= p_min) and np.all(got <= p_max)
        np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-12)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"p_min": 0.4}, "p_min <= 1/K"),           # 0.4 > 1/3: the uniform distribution would be excluded
    ({"p_max": 0.3}, "p_min <= 1/K <= p_max"),
    ({"p_min": -0.1}, "p_min: expected a probability"),
    ({"p_max": 1.5}, "p_max: expected a probability"),
    ({"p_min": float("nan")}, "p_min: expected finite"),
    ({"num_actions": 1}, "num_actions"),
    ({"probability_draws": 0}, "probability_draws"),
    ({"probabilities": 0.5}, "probabilities: expected None or a function"),
])
def test_invalid_settings_are_rejected(kwargs, match):
    settings = {"num_actions": K, **kwargs}
    with pytest.raises(ValidationError, match=match):
        clipped(_confident_inner(), **settings)


def test_other_invalid_uses_are_rejected():
    with pytest.raises(ValidationError, match="policy: expected a Policy"):
        clipped(lambda key: None, num_actions=2)
    wrong_length = clipped(_confident_inner(), num_actions=K, probabilities=_fixed([0.5, 0.5]))
    with pytest.raises(ValidationError, match=r"probabilities: expected a function returning shape \(3,\)"):
        wrong_length.act(wrong_length.init(jax.random.PRNGKey(0)), jax.random.PRNGKey(1), X)
    with pytest.raises(ValidationError, match='"exact" is available for two arms only'):
        lin_ts(np.zeros(D), np.eye(D), 0.5, num_actions=3, propensity_draws="exact")
    with pytest.raises(ValidationError, match='propensity_draws: expected an integer >= 0 or "exact"'):
        lin_ts(np.zeros(D), np.eye(D), 0.5, num_actions=2, propensity_draws="closed")
    three = _confident_inner()
    with pytest.raises(ValidationError, match="two arms"):
        lin_ts_two_arm_probabilities(three.init(jax.random.PRNGKey(0)), X)


# ----------------------------------------------------------------------------- (c) two Gaussian arms


def _two_arm_state():
    """A two-arm LinTS posterior after a few observations (arms with different covariances)."""
    policy = lin_ts(np.array([[0.2, -0.1], [0.0, 0.3]]), np.eye(D), 0.7, propensity_draws="exact")
    state = policy.init(jax.random.PRNGKey(0))
    rng = np.random.default_rng(3)
    for t in range(6):
        state = policy.update(state, jnp.asarray(rng.normal(size=D)), jnp.asarray(t % 3 == 0, dtype=jnp.int64),
                              jnp.asarray(rng.normal()))
    return policy, state


def _numpy_moments(state):
    chol = np.asarray(state.posterior.precision_chol)
    info = np.asarray(state.posterior.info)
    covs = np.stack([np.linalg.inv(c @ c.T) for c in chol])
    means = np.einsum("kij,kj->ki", covs, info)
    return means, covs


@pytest.mark.parametrize("context", [np.array([0.8, -1.1]), np.array([[0.8, -1.1], [-0.4, 0.5]])])
def test_two_arm_probability_matches_posterior_draws(context):
    policy, state = _two_arm_state()
    means, covs = _numpy_moments(state)
    rng = np.random.default_rng(11)
    n = 200_000
    theta = np.stack([rng.multivariate_normal(means[a], covs[a], size=n) for a in range(2)], axis=1)  # (n, 2, d)
    features = np.broadcast_to(context, (2, D))
    p0_mc = np.mean(np.einsum("nkd,kd->nk", theta, features).argmax(axis=1) == 0)
    exact = np.asarray(lin_ts_two_arm_probabilities(state, jnp.asarray(context)))
    assert 0.1 < exact[0] < 0.9  # a non-trivial case
    assert abs(exact[0] - p0_mc) < 4 * np.sqrt(p0_mc * (1 - p0_mc) / n)
    assert abs(exact.sum() - 1.0) < 1e-12
    # the agent's own Thompson draws (20,000 decisions) pick arm 0 as often; "exact" logs exact[action]
    actions, logged = _decisions_from(policy, state, jnp.asarray(context), 20_000)
    assert abs(np.mean(actions == 0) - exact[0]) < 4 * np.sqrt(exact[0] * (1 - exact[0]) / 20_000)
    np.testing.assert_allclose(logged, exact[actions], atol=1e-12)


def _decisions_from(policy, state, context, n):
    keys = jax.random.split(jax.random.PRNGKey(4), n)
    actions, info = jax.jit(jax.vmap(lambda k: policy.act(state, k, context)))(keys)
    return np.asarray(actions), np.asarray(info.propensity)


def test_two_arm_probability_is_precise_in_the_tails_and_exact_mode_keeps_the_actions():
    mean = np.array([[2.0, 0.0], [-2.0, 0.0]])
    confident = lin_ts(mean, 0.2 * np.eye(D), 0.5, propensity_draws="exact")
    state = confident.init(jax.random.PRNGKey(0))
    x = jnp.array([1.5, 0.3])
    z = (1.5 * 2.0 + 1.5 * 2.0) / np.sqrt(2 * 0.2 * (1.5**2 + 0.3**2))  # gap mean / gap sd, by hand
    exact = np.asarray(lin_ts_two_arm_probabilities(state, x))
    np.testing.assert_allclose(exact[1], stats.norm.sf(z), rtol=1e-9)  # ≈ 1e-10: no 1 − Φ cancellation
    assert exact[1] > 0
    # "exact" changes only the reported number: the actions are those of the Monte-Carlo agent
    plain = lin_ts(mean, 0.2 * np.eye(D), 0.5, propensity_draws=16)
    keys = jax.random.split(jax.random.PRNGKey(9), 50)
    a_exact = jax.jit(jax.vmap(lambda k: confident.act(state, k, x)[0]))(keys)
    a_plain = jax.jit(jax.vmap(lambda k: plain.act(state, k, x)[0]))(keys)
    np.testing.assert_array_equal(np.asarray(a_exact), np.asarray(a_plain))


def test_clipped_with_the_exact_two_arm_probabilities():
    policy, state = _two_arm_state()
    context = jnp.array([0.8, -1.1])
    exact = np.asarray(lin_ts_two_arm_probabilities(state, context))
    # bounds that bind: p_max just below the larger probability
    p_max = float(exact.max()) - 0.05
    wrapped = clipped(policy, num_actions=2, p_min=1 - p_max, p_max=p_max, probabilities=lin_ts_two_arm_probabilities)
    clipped_state = wrapped.init(jax.random.PRNGKey(0))._replace(inner=state)
    actions, logged = _decisions_from(wrapped, clipped_state, context, 20_000)
    q = np.where(exact == exact.max(), p_max, 1 - p_max)
    np.testing.assert_allclose(logged, q[actions], atol=1e-12)
    assert abs(np.mean(actions == 0) - q[0]) < 4 * np.sqrt(q[0] * (1 - q[0]) / 20_000)


# ----------------------------------------------------------------------------- (d) params are data


def _context(key):
    return jax.random.normal(key, (D,))


def _reward(key, x, a):
    return x @ jnp.asarray(CONFIDENT_MEAN)[a] + 0.3 * jax.random.normal(key)


@pytest.mark.parametrize(("name", "value_a", "value_b", "run"), [("p_min", 0.05, 0.2, True), ("p_max", 0.6, 0.9, False)])
def test_bounds_are_data(name, value_a, value_b, run):
    # One program for every value of the bounds; for p_min also end to end (one compiled program runs
    # both values, A's functions with B's params reproduce B, the two values play differently).
    def build(value):
        settings = {"p_min": 0.05, "p_max": 0.9, name: value}
        return clipped(_confident_inner(), num_actions=K, probability_draws=40, **settings)

    check_params_are_data(build, value_a, value_b, _context, _reward, rounds=5, run=run)


# ----------------------------------------------------------------------------- (e) runner and OnlineAgent


def test_a_clipped_agent_in_the_runner():
    env = linear_contextual_bandit(K, D, noise_scale=0.5)
    agent = clipped(lin_ts(np.zeros(D), np.eye(D), 0.5, num_actions=K), num_actions=K, p_min=0.1, p_max=0.7,
                    probability_draws=64)
    frame = run_experiment({"clipped": agent}, env, horizon=25, num_seeds=2, progress=False)
    assert len(frame) == 50
    assert frame["propensity"].between(0.1, 0.7).all()
    assert set(frame["action"]) <= set(range(K))


def test_online_agent_logs_bounded_propensities_where_the_unclipped_one_logs_zero_or_one(tmp_path):
    # A confident two-arm posterior; contexts near (1, 0) make arm 0 all but certain.
    mean, cov = np.array([[1.0, 0.0], [-1.0, 0.0]]), 0.01 * np.eye(D)
    contexts = np.random.default_rng(0).normal(size=(12, D)) * 0.2 + np.array([1.0, 0.0])
    rewards = np.random.default_rng(1).normal(size=12)

    def logged(policy, name):
        agent = OnlineAgent(policy, key=0, log_dir=tmp_path / name, name=name)
        values = []
        for x, r in zip(contexts, rewards):
            decision = agent.select(x)
            agent.observe(decision.decision_id, r)
            values.append(decision.propensity)
        return agent, np.asarray(values)

    _, plain = logged(lin_ts(mean, cov, 0.5, propensity_draws=32), "plain")
    assert np.any((plain == 0.0) | (plain == 1.0))  # what causal analysis cannot use
    bounded = clipped(lin_ts(mean, cov, 0.5), num_actions=2, p_min=0.05, p_max=0.95, probability_draws=200)
    agent, values = logged(bounded, "clipped")
    assert np.all((values >= 0.05) & (values <= 0.95))
    # the log holds the same numbers; a snapshot reloads, replays a later decision identically and continues
    np.testing.assert_allclose(agent.decisions()["propensity"].to_numpy(), values)
    path = agent.save(tmp_path / "agent.npz")
    later = agent.select(contexts[0])
    again = OnlineAgent.load(path, bounded, name="clipped")  # replays `later` from the log, checking it
    assert again.num_decisions == agent.num_decisions and again.pending == agent.pending == {later.decision_id: later.action}
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(again.state), jax.tree.leaves(agent.state)))
    # the state delegates: posterior draws are the inner policy's
    draws = bounded.posterior_draws(agent.state, jax.random.PRNGKey(0), 5)
    assert draws["theta"].shape == (5, 2, D)
