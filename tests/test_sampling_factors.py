"""Draws from stacks of Gaussians without per-arm solves (issue 22 items 2, 3): ``conjugate.lower_solve``,
``stacked_gaussian_draws``, ``stacked_gaussian_score_draws``, LinTS's ``arm_draws``, meTS's
``sampling="scores"`` and its compiled loop, against independent answers.

Oracles, none of them the package's code:
- ``scipy.linalg.solve_triangular`` per arm for L⁻¹b and L⁻ᵀb (both code paths: unrolled for d <= 16,
  a loop above);
- NumPy for a fixed noise z: θ = C⁻¹h + L⁻ᵀz, and the score s = xᵀC⁻¹h + (xᵀC⁻¹x)^½ z;
- the same standard normals as per-arm sampling (``jax.random.normal`` on the split keys) mapped by NumPy;
- the exact selection probabilities of meTS with ``sampling="scores"``: a large Monte-Carlo draw from
  the dense joint Gaussian posterior of (vec Ψ, θ) written in NumPy (``mixed_effect_oracles``);
- XLA's optimised program text: no whole (seeds, K, d, d) or (seeds, K, d) state array copied in the
  compiled meTS loop (the code before issue 22 had four such copies a round).

Planted bugs, each failing a test here: the backward substitution reading row j of L instead of column j
(``chol[..., j, i]`` for ``chol[..., i, j]``: both substitution tests); the loop path starting at j = 1;
the inverse-factor draw applying L⁻¹ instead of L⁻ᵀ the second time ("kab" for "kba"); the score's
scale without the square root (the fixed-noise test and the selection frequencies); ``arm_draws``
splitting one key fewer; the evidence of the pulled arm kept in the state again (the compiled-loop test).
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from mixed_effect_oracles import D, K, L, NOISE, dense_joint_posterior, make_problem
from scipy.linalg import solve_triangular

from structbandits.agents import hier_ts, mets
from structbandits.agents.thompson import arm_draws
from structbandits.errors import ValidationError
from structbandits.inference.conjugate import (
    GaussianInfo,
    lower_solve,
    stacked_gaussian_draws,
    stacked_gaussian_score_draws,
)

RNG = np.random.default_rng(22)


def lower_factors(k, d):
    """k random well-conditioned lower-triangular factors (k, d, d) with positive diagonals."""
    a = RNG.normal(size=(k, d, d + 3))
    return np.linalg.cholesky(a @ np.swapaxes(a, 1, 2) / d + 0.5 * np.eye(d))


@pytest.mark.parametrize("d", [1, 4, 20])
@pytest.mark.parametrize("transpose", [False, True])
def test_lower_solve_is_scipy_per_arm(d, transpose):
    chol, rhs = lower_factors(6, d), RNG.normal(size=(6, d))
    got = np.asarray(lower_solve(jnp.asarray(chol), jnp.asarray(rhs), transpose=transpose))
    expected = np.stack([solve_triangular(c, b, lower=True, trans="T" if transpose else "N") for c, b in zip(chol, rhs)])
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    # broadcasting a factor over extra draws: (K, 1, d, d) against (K, 3, d)
    many = RNG.normal(size=(6, 3, d))
    got = np.asarray(lower_solve(jnp.asarray(chol)[:, None], jnp.asarray(many), transpose=transpose))
    expected = np.stack([[solve_triangular(c, b, lower=True, trans="T" if transpose else "N") for b in bs]
                         for c, bs in zip(chol, many)])
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("inverse", [False, True])
@pytest.mark.parametrize("sample_shape", [(), (3,)])
def test_stacked_draws_are_mean_plus_whitened_noise(inverse, sample_shape):
    """θ_k = C_k⁻¹h_k + L_k⁻ᵀz_k for the given z, from L or from a stored L⁻¹."""
    k, d = 5, 4
    chol, info = lower_factors(k, d), RNG.normal(size=(k, d))
    noise = RNG.normal(size=(k,) + sample_shape + (d,))
    factor = np.linalg.inv(chol) if inverse else chol
    got = np.asarray(stacked_gaussian_draws(jnp.asarray(factor), jnp.asarray(info), jnp.asarray(noise), inverse=inverse))
    for arm in range(k):
        precision = chol[arm] @ chol[arm].T
        mean = np.linalg.solve(precision, info[arm])
        spread = np.linalg.solve(chol[arm].T, noise[arm].reshape(-1, d).T).T.reshape(noise[arm].shape)
        np.testing.assert_allclose(got[arm], mean + spread, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("inverse", [False, True])
@pytest.mark.parametrize("shared", [False, True])
def test_score_draws_are_gaussian_scores(inverse, shared):
    """s_k = x_kᵀC_k⁻¹h_k + (x_kᵀC_k⁻¹x_k)^½ z_k for the given z (one draw and two draws per arm)."""
    k, d = 6, 3
    chol, info = lower_factors(k, d), RNG.normal(size=(k, d))
    features = RNG.normal(size=(d,) if shared else (k, d))
    rows = np.broadcast_to(features, (k, d))
    factor = jnp.asarray(np.linalg.inv(chol) if inverse else chol)
    for noise in (RNG.normal(size=k), RNG.normal(size=(k, 2))):
        got = np.asarray(stacked_gaussian_score_draws(factor, jnp.asarray(info), jnp.asarray(features),
                                                      jnp.asarray(noise), inverse=inverse))
        cov = np.linalg.inv(chol @ np.swapaxes(chol, 1, 2))
        mean = np.einsum("ka,kab,kb->k", rows, cov, info)
        sd = np.sqrt(np.einsum("ka,kab,kb->k", rows, cov, rows))
        np.testing.assert_allclose(got, mean.reshape((k,) + (1,) * (noise.ndim - 1))
                                   + sd.reshape((k,) + (1,) * (noise.ndim - 1)) * noise, rtol=1e-10, atol=1e-12)


def test_lints_arm_draws_use_the_per_arm_normals():
    """``arm_draws`` maps arm k's normals jax.random.normal(split(key, K)[k], shape + (d,)) — what per-arm
    sampling drew — to m_k + L_k⁻ᵀz, so LinTS's actions are unchanged up to rounding."""
    k, d, shape = 4, 3, (5,)
    chol, info = lower_factors(k, d), RNG.normal(size=(k, d))
    key = jax.random.PRNGKey(7)
    got = np.asarray(arm_draws(GaussianInfo(jnp.asarray(chol), jnp.asarray(info)), key, shape))
    assert got.shape == (k,) + shape + (d,)
    for arm, arm_key in enumerate(jax.random.split(key, k)):
        z = np.asarray(jax.random.normal(arm_key, shape + (d,)))
        mean = np.linalg.solve(chol[arm] @ chol[arm].T, info[arm])
        np.testing.assert_allclose(got[arm], mean + np.linalg.solve(chol[arm].T, z.T).T, rtol=1e-10, atol=1e-12)


