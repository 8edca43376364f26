"""posterior_draws of the GAMBITTS agents and standard TS, and their ArviZ conversion.

Oracles: after a run of updates, the draws have the closed-form moments of the agent's state
(Gaussian β: mean and covariance; NIW per (cell, prompt): E[μ] = m, Cov[μ] = Ψ / (κ(ν − d − 1)),
E[Σ] = Ψ / (ν − d − 1); NIG per arm: E[μ] = m, Var[μ] = β / (κ(α − 1)), E[σ²] = β / (α − 1)), and
an ensemble's draws are its members, each exactly once per M draws.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from structbandits.agents.ens_gambitts import ens_fo_gambitts, ens_po_gambitts
from structbandits.agents.gambitts import fo_gambitts, po_gambitts
from structbandits.agents.standard_ts import standard_ts
from structbandits.diagnostics import policy_to_arviz
from structbandits.inference.conjugate import gaussian_covariance, gaussian_mean
from structbandits.inference.niw import niw_covariance_mean, niw_mean_covariance

C, K, S, ROUNDS, DRAWS = 2, 3, 3, 240, 20_000
FEATURES = (0, 2)  # the agents' working embedding: d = 2 of the S treatment columns


class Context(NamedTuple):  # the mediated context protocol: a cell and every prompt's treatment
    cell: jax.Array
    treatments: jax.Array


def _rounds(seed: int = 0):
    rng = np.random.default_rng(seed)
    cells = rng.integers(0, C, ROUNDS)
    actions = rng.integers(0, K, ROUNDS)
    centres = rng.normal(size=(C, K, S))
    treatments = centres[cells] + rng.normal(size=(ROUNDS, K, S)) * 0.7
    delivered = treatments[np.arange(ROUNDS), actions][:, list(FEATURES)]
    rewards = 77.0 + delivered @ np.array([0.5, -1.0]) + rng.normal(size=ROUNDS)
    return (Context(jnp.asarray(cells), jnp.asarray(treatments)), jnp.asarray(actions), jnp.asarray(rewards))


def _run(policy, seed: int = 0):
    state = policy.init(jax.random.PRNGKey(seed))
    return jax.lax.scan(lambda s, r: (policy.update(s, *r), None), state, _rounds(seed))[0]


def _pooled(values):
    """(chain, draw, ...) draws as one sample (chain·draw, ...)."""
    return values.reshape((-1,) + values.shape[2:])


def _assert_mean(draws, mean, var, z=5.0):
    np.testing.assert_allclose(draws.mean(0), mean, atol=z * np.sqrt(np.max(var) / draws.shape[0]))


def test_fo_gambitts_draws_have_the_state_moments_and_named_dims():
    policy = fo_gambitts(K, C, FEATURES, propensity_draws=0)
    state = _run(policy)
    idata = policy_to_arviz(policy, state, num_draws=DRAWS // 4, coords={"style": ["formality", "optimism"]})
    post = idata.posterior  # four chains of DRAWS / 4
    assert dict(post["beta"].sizes) == {"chain": 4, "draw": DRAWS // 4, "reward_feature": 3}
    assert dict(post["mu"].sizes) == {"chain": 4, "draw": DRAWS // 4, "cell": C, "prompt": K, "style": 2}
    assert dict(post["Sigma"].sizes) == {"chain": 4, "draw": DRAWS // 4, "cell": C, "prompt": K, "style": 2, "style2": 2}
    assert list(post["mu"].coords["style"].values) == ["formality", "optimism"]

    beta = _pooled(post["beta"].values)
    beta_cov = np.asarray(gaussian_covariance(state.reward))
    _assert_mean(beta, gaussian_mean(state.reward), np.diag(beta_cov))
    np.testing.assert_allclose(np.cov(beta.T), beta_cov, rtol=0.05, atol=0.02 * np.abs(beta_cov).max())

    mu, sigma = _pooled(post["mu"].values), _pooled(post["Sigma"].values)
    for cell in range(C):
        for prompt in range(K):
            niw = jax.tree.map(lambda leaf: leaf[cell, prompt], state.treatment)
            mean_cov = np.asarray(niw_mean_covariance(niw))
            _assert_mean(mu[:, cell, prompt], niw.mean, np.diag(mean_cov))
            np.testing.assert_allclose(np.cov(mu[:, cell, prompt].T), mean_cov, rtol=0.1, atol=0.05 * np.abs(mean_cov).max())
            expected_sigma = np.asarray(niw_covariance_mean(niw))
            np.testing.assert_allclose(sigma[:, cell, prompt].mean(0), expected_sigma, rtol=0.05,
                                       atol=0.05 * np.abs(expected_sigma).max())
            np.testing.assert_allclose(sigma[:, cell, prompt], np.swapaxes(sigma[:, cell, prompt], -1, -2))


def test_po_gambitts_draws_the_reward_stage_and_matches_fo_on_the_same_data():
    treatment_draws = np.random.default_rng(1).normal(size=(K, C, 5, S))
    po = po_gambitts(treatment_draws, FEATURES, propensity_draws=0)
    fo = fo_gambitts(K, C, FEATURES, propensity_draws=0)
    po_state, fo_state = _run(po), _run(fo)
    np.testing.assert_allclose(gaussian_mean(po_state.reward), gaussian_mean(fo_state.reward))  # same reward stage
    draws = jax.jit(po.posterior_draws, static_argnums=2)(po_state, jax.random.PRNGKey(0), DRAWS)
    assert set(draws) == {"beta"}
    beta_cov = np.asarray(gaussian_covariance(po_state.reward))
    _assert_mean(np.asarray(draws["beta"]), gaussian_mean(po_state.reward), np.diag(beta_cov))


def test_standard_ts_draws_have_the_nig_moments_per_cell_and_arm():
    policy = standard_ts(K, num_cells=C, propensity_draws=0)
    state = _run(policy)
    idata = policy_to_arviz(policy, state, num_draws=DRAWS // 4)
    mean, var = _pooled(idata.posterior["mean_reward"].values), _pooled(idata.posterior["noise_var"].values)
    assert idata.posterior["mean_reward"].dims == ("chain", "draw", "cell", "action")
    assert mean.shape == var.shape == (DRAWS, C, K)
    arms = state.arms
    assert float(arms.alpha.min()) > 3  # finite variances of the draws, so the MC errors below hold
    mean_var = np.asarray(arms.beta / (arms.kappa * (arms.alpha - 1)))
    _assert_mean(mean, arms.mean, mean_var)
    np.testing.assert_allclose(mean.var(0), mean_var, rtol=0.1)
    noise_mean = np.asarray(arms.beta / (arms.alpha - 1))
    noise_sd = noise_mean / np.sqrt(np.asarray(arms.alpha) - 2)
    _assert_mean(var, noise_mean, noise_sd**2)
    # One non-contextual arm set: a single cell.
    plain = standard_ts(K, propensity_draws=0)
    assert dict(policy_to_arviz(plain, plain.init(None), num_draws=10).posterior["mean_reward"].sizes)["cell"] == 1


@pytest.mark.parametrize("hidden", [0, 4])
def test_ensemble_draws_are_its_members(hidden):
    members = 6
    treatment_draws = np.random.default_rng(2).normal(size=(K, C, 5, S))
    policy = ens_po_gambitts(treatment_draws, FEATURES, num_members=members, num_hidden=hidden, warmup=5,
                             batch_size=8, buffer_size=64, mc_draws=4, propensity_draws=0, dtype="float64")
    state = _run(policy)
    draws = jax.jit(policy.posterior_draws, static_argnums=2)(state, jax.random.PRNGKey(3), 2 * members)
    for name, leaf in state.ensemble.params.items():
        for block in (draws[name][:members], draws[name][members:]):  # each block of M draws: every member once
            order = np.argsort(np.asarray(block).reshape(members, -1)[:, 0])
            reference = np.argsort(np.asarray(leaf).reshape(members, -1)[:, 0])
            np.testing.assert_array_equal(np.asarray(block)[order], np.asarray(leaf)[reference])
    idata = policy_to_arviz(policy, state, num_draws=members)
    if hidden:
        assert dict(idata.posterior["w1"].sizes) == {"chain": 4, "draw": members, "style": 2, "hidden": hidden}
        assert idata.posterior["b2"].dims == ("chain", "draw")
    else:
        assert dict(idata.posterior["w"].sizes) == {"chain": 4, "draw": members, "style": 2}


@pytest.mark.slow  # compiles a second ensemble agent (about a minute on a busy 2-core machine)
def test_ens_fo_gambitts_adds_the_treatment_posterior():
    policy = ens_fo_gambitts(K, C, FEATURES, num_members=4, num_hidden=3, warmup=5, batch_size=8, buffer_size=64,
                             mc_draws=4, propensity_draws=0)
    state = _run(policy)
    idata = policy_to_arviz(policy, state, num_draws=DRAWS // 4)
    mu = _pooled(idata.posterior["mu"].values)
    for cell in range(C):
        for prompt in range(K):
            niw = jax.tree.map(lambda leaf: leaf[cell, prompt], state.treatment)
            _assert_mean(mu[:, cell, prompt], niw.mean, np.diag(np.asarray(niw_mean_covariance(niw))))
    assert {"w1", "b1", "w2", "b2", "mu", "Sigma"} <= set(idata.posterior.data_vars)


def test_named_dims_apply_only_to_the_package_agents_sites():
    from structbandits.agents.protocol import Policy

    draws = lambda state, key, n: {"mu": jax.random.normal(key, (n,)), "beta": jax.random.normal(key, (n, 2))}
    idata = policy_to_arviz(Policy(None, None, None, draws), None, num_draws=50)
    assert idata.posterior["mu"].dims == ("chain", "draw")  # a user's sites keep ArviZ's default dims,
    assert idata.posterior["beta"].dims == ("chain", "draw", "beta_dim_0")  # even with a built-in name and rank
    named = policy_to_arviz(Policy(None, None, None, draws), None, num_draws=50, dims={"beta": ["coefficient"]})
    assert named.posterior["beta"].dims == ("chain", "draw", "coefficient")
