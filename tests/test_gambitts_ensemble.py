"""Perturbed ensembles: on a linear problem their spread approaches the exact posterior as M grows."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from structbandits.inference.ensemble import (
    Ensemble,
    buffer_add,
    buffer_init,
    ensemble_fit,
    ensemble_init,
    ensemble_loss,
    ensemble_predict,
    ensemble_step,
)

N, SIGMA, SIGMA0 = 30, 0.5, 1.0


@pytest.fixture(scope="module")
def linear_problem():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(N, 2))
    y = x @ np.array([0.7, -1.2]) + 0.3 + SIGMA * rng.normal(size=N)
    features = np.hstack([x, np.ones((N, 1))])
    precision = np.eye(3) / SIGMA0**2 + features.T @ features / SIGMA**2
    cov = np.linalg.inv(precision)
    return x, y, features, cov, cov @ features.T @ y / SIGMA**2


def _fit_linear_ensemble(x, y, num_members, seed):
    """Lu-Van Roy members: prior anchors θ̃ ~ N(0, σ0² I), targets y + N(0, σ²), anchor weight σ²/(n σ0²)."""
    anchor_key, noise_key = jax.random.split(jax.random.PRNGKey(seed))
    w_key, b_key = jax.random.split(anchor_key)
    anchors = {"w": SIGMA0 * jax.random.normal(w_key, (num_members, 2)), "b": SIGMA0 * jax.random.normal(b_key, (num_members,))}
    optimizer = optax.adam(0.05)
    ensemble = Ensemble(anchors, anchors, jax.vmap(optimizer.init)(anchors))
    targets = jnp.asarray(y) + SIGMA * jax.random.normal(noise_key, (num_members, N))
    fitted = jax.jit(lambda e, t: ensemble_fit(e, jnp.asarray(x), t, optimizer, num_steps=2500,
                                               regularization=SIGMA**2 / (N * SIGMA0**2)))(ensemble, targets)
    theta = np.hstack([np.asarray(fitted.params["w"]), np.asarray(fitted.params["b"])[:, None]])
    return theta, np.asarray(targets), np.hstack([np.asarray(anchors["w"]), np.asarray(anchors["b"])[:, None]])


def test_each_member_converges_to_its_perturbed_map(linear_problem):
    x, y, features, cov, _ = linear_problem
    theta, targets, anchors = _fit_linear_ensemble(x, y, 16, seed=1)
    exact = (features.T @ targets.T / SIGMA**2 + anchors.T / SIGMA0**2).T @ cov
    np.testing.assert_allclose(theta, exact, atol=1e-4)


def test_ensemble_spread_approaches_the_exact_posterior_as_members_grow(linear_problem):
    x, y, _, cov, mean = linear_problem
    errors = {}
    for members in (8, 64, 2048):
        theta, _, _ = _fit_linear_ensemble(x, y, members, seed=members)
        errors[members] = np.linalg.norm(np.cov(theta.T) - cov) / np.linalg.norm(cov)
        if members == 2048:
            assert np.all(np.abs(theta.mean(0) - mean) < 4 * np.sqrt(np.diag(cov) / members))
    assert errors[2048] < 0.08, errors
    assert errors[8] > errors[2048] and errors[64] > errors[2048], errors
    # The predictive spread at a new input matches the exact posterior predictive sd.
    theta, _, _ = _fit_linear_ensemble(x, y, 2048, seed=7)
    query = np.array([0.5, 0.5, 1.0])
    assert np.std(theta @ query) == pytest.approx(np.sqrt(query @ cov @ query), rel=0.05)


def test_replay_buffer_is_a_ring_and_online_steps_reduce_the_loss():
    buffer = buffer_init(4, 1, 3)
    for t in range(6):
        buffer = buffer_add(buffer, jnp.asarray([float(t)]), jnp.asarray(float(t)), jnp.full(3, float(t)))
    assert int(buffer.count) == 6
    np.testing.assert_array_equal(np.asarray(buffer.rows.target), [4.0, 5.0, 2.0, 3.0])

    rng = np.random.default_rng(1)
    optimizer = optax.adam(0.02)
    ensemble = ensemble_init(jax.random.PRNGKey(0), 5, 2, 16, optimizer)
    buffer = buffer_init(64, 2, 5)
    xs = rng.normal(size=(64, 2))
    for x in xs:
        buffer = buffer_add(buffer, jnp.asarray(x), jnp.asarray(2.0 * x[0] - x[1] + 3.0), jnp.zeros(5))

    def mse(e):
        return float(jnp.mean((ensemble_predict(e.params, buffer.rows.inputs) - buffer.rows.target) ** 2))

    step = jax.jit(lambda e, k: ensemble_step(e, buffer, k, optimizer, batch_size=32))
    before = mse(ensemble)
    for t in range(300):
        ensemble = step(ensemble, jax.random.PRNGKey(t))
    assert mse(ensemble) < 0.05 * before
    # The anchor term pulls members back to their prior draws.
    params = jax.tree.map(lambda leaf: leaf[0], ensemble.params)
    anchor = jax.tree.map(lambda leaf: leaf[0], ensemble.anchors)
    free = ensemble_loss(params, anchor, buffer.rows.inputs, buffer.rows.target, 0.0)
    assert ensemble_loss(params, anchor, buffer.rows.inputs, buffer.rows.target, 1.0) > free