def feed(policy, contexts, actions, rewards):
    def step(state, data):
        return policy.update(state, *data), None

    return jax.lax.scan(step, policy.init(jax.random.PRNGKey(0)), (contexts, actions, rewards))[0]


@pytest.fixture(scope="module")
def problem():
    return make_problem(2)


def test_score_sampling_picks_arms_with_the_joint_posterior_probabilities(problem):
    """meTS with sampling="scores" picks arm i with probability P(i = argmax_j x_jᵀθ_j) under the dense joint
    posterior (a 200,000-draw NumPy Monte Carlo), per-arm contexts, as the default sampler does."""
    (mixing, effect_mean, effect_cov, action_cov), contexts, actions, rewards = problem
    policy = mets(mixing, effect_mean, effect_cov, action_cov, NOISE, sampling="scores")
    state = feed(policy, contexts, actions, rewards)
    mean, cov = dense_joint_posterior(problem)
    arm_means = mean[L * D:].reshape(K, D)
    context = np.stack([-arm_means[:, 1], arm_means[:, 0]], axis=1) / np.linalg.norm(arm_means, axis=1, keepdims=True)
    context[0] += 0.3 * arm_means[0] / np.linalg.norm(arm_means[0])  # arm 0 a little ahead: unequal probabilities
    num_acts = 10_000
    chosen, _ = jax.jit(jax.vmap(policy.act, (None, 0, None)))(state, jax.random.split(jax.random.PRNGKey(3), num_acts),
                                                               jnp.asarray(context))
    frequency = np.bincount(np.asarray(chosen), minlength=K) / num_acts
    theta = np.random.default_rng(0).multivariate_normal(mean[L * D:], cov[L * D:, L * D:], size=200_000).reshape(-1, K, D)
    oracle = np.bincount(np.argmax(np.sum(theta * context, -1), 1), minlength=K) / len(theta)
    assert oracle.max() < 0.9 and oracle.min() > 0.05, "pick a context where the choice is uncertain"
    tolerance = 4 * np.sqrt(oracle * (1 - oracle) / num_acts) + 2e-3
    assert np.all(np.abs(frequency - oracle) < tolerance), (frequency, oracle)


def top_level_copies(hlo: str) -> list[str]:
    """Result shapes of the ``copy`` instructions outside fused computations (whole-buffer copies)."""
    shapes, fused = [], False
    for line in hlo.splitlines():
        if line and not line.startswith(" "):
            fused = line.startswith("%fused") or line.startswith("fused")
        match = re.match(r"\s*(?:ROOT )?%\S+ = (\S+) copy\(", line)
        if match and not fused:
            shapes.append(match.group(1).split("{")[0])
    return shapes


def test_mets_loop_copies_no_whole_state_array():
    """The compiled scan of meTS act + update (vmapped over seeds) updates every per-arm array in place."""
    seeds, arms, effects, d = 2, 40, 2, 3
    mixing = RNG.uniform(-1, 1, (arms, effects))
    policy = mets(mixing, np.zeros((effects, d)), np.eye(effects * d), np.eye(d), 1.0)

    def run(key):
        def step(state, round_key):
            context_key, act_key = jax.random.split(round_key)
            context = jax.random.uniform(context_key, (arms, d))
            action, _ = policy.act(state, act_key, context)
            return policy.update(state, context, action, context[action, 0]), action

        return jax.lax.scan(step, policy.init(key), jax.random.split(key, 3))[1]

    keys = jax.random.split(jax.random.PRNGKey(0), seeds)
    hlo = jax.jit(jax.vmap(run)).lower(keys).compile().as_text()
    state_shapes = {f"f64[{seeds},{arms},{d},{d}]", f"f64[{seeds},{arms},{d}]"}
    assert "while" in hlo
    assert not state_shapes & set(top_level_copies(hlo)), top_level_copies(hlo)


def test_sampling_is_validated_and_reaches_hier_ts(problem):
    (mixing, effect_mean, effect_cov, action_cov), *_ = problem
    with pytest.raises(ValidationError, match="sampling"):
        mets(mixing, effect_mean, effect_cov, action_cov, NOISE, sampling="theta")
    policy = hier_ts(effect_mean, effect_cov, action_cov, NOISE, num_actions=K, sampling="scores")
    action, _ = policy.act(policy.init(jax.random.PRNGKey(0)), jax.random.PRNGKey(1), jnp.ones((K, D)))
    assert 0 <= int(action) < K
