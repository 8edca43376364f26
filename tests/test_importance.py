"""The Pareto k̂ diagnostic against ArviZ's PSIS and against exact Pareto tails; the Laplace engine on
quadratics (exact answers) and on densities without a mode."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from structbandits.inference.importance import importance_mean_shift, pareto_khat
from structbandits.inference.laplace import laplace_failure, laplace_fit, laplace_log_ratios, laplace_sample


def _arviz_khat(log_ratios):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import arviz

        return float(arviz.psislw(np.array(log_ratios, dtype=float))[1])


@pytest.mark.parametrize("draws", [100, 1000, 4000])
@pytest.mark.parametrize("shape", [0.2, 0.5, 0.9])
def test_khat_equals_arviz_psis(draws, shape):
    rng = np.random.default_rng(draws)
    log_ratios = np.log1p(rng.pareto(1 / shape, draws)) + rng.normal()  # exact GPD tail of shape k
    assert pareto_khat(log_ratios) == pytest.approx(_arviz_khat(log_ratios), abs=1e-12)


def test_khat_recovers_the_tail_shape_and_is_small_for_a_perfect_fit():
    rng = np.random.default_rng(0)
    for shape in (0.3, 0.8):
        assert pareto_khat(np.log1p(rng.pareto(1 / shape, 20000))) == pytest.approx(shape, abs=0.12)
    assert pareto_khat(np.log1p(rng.pareto(1 / 1.2, 20000))) > 1.0
    assert pareto_khat(rng.normal(size=4000) * 0.01) < 0.3  # light tails: q ≈ p
    assert np.isnan(pareto_khat(np.array([0.0, np.inf] * 50))) and np.isnan(pareto_khat(np.zeros(10)))
    assert pareto_khat(np.zeros(100)) == 0.0


def test_laplace_of_a_gaussian_is_exact_and_its_ratios_are_constant():
    precision = jnp.array([[4.0, 1.0, 0.0], [1.0, 2.0, 0.5], [0.0, 0.5, 1.0]])
    mean = jnp.array([1.0, -2.0, 0.5])
    potential = lambda z: 0.5 * (z - mean) @ precision @ (z - mean)
    fit = jax.jit(lambda start: laplace_fit(potential, start, max_steps=100))(jnp.zeros(3))
    np.testing.assert_allclose(fit.mode, mean, atol=1e-8)
    np.testing.assert_allclose(fit.precision_chol @ fit.precision_chol.T, precision, rtol=1e-10, atol=1e-12)
    assert bool(fit.diagnostics.converged) and laplace_failure(fit.diagnostics) is None
    draws = laplace_sample(fit, jax.random.PRNGKey(0), (20000,))
    np.testing.assert_allclose(np.cov(np.asarray(draws).T), np.linalg.inv(precision), atol=0.02)
    ratios = np.asarray(laplace_log_ratios(fit, potential, draws))
    assert np.ptp(ratios) < 1e-8  # q is the target up to its normalising constant


def test_laplace_reports_what_failed():
    # exp(-Σ e^z): no mode (flat as z → -∞); a saddle-free but indefinite quartic; a stopped search.
    flat = jax.jit(lambda s: laplace_fit(lambda z: jnp.sum(jnp.exp(z)), s, max_steps=50))(jnp.array([3.0, 0.1]))
    assert not bool(flat.diagnostics.converged)
    assert "not positive definite" in laplace_failure(flat.diagnostics, max_steps=50)
    skewed = lambda z: jnp.sum(jnp.cosh(3 * z) + z)
    stopped = jax.jit(lambda s: laplace_fit(skewed, s, max_steps=1))(jnp.array([2.0, -2.0]))
    assert int(stopped.diagnostics.iterations) == 1 and not bool(stopped.diagnostics.converged)
    assert "stopped after 1 of 1 steps" in laplace_failure(stopped.diagnostics, max_steps=1)
    finished = jax.jit(lambda s: laplace_fit(skewed, s, max_steps=200))(jnp.array([2.0, -2.0]))
    assert bool(finished.diagnostics.converged)
    np.testing.assert_allclose(finished.mode, -np.arcsinh(1 / 3) / 3, atol=1e-8)  # 3 sinh(3z) = -1


def test_importance_mean_shift_recovers_a_shifted_target():
    # q = N(0, 1), p = N(μ, 1): log p/q = μx − μ²/2, so the importance-sampled mean is μ (= μ sds of q).
    x = np.random.default_rng(0).normal(size=(40000, 1))
    for mu in (0.0, 0.2, 0.4):
        assert importance_mean_shift(x, mu * x[:, 0] - mu**2 / 2) == pytest.approx(mu, abs=0.03)
    two = np.column_stack([x[:, 0], 3 * x[:, 0] + 1])  # the shift is scale-free: both components move 0.3 sd
    assert importance_mean_shift(two, 0.3 * x[:, 0]) == pytest.approx(0.3, abs=0.03)
