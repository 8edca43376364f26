"""Monte-Carlo propensities of every GAMBITTS agent against exact selection probabilities.

Exact values come from independent routes: Gaussian orthant probabilities (poGAMBITTS), 1-D
quadrature of Student-t laws (standard TS, foGAMBITTS, by enumerating the sign cases of the score
difference) and enumeration of ensemble members on a tiny discrete treatment set (ens-poGAMBITTS).
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

from structbandits.agents.ens_gambitts import ens_po_gambitts
from structbandits.agents.gambitts import fo_gambitts, optional_prompting, po_gambitts
from structbandits.agents.standard_ts import standard_ts
from structbandits.inference.conjugate import gaussian_covariance, gaussian_mean
from structbandits.inference.ensemble import model_apply

M = 20_000


class Ctx(NamedTuple):
    cell: jax.Array
    treatments: jax.Array


def _ctx(treatments):
    return Ctx(jnp.asarray(0, jnp.int32), jnp.asarray(treatments, jnp.float64))


def _feed(policy, state, observations):
    update = jax.jit(policy.update)
    for treatments, action, reward in observations:
        state = update(state, _ctx(treatments), jnp.asarray(action), jnp.asarray(reward, jnp.float64))
    return state


def _check(policy, state, context, exact: np.ndarray, keys=range(6)):
    act = jax.jit(policy.act)
    seen = set()
    for k in keys:
        action, info = act(state, jax.random.PRNGKey(k), context)
        p = exact[int(action)]
        seen.add(int(action))
        assert abs(float(info.propensity) - p) < 4 * np.sqrt(p * (1 - p) / M) + 1e-3, (int(action), float(info.propensity), p)
    return seen


def test_po_gambitts_propensity_is_the_gaussian_orthant_probability():
    means = np.array([[1.0, 0.0], [0.0, 1.0], [-0.7, -0.7]])
    draws = means[:, None, None, :] + np.zeros((3, 1, 4, 2))
    policy = po_gambitts(draws, [0, 1], reward_prior_mean=(0.0, 0.0), reward_prior_precision=(1.0, 1.0),
                         propensity_draws=M)
    state = _feed(policy, policy.init(jax.random.PRNGKey(0)),
                  [(means, 0, 0.4), (means, 2, -0.1), (means, 1, 0.2)])
    features = np.hstack([np.ones((3, 1)), means])
    mean = features @ np.asarray(gaussian_mean(state.reward))
    cov = features @ np.asarray(gaussian_covariance(state.reward)) @ features.T
    exact = []
    for a in range(3):
        diff = np.delete(np.eye(3), a, axis=0)
        diff[:, a] -= 1.0  # rows s_j − s_a; the action wins when all are < 0
        exact.append(stats.multivariate_normal(diff @ mean, diff @ cov @ diff.T).cdf(np.zeros(2)))
    exact = np.asarray(exact)
    assert abs(exact.sum() - 1) < 1e-3 and exact.min() > 0.1
    _check(policy, state, _ctx(means), exact)


def _argmax_probabilities(laws):
    """P(argmax = a) for independent continuous laws, by quadrature of f_a ∏_{j≠a} F_j."""
    out = []
    for a, law in enumerate(laws):
        others = [l for j, l in enumerate(laws) if j != a]
        value, _ = integrate.quad(lambda x: law.pdf(x) * np.prod([o.cdf(x) for o in others]), -np.inf, np.inf)
        out.append(value)
    return np.asarray(out)


def test_standard_ts_propensity_is_the_student_t_argmax_probability():
    policy = standard_ts(3, propensity_draws=M)
    state = _feed(policy, policy.init(jax.random.PRNGKey(0)),
                  [(np.zeros((3, 1)), a, y) for a, y in [(0, 78.0), (1, 79.5), (2, 76.0), (1, 77.0), (0, 80.0)]])
    arms = state.arms
    laws = [stats.t(2 * float(arms.alpha[0, a]), loc=float(arms.mean[0, a]),
                    scale=np.sqrt(float(arms.beta[0, a]) / (float(arms.alpha[0, a]) * float(arms.kappa[0, a]))))
            for a in range(3)]
    exact = _argmax_probabilities(laws)
    assert abs(exact.sum() - 1) < 1e-6 and exact.min() > 0.05
    _check(policy, state, _ctx(np.zeros((3, 1))), exact)


def test_fo_gambitts_propensity_by_enumerating_sign_cases():
    policy = fo_gambitts(2, 1, [0], reward_prior_mean=(0.0, 0.0), reward_prior_precision=(1.0, 1.0),
                         propensity_draws=M)
    observations = [([[0.3], [0.0]], 0, 0.1), ([[0.0], [0.1]], 1, 0.0), ([[0.9], [0.0]], 0, 0.05),
                    ([[0.0], [-0.4]], 1, -0.02)]
    state = _feed(policy, policy.init(jax.random.PRNGKey(0)), observations)
    beta_mean, beta_cov = np.asarray(gaussian_mean(state.reward)), np.asarray(gaussian_covariance(state.reward))
    p_beta = stats.norm.sf(0.0, beta_mean[1], np.sqrt(beta_cov[1, 1]))  # P(β1 > 0)
    niw = jax.tree.map(lambda leaf: np.asarray(leaf[0]), state.treatment)
    laws = [stats.t(niw.nu[a] - 1 + 1, loc=niw.mean[a, 0],
                    scale=niw.scale_chol[a, 0, 0] / np.sqrt(niw.kappa[a] * (niw.nu[a] - 1 + 1)))
            for a in range(2)]
    p_mu = _argmax_probabilities(laws)[0]  # P(μ̃_0 > μ̃_1)
    p0 = p_beta * p_mu + (1 - p_beta) * (1 - p_mu)  # prompt 0 wins iff β1 (μ̃_0 − μ̃_1) > 0
    exact = np.array([p0, 1 - p0])
    assert 0.1 < p0 < 0.9
    _check(policy, state, _ctx(np.zeros((2, 1))), exact)


def test_ensemble_propensity_by_enumerating_members():
    z = np.array([[0.5, -1.0], [-0.3, 0.8], [1.2, 0.1]])
    draws = z[:, None, None, :]  # one generator draw per cell: the treatment is deterministic
    policy = ens_po_gambitts(draws, [0, 1], num_members=7, num_hidden=4, warmup=0, mc_draws=1,
                             propensity_draws=M, dtype="float64")
    state = policy.init(jax.random.PRNGKey(3))
    scores = np.stack([np.asarray(model_apply(jax.tree.map(lambda leaf: leaf[m], state.ensemble.params), jnp.asarray(z)))
                       for m in range(7)])
    exact = np.bincount(scores.argmax(axis=1), minlength=3) / 7.0
    assert np.count_nonzero(exact) >= 2, "members should disagree for the test to mean something"
    seen = _check(policy, state, _ctx(z), exact, keys=range(10))
    assert all(exact[a] > 0 for a in seen)


def test_ensemble_scores_stored_rows_exactly_as_the_resampled_batch():
    # The same three valid rows per cell, stored with N = 3 (N <= mc: weighted rows are scored) and
    # padded to N = 8 (N > mc: the mc resampled treatments are scored); the same keys resample the
    # same rows, so both act and report propensities identically, also with fewer draws than members.
    rng = np.random.default_rng(4)
    rows = rng.normal(size=(4, 2, 3, 2))
    padded = np.concatenate([rows, np.full((4, 2, 5, 2), 1e6)], axis=2)
    for draws_m in (50, 3):
        options = dict(num_members=5, num_hidden=6, warmup=0, mc_draws=4, propensity_draws=draws_m, dtype="float64")
        stored = ens_po_gambitts(rows, [0, 1], **options)
        resampled = ens_po_gambitts(padded, [0, 1], treatment_counts=np.full((4, 2), 3), **options)
        context = Ctx(jnp.asarray(1), jnp.zeros((4, 2)))
        # Each from its own state (its params hold its draws); the same key gives both the same members.
        outcomes = {name: [jax.jit(policy.act)(policy.init(jax.random.PRNGKey(0)), jax.random.PRNGKey(k), context)
                           for k in range(12)]
                    for name, policy in (("stored", stored), ("resampled", resampled))}
        for (a1, i1), (a2, i2) in zip(outcomes["stored"], outcomes["resampled"]):
            assert int(a1) == int(a2)
            assert float(i1.propensity) == pytest.approx(float(i2.propensity), abs=1e-12)
        assert len({int(a) for a, _ in outcomes["stored"]}) >= 2, "members should disagree for the test to mean something"


def test_ensemble_propensity_is_one_over_k_during_warmup():
    z = np.array([[0.5], [-0.3], [1.2]])
    policy = ens_po_gambitts(z[:, None, None, :], [0], num_members=3, num_hidden=4, warmup=5, mc_draws=2)
    _, info = jax.jit(policy.act)(policy.init(jax.random.PRNGKey(0)), jax.random.PRNGKey(1), _ctx(z))
    assert float(info.propensity) == pytest.approx(1 / 3)


def test_optional_prompting_propensity_is_the_product_rule():
    means = np.array([[1.0, 0.0], [0.0, 1.0], [-0.7, -0.7]])
    prompter = po_gambitts(means[:, None, None, :], [0, 1], reward_prior_mean=(0.0, 0.0),
                           reward_prior_precision=(1.0, 1.0), propensity_draws=M)
    policy = optional_prompting(standard_ts(2, propensity_draws=M), prompter)
    state = policy.init(jax.random.PRNGKey(0))
    # Fresh prior: the two gate arms are exchangeable (P = 1/2 each); the prompter's scores are
    # N(0, 1 + |z̄_a|²) with covariance 1 + z̄_a·z̄_b, a Gaussian orthant probability per prompt.
    features = np.hstack([np.ones((3, 1)), means])
    cov = features @ features.T
    exact_prompt = []
    for a in range(3):
        diff = np.delete(np.eye(3), a, axis=0)
        diff[:, a] -= 1.0
        exact_prompt.append(stats.multivariate_normal(np.zeros(2), diff @ cov @ diff.T).cdf(np.zeros(2)))
    exact = np.concatenate([[0.5], 0.5 * np.asarray(exact_prompt)])
    seen = set()
    act = jax.jit(policy.act)
    for k in range(8):
        action, info = act(state, jax.random.PRNGKey(k), _ctx(means))
        p = exact[int(action)]
        seen.add(int(action) > 0)
        assert abs(float(info.propensity) - p) < 5 * np.sqrt(p * (1 - p) / M) + 2e-3, (int(action), float(info.propensity), p)
    assert seen == {True, False}
