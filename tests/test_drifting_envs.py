"""Drifting environments (``envs.drifting``, ``models.drifting``) against independent oracles.

* smooth drift: the Monte-Carlo variance of θ_t − θ_1 over seeds equals (t − 1) τ² for a random walk and
  τ² (1 − ρ^{2(t−1)}) / (1 − ρ²) for the Ornstein–Uhlenbeck process, ρ = 1 − reversion (closed forms);
  the full NumPyro program's prior path has the same variance;
* change points: the arms change exactly at the declared rounds and nowhere else, to the declared
  parameters; a redraw is N(0, s²) and independent of the old value; the hazard's change rate is h;
* habituation: the expected reward after n pulls in a row and after s rounds of rest is x·θ times
  δ^{(1 − ρ^n)/(1 − ρ) · ρ^s} (a geometric sum written out here), and δ^n when ρ = 1;
* the runner's regret is against each round's optimum: a brute-force argmax in NumPy over the truth
  the test knows (declared parameters; exposures counted here from the recorded actions);
* no drift (τ = 0, decay 1, no change) plays the linear env's rewards bit for bit.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer import Predictive

from structbandits.agents import ActInfo, Policy
from structbandits.envs import changepoint_bandit, habituation_bandit, linear_contextual_bandit, random_walk_bandit
from structbandits.errors import ValidationError
from structbandits.experiments import registry
from structbandits.experiments.runner import batched_simulator
from structbandits.models import changepoint_linear_bandit, random_walk_linear_bandit
from structbandits.seeding import seed_keys

K, D = 3, 2


def _truth_path(env, num_seeds: int, horizon: int, action=None, seed: int = 0):
    """Every seed's truth at rounds 1..horizon, driven by the env's own init/transition (the oracles
    check these draws); ``action(t)`` the arm pulled in round t (default 0)."""

    def one(key):
        init_key, step_key = jax.random.split(key)
        context = jnp.zeros(D)

        def step(state, t):
            pulled = jnp.asarray(0) if action is None else action(t)
            return env.transition(state, jax.random.fold_in(step_key, t), context, pulled), state

        return jax.lax.scan(step, env.init(init_key), jnp.arange(1, horizon + 1))[1]

    return jax.jit(jax.vmap(one))(seed_keys(seed, num_seeds))


# --- smooth drift ------------------------------------------------------------------------------


@pytest.mark.parametrize("reversion", [0.0, 0.2])
def test_smooth_drift_variance_is_the_closed_form(reversion):
    tau, seeds, horizon = 0.3, 2000, 12
    env = random_walk_bandit(K, D, drift_scale=tau, reversion=reversion)
    theta = np.asarray(_truth_path(env, seeds, horizon).theta)  # (S, T, K, d)
    rounds = np.arange(1, horizon + 1)
    rho = 1.0 - reversion
    expected = tau**2 * np.array([sum(rho ** (2 * j) for j in range(t - 1)) for t in rounds])  # Σ_{j<t−1} ρ^{2j}
    # θ_t − ρ^{t−1} θ_1 is the sum of the shocks; its variance per coordinate over S·K·d draws
    residual = theta - rho ** (rounds - 1)[None, :, None, None] * theta[:, :1]
    variance = residual.transpose(1, 0, 2, 3).reshape(horizon, -1).var(axis=1)
    n = seeds * K * D
    assert variance[0] == 0.0
    np.testing.assert_allclose(variance[1:], expected[1:], rtol=5 * np.sqrt(2 / n))


def test_random_walk_program_prior_path_has_the_same_variance():
    tau, s, n = 0.5, 1.0, 6
    draws = Predictive(random_walk_linear_bandit, num_samples=3000)(
        jax.random.PRNGKey(1), jnp.zeros((K, D)), s**2 * jnp.broadcast_to(jnp.eye(D), (K, D, D)), 1.0, tau,
        num_rounds=n)["theta_path"]
    variance = np.asarray(draws).transpose(1, 0, 2, 3).reshape(n, -1).var(axis=1)
    expected = s**2 + tau**2 * np.arange(n)
    np.testing.assert_allclose(variance, expected, rtol=5 * np.sqrt(2 / (3000 * K * D)))


# --- change points -----------------------------------------------------------------------------


def test_changes_happen_exactly_at_the_declared_rounds_to_the_declared_parameters():
    declared = np.arange(2 * K * D, dtype=float).reshape(2, K, D) - 3.0  # two declared settings
    env = changepoint_bandit(K, D, change_rounds=[4, 7], change_means=declared, prior_scale=1e-9)
    theta = np.asarray(_truth_path(env, 2, 9).theta)  # (2, 9, K, d), rounds 1..9
    np.testing.assert_allclose(theta[:, :3], 0.0, atol=1e-7)                      # rounds 1-3: the prior, 0
    np.testing.assert_allclose(theta[:, 3:6], np.broadcast_to(declared[0], (2, 3, K, D)), atol=1e-7)  # rounds 4-6
    np.testing.assert_allclose(theta[:, 6:], np.broadcast_to(declared[1], (2, 3, K, D)), atol=1e-7)   # rounds 7-9


def test_a_declared_change_redraws_from_the_prior_independently_and_only_there():
    s, seeds = 2.0, 2000
    env = changepoint_bandit(K, D, change_rounds=[3], prior_scale=s)
    state = _truth_path(env, seeds, 5)
    theta, rounds = np.asarray(state.theta), np.asarray(state.round)
    np.testing.assert_array_equal(rounds, np.broadcast_to(np.arange(1, 6), (seeds, 5)))
    changed = np.any(theta[:, 1:] != theta[:, :-1], axis=(2, 3))  # (S, 4): did round t+1 differ from round t
    assert changed[:, 1].all() and not changed[:, [0, 2, 3]].any()
    old, new = theta[:, 1].reshape(-1), theta[:, 2].reshape(-1)
    n = old.size
    assert abs(new.mean()) < 5 * s / np.sqrt(n)
    assert abs(new.var() / s**2 - 1) < 5 * np.sqrt(2 / n)
    assert abs(np.corrcoef(old, new)[0, 1]) < 5 / np.sqrt(n)


def test_the_hazard_changes_a_share_h_of_rounds():
    hazard, seeds, horizon = 0.2, 200, 50
    theta = np.asarray(_truth_path(changepoint_bandit(K, D, hazard=hazard), seeds, horizon).theta)
    changed = np.any(theta[:, 1:] != theta[:, :-1], axis=(2, 3))
    if_all_arms = np.all(theta[:, 1:] != theta[:, :-1], axis=(2, 3))
    np.testing.assert_array_equal(changed, if_all_arms)  # a change redraws every arm at once
    n = changed.size
    assert abs(changed.mean() - hazard) < 5 * np.sqrt(hazard * (1 - hazard) / n)


def test_changepoint_program_path_changes_only_at_declared_rounds():
    draws = Predictive(changepoint_linear_bandit, num_samples=50)(
        jax.random.PRNGKey(2), jnp.zeros((K, D)), jnp.broadcast_to(jnp.eye(D), (K, D, D)), 1.0, jnp.array([3, 5]),
        num_rounds=6)["theta_path"]
    changed = np.any(np.asarray(draws)[:, 1:] != np.asarray(draws)[:, :-1], axis=(2, 3))  # rounds 2..6
    np.testing.assert_array_equal(changed, np.broadcast_to([False, True, False, True, False], changed.shape))


# --- habituation -------------------------------------------------------------------------------


@pytest.mark.parametrize(("decay", "retention"), [(0.5, 0.5), (0.7, 1.0)])
def test_habituation_decays_geometrically_and_recovers_with_rest(decay, retention):
    pulls, rest = 4, 5
    env = habituation_bandit(K, D, decay=decay, retention=retention)
    state = _truth_path(env, 1, pulls + rest + 1, action=lambda t: jnp.where(t <= pulls, 0, 1))
    context = jnp.array([0.6, -0.4])
    means = np.asarray(jax.vmap(env.mean_rewards, (0, None))(jax.tree.map(lambda x: x[0], state), context))
    effect = np.asarray(state.theta[0, 0]) @ np.asarray(context)  # x·θ of every arm, unhabituated
    # exposure of arm 0 before round t: 1 + ρ + … + ρ^{k−1} after k pulls, then ×ρ per rested round
    geometric = [sum(retention**j for j in range(k)) for k in range(pulls + 1)]
    exposure0 = geometric + [geometric[-1] * retention**s for s in range(1, rest + 1)]
    np.testing.assert_allclose(means[:, 0], effect[0] * decay ** np.array(exposure0), rtol=1e-12)
    if retention == 1.0:  # no recovery: δ^n after n pulls, for ever
        np.testing.assert_allclose(means[pulls:, 0] / effect[0], decay**pulls, rtol=1e-12)
    exposure1 = [0.0] * (pulls + 1) + [sum(retention**j for j in range(s)) for s in range(1, rest + 1)]
    np.testing.assert_allclose(means[:, 1], effect[1] * decay ** np.array(exposure1), rtol=1e-12)
    np.testing.assert_allclose(means[:, 2], effect[2], rtol=1e-12)  # never pulled


# --- the runner: tracking regret and the stationary special case ---------------------------------


class _Recorder(NamedTuple):
    contexts: jax.Array
    count: jax.Array


def _recording_agent(num_actions: int, horizon: int) -> Policy:
    """Uniformly random arms; the state keeps every round's context, so the test sees what the runner drew."""

    def init(key, params=None):
        return _Recorder(jnp.zeros((horizon, D)), jnp.zeros((), dtype=jnp.int32))

    def act(state, key, context):
        return jax.random.randint(key, (), 0, num_actions), ActInfo(jnp.asarray(1.0 / num_actions))

    def update(state, context, action, reward):
        return _Recorder(state.contexts.at[state.count].set(context), state.count + 1)

    return Policy(init, act, update)


