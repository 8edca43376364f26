"""LinTS-NIG, GLM-TS and factored meTS draw every arm (block, effect) at once (issue 22 item 3) from the same
standard normals as their former per-arm triangular solves, so their draws agree with those solves to rounding
and their actions are unchanged.

Oracles, none of them the package's code: per-arm ``scipy.linalg.solve_triangular`` / ``numpy.linalg.solve``
applied to the normals the former per-arm code drew (``jax.random.normal`` on the same keys and shapes,
regenerated here), on random positive-definite factors:
- ``regression_nig_sample``: θ = Λ⁻¹η + σ L⁻ᵀz per block and draw, z = normal(split(key)[1], (|B|, n, d)), for
  per-arm and shared σ², one draw and several, batch shapes (K,), (2, 3) and () (σ² is the function's own output:
  its path did not change; the test checks θ given it);
- ``lin_ts_nig``'s action: argmax of the oracle scores from the acting half of its key;
- ``glm_ts``'s action: argmax over arms of x_kᵀ(C_k⁻¹h_k + L_k⁻ᵀz_k), z_k = normal(split(key, K)[k], (d,));
- factored meTS's effect draw (``posterior_draws``' Ψ̃): per block ψ_l = P_l⁻¹η_l + L_l⁻ᵀz_l with
  z_l = normal(split(effect key, L)[l], (d,));
- meTS's (K, d) normals, now drawn flat: ``jax.random.normal(key, (K, d))`` itself, and the agent's θ̃ draws with
  it swapped back in (bit for bit).

Planted bugs, each failing a test here: the NIG noise scaled by σ² instead of σ; per-block σ laid out without
the transpose ((num, size) read as (size, num)); z drawn as (n, |B|, d) instead of (|B|, n, d); the one-draw
path's noise halved; GLM-TS drawing from another key (``split(key)[0]``); the factored effects drawn from the
conditional key (``split(key)[1]``); meTS's flat normals reshaped d-major (``.reshape(d, K).T``) or drawn
from another key.
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.linalg import solve_triangular

from structbandits.agents import glm_ts, lin_ts_nig, mets
from structbandits.inference.nig import RegressionNIG, regression_nig_sample

RNG = np.random.default_rng(2022)
TOL = dict(rtol=1e-12, atol=1e-12)
nig_sample = jax.jit(regression_nig_sample, static_argnums=2)


def lower_factors(batch, d):
    """Random well-conditioned lower Cholesky factors, shape batch + (d, d)."""
    a = RNG.normal(size=batch + (d, d + 2))
    return np.linalg.cholesky(a @ np.swapaxes(a, -1, -2) / d + 0.3 * np.eye(d))


def per_block_draws(chol, info, z, sd):
    """θ[b, n] = Λ_b⁻¹η_b + sd[b, n] L_b⁻ᵀ z[b, n]: (size, num, d), one SciPy solve per block and draw."""
    out = np.empty(z.shape)
    for b in range(len(chol)):
        mean = np.linalg.solve(chol[b] @ chol[b].T, info[b])
        for n in range(z.shape[1]):
            out[b, n] = mean + sd[b, n] * solve_triangular(chol[b], z[b, n], lower=True, trans="T")
    return out


@pytest.mark.parametrize("batch, shape, shared", [
    ((5,), (), False), ((5,), (), True), ((5,), (4,), False), ((2, 3), (2, 2), False), ((), (6,), True)])
def test_nig_draws_are_the_per_block_solves_of_the_same_normals(batch, shape, shared):
    d = 3
    chol = lower_factors(batch, d)
    info = RNG.normal(size=batch + (d,))
    alpha = np.array(2.5) if shared else RNG.uniform(1.0, 4.0, batch)
    beta = np.array(1.3) if shared else RNG.uniform(0.5, 2.0, batch)
    key = jax.random.PRNGKey(11)
    theta, var = nig_sample(RegressionNIG(*(jnp.asarray(a) for a in (chol, info, alpha, beta))), key, shape)
    num, size = int(np.prod(shape, dtype=int)), int(np.prod(batch, dtype=int))
    assert theta.shape == shape + batch + (d,) and var.shape == shape + alpha.shape
    z = np.asarray(jax.random.normal(jax.random.split(key)[1], (size, num, d)))  # as the per-block code drew them
    var = np.asarray(var).reshape(num, -1)
    sd = np.sqrt(np.broadcast_to(var, (num, size))).T  # (size, num)
    expected = per_block_draws(chol.reshape(size, d, d), info.reshape(size, d), z, sd)
    np.testing.assert_allclose(np.asarray(theta), np.moveaxis(expected, 0, 1).reshape(theta.shape), **TOL)


def test_lin_ts_nig_actions_come_from_the_same_normals():
    """The agent draws through ``regression_nig_sample`` with the acting half of its key (shapes as the first
    case above, so its compiled program is reused)."""
    k, d = 5, 3
    policy = lin_ts_nig(np.zeros(d), np.eye(d), RNG.uniform(1.0, 4.0, k), RNG.uniform(0.5, 2.0, k), num_actions=k)
    chol, info = lower_factors((k,), d), RNG.normal(size=(k, d))
    state = policy.init(jax.random.PRNGKey(0))
    posterior = state.posterior._replace(precision_chol=jnp.asarray(chol), info=jnp.asarray(info))
    act = jax.jit(policy.act)
    for seed in range(4):
        context = RNG.uniform(-1, 1, (k, d))
        key = jax.random.PRNGKey(100 + seed)
        act_key = jax.random.split(key)[0]
        _, var = nig_sample(posterior, act_key, ())
        z = np.asarray(jax.random.normal(jax.random.split(act_key)[1], (k, 1, d)))
        theta = per_block_draws(chol, info, z, np.sqrt(np.asarray(var))[:, None])[:, 0]
        action, _ = act(state._replace(posterior=posterior), key, jnp.asarray(context))
        assert int(action) == int(np.argmax(np.sum(theta * context, axis=1)))


def test_glm_ts_action_is_the_argmax_of_the_per_arm_draws():
    k, d = 7, 3
    policy = glm_ts(np.zeros(d), np.eye(d), num_actions=k, history_size=4)
    chol, info = lower_factors((k,), d), RNG.normal(size=(k, d))
    state = policy.init(jax.random.PRNGKey(0))
    state = state._replace(posterior=state.posterior._replace(precision_chol=jnp.asarray(chol), info=jnp.asarray(info)))
    act = jax.jit(policy.act)
    for seed in range(5):
        context = RNG.uniform(-1, 1, (k, d))
        key = jax.random.PRNGKey(seed)
        z = np.stack([np.asarray(jax.random.normal(arm_key, (d,))) for arm_key in jax.random.split(key, k)])
        theta = per_block_draws(chol, info, z[:, None], np.ones((k, 1)))[:, 0]
        scores = np.sum(theta * context, axis=1)
        assert int(act(state, key, jnp.asarray(context))[0]) == int(np.argmax(scores))


def test_factored_mets_effects_are_the_per_block_draws():
    k, num_effects, d, draws = 5, 3, 2, 4
    mixing = RNG.uniform(-1, 1, (k, num_effects))
    policy = mets(mixing, np.zeros((num_effects, d)), np.eye(num_effects * d), np.eye(d), 1.0, factored=True)
    chol = lower_factors((num_effects,), d)  # the effect posterior's blocks, set directly: distinct factors
    info = RNG.normal(size=(num_effects, d))
    state = policy.init(jax.random.PRNGKey(0))._replace(effect_precision=jnp.asarray(chol @ np.swapaxes(chol, 1, 2)),
                                                         effect_info=jnp.asarray(info))
    key = jax.random.PRNGKey(9)
    psi = np.asarray(jax.jit(policy.posterior_draws, static_argnums=2)(state, key, draws)["psi"])  # (draws, L, d)
    for n, draw_key in enumerate(jax.random.split(key, draws)):
        effect_key = jax.random.split(draw_key)[0]
        z = np.stack([np.asarray(jax.random.normal(block_key, (d,)))
                      for block_key in jax.random.split(effect_key, num_effects)])
        expected = per_block_draws(chol, info, z[:, None], np.ones((num_effects, 1)))[:, 0]
        np.testing.assert_allclose(psi[n], expected, **TOL)


def test_mets_normals_drawn_flat_are_the_k_by_d_draw(monkeypatch):
    """meTS draws its (K, d) normals flat and reshapes them (``mets_core._arm_normals``, issue 22 item 2): the values of
    ``jax.random.normal(key, (K, d))``, and its compiled θ̃ draws equal, bit for bit, those of the same agent
    drawing (K, d) directly (the rounding of the fused consumer unchanged too)."""
    module = sys.modules["structbandits.agents.mets_core"]  # where ``mets`` draws them
    for k, d in ((7, 3), (50, 5)):
        key = jax.random.PRNGKey(k)
        assert np.array_equal(module._arm_normals(key, k, d, jnp.float64), jax.random.normal(key, (k, d)))
    k, num_effects, d = 50, 2, 5
    mixing = RNG.uniform(-1, 1, (k, num_effects))

    def theta_draws():
        policy = mets(mixing, np.zeros((num_effects, d)), np.eye(num_effects * d), np.eye(d), 1.0)
        draws = jax.jit(policy.posterior_draws, static_argnums=2)
        return np.asarray(draws(policy.init(jax.random.PRNGKey(0)), jax.random.PRNGKey(5), 3)["theta"])

    flat = theta_draws()
    monkeypatch.setattr(module, "_arm_normals", lambda key, k, d, dtype: jax.random.normal(key, (k, d), dtype))
    assert np.array_equal(flat, theta_draws())