HORIZON, SEEDS = 12, 3


def _run(env):
    states, trajectory = batched_simulator(_recording_agent(K, HORIZON), env, HORIZON)(
        seed_keys(0, SEEDS), return_state=True)
    return np.asarray(states.contexts), jax.tree.map(np.asarray, trajectory)


def _check_regret(means, trajectory, atol=1e-12):
    """means (S, T, K) computed by the test; the runner's records against a brute-force argmax."""
    best = np.array([[max(row) for row in seed] for seed in means])  # plain max over the arms, round by round
    chosen = np.take_along_axis(means, trajectory.action[..., None], axis=-1)[..., 0]
    np.testing.assert_allclose(trajectory.expected_reward, chosen, rtol=0, atol=atol)
    np.testing.assert_allclose(trajectory.expected_regret, best - chosen, rtol=0, atol=atol)


def test_regret_is_against_each_rounds_optimum_after_declared_changes():
    declared = np.random.default_rng(0).normal(size=(2, K, D))
    contexts, trajectory = _run(changepoint_bandit(K, D, change_rounds=[2, 7], change_means=declared,
                                                   prior_scale=1e-9))
    theta = np.stack([np.zeros((K, D))] + [declared[0]] * 5 + [declared[1]] * 6)  # rounds 1, 2-6, 7-12
    means = np.einsum("tkd,std->stk", theta, contexts)
    assert np.ptp(np.argmax(means, axis=-1)) > 0  # the optimum moves
    _check_regret(means, trajectory, atol=1e-7)  # the redraws' spread around the declared values is 1e-9


def test_habituation_regret_follows_the_exposures_the_actions_made():
    decay, retention = 0.6, 0.7
    env = habituation_bandit(K, D, decay=decay, retention=retention)
    contexts, trajectory = _run(env)
    # θ: the runner's convention, simulation key → (env, agent) → env → (truth, rounds)
    theta = np.stack([np.asarray(env.init(jax.random.split(jax.random.split(key)[0])[0]).theta)
                      for key in seed_keys(0, SEEDS)])
    means = np.zeros((SEEDS, HORIZON, K))
    for s in range(SEEDS):
        exposure = np.zeros(K)
        for t in range(HORIZON):
            means[s, t] = theta[s] @ contexts[s, t] * decay**exposure
            exposure = retention * exposure
            exposure[trajectory.action[s, t]] += 1.0
    assert np.any(means != np.einsum("skd,std->stk", theta, contexts))  # habituation did act
    _check_regret(means, trajectory)


def test_no_drift_plays_the_linear_env_bit_for_bit():
    _, linear = _run(linear_contextual_bandit(K, D))
    assert np.any(linear.expected_regret > 0)
    for env in (random_walk_bandit(K, D, drift_scale=0.0), habituation_bandit(K, D, decay=1.0)):
        _, drifting = _run(env)
        for field in ("action", "reward", "expected_reward", "expected_regret", "realized_regret"):
            np.testing.assert_array_equal(getattr(drifting, field), getattr(linear, field))
    # change points share the random walk's context and reward functions: the same θ_1 and no change suffice
    key = jax.random.PRNGKey(3)
    np.testing.assert_array_equal(changepoint_bandit(K, D).init(key).theta, linear_contextual_bandit(K, D).init(key).theta)


# --- boundaries ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("build", "message"), [
    (lambda: changepoint_bandit(K, D, change_rounds=[5, 3]), "change_rounds: expected strictly increasing"),
    (lambda: changepoint_bandit(K, D, change_rounds=[1]), "change_rounds[0]: expected an integer >= 2"),
    (lambda: changepoint_bandit(K, D, change_rounds=4), "change_rounds: expected a list of rounds"),
    (lambda: changepoint_bandit(K, D, hazard=1.5), "hazard: expected a number in [0, 1]"),
    (lambda: changepoint_bandit(K, D, change_rounds=[3], change_means=np.zeros((2, K, D))),
     "change_means: expected shape (1, 3, 2)"),
    (lambda: random_walk_bandit(K, D, drift_scale=-0.1), "drift_scale: expected values >= 0"),
    (lambda: random_walk_bandit(K, D, reversion=1.5), "reversion: expected a number in [0, 1]"),
    (lambda: habituation_bandit(K, D, decay=0.0), "decay: expected a number in (0, 1]"),
    (lambda: habituation_bandit(K, D, retention=-0.5), "retention: expected a number in [0, 1]"),
    (lambda: habituation_bandit(1, D), "num_actions: expected an integer >= 2"),
    (lambda: registry.ENVIRONMENTS["drift-changepoint"](change_rounds=["a"]), "change_rounds[0]: expected an integer"),
])
def test_bad_settings_name_the_argument(build, message):
    with pytest.raises(ValidationError, match=None) as err:
        build()
    assert str(err.value).startswith(message), str(err.value)
