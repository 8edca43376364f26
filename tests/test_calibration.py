"""Simulation-based calibration of every closed-form posterior, and a negative control showing the
test fails for a posterior that is wrong (variance doubled).

Prior draws and data come from the NumPyro programs (``linear_bandit``, ``mixed_effect_linear``,
``treatment_stage``, ``restless_dirichlet``) or, for the Normal-Inverse-Gamma, from numpyro distributions directly, never
from the samplers under test. The posteriors are the ones the agents run: the states after their
sequential updates (``lax.scan``), sampled by their own draw functions.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

from structbandits import ValidationError
from structbandits.agents import lin_ts, mets
from structbandits.diagnostics import program_simulator, simulation_based_calibration
from structbandits.inference.nig import nig_observe, nig_prior, nig_sample, nig_sample_mean
from structbandits.inference.niw import niw_observe, niw_prior, niw_sample, niw_sample_mean
from structbandits.models import linear_bandit, mixed_effect_linear
from structbandits.models.mediated import treatment_stage

R, N = 1000, 99  # replications and posterior draws (ranks 0..99, ten bins of ten)
KEY = jax.random.PRNGKey(2026)
DESIGN = np.random.default_rng(0)


def scan_updates(policy, contexts, actions):
    """posterior_draws(key, data, n) of a policy after its sequential updates on the data."""

    def draws(key, data, num_draws):
        def step(state, round_data):
            x, a, y = round_data
            return policy.update(state, x, a, y), None

        state, _ = jax.lax.scan(step, policy.init(key), (contexts, actions, data["rewards"]))
        return policy.posterior_draws(state, key, num_draws)

    return draws


def lints_case():
    k, d, n, noise = 2, 2, 12, 0.7
    prior_mean = DESIGN.normal(size=(k, d))
    prior_cov = np.stack([np.eye(d), [[1.0, 0.4], [0.4, 0.6]]])
    contexts = jnp.asarray(DESIGN.normal(size=(n, d)))
    actions = jnp.asarray(DESIGN.integers(0, k, n))
    simulate = program_simulator(linear_bandit, ["theta"], "reward", "rewards", prior_mean=jnp.asarray(prior_mean),
                                 prior_cov=jnp.asarray(prior_cov), noise_scale=noise, contexts=contexts, actions=actions)
    return simulate, scan_updates(lin_ts(prior_mean, prior_cov, noise), contexts, actions)


def test_lints_conjugate_gaussian_is_calibrated():
    result = simulation_based_calibration(*lints_case(), KEY, num_replications=R, num_draws=N)
    assert result.passed, str(result)
    assert result.components == ["theta[0, 0]", "theta[0, 1]", "theta[1, 0]", "theta[1, 1]"]


@pytest.mark.slow  # a fresh process / a second compile: about 10-20 s idle
def test_negative_control_a_posterior_with_doubled_variance_fails():
    simulate, draws = lints_case()

    def too_wide(key, data, num_draws):
        theta = draws(key, data, num_draws)["theta"]
        centre = theta.mean(axis=0)
        return {"theta": centre + jnp.sqrt(2.0) * (theta - centre)}

    result = simulation_based_calibration(simulate, too_wide, KEY, num_replications=R, num_draws=N)
    assert not result.passed
    assert result.p_values.max() < 1e-6, str(result)  # every component fails, not just one
    ranks = result.ranks / N  # a too-wide posterior piles the ranks in the middle
    assert np.mean(np.abs(ranks - 0.5) < 0.25) > 0.6


@pytest.mark.slow  # about 10 s of compilation on an idle 2-core machine
def test_mets_effect_and_action_posteriors_are_calibrated():
    k, num_effects, d, n, noise = 4, 2, 2, 16, 0.8
    mixing = DESIGN.uniform(-1, 1, (k, num_effects))
    effect_mean = DESIGN.normal(size=(num_effects, d))
    effect_cov = 2.0 * np.eye(num_effects * d) + 0.3
    action_cov = np.broadcast_to(0.5 * np.eye(d), (k, d, d)).copy()
    contexts = jnp.asarray(DESIGN.normal(size=(n, k, d)))  # per-arm contexts, as the agent sees them
    actions = jnp.asarray(DESIGN.integers(0, k, n))
    pulled = contexts[jnp.arange(n), actions]  # the program's (n, d) contexts of the pulled arms
    simulate = program_simulator(mixed_effect_linear, ["psi", "theta"], "reward", "rewards",
                                 mixing=jnp.asarray(mixing), effect_mean=jnp.asarray(effect_mean),
                                 effect_cov=jnp.asarray(effect_cov), action_cov=jnp.asarray(action_cov),
                                 noise_scale=noise, contexts=pulled, actions=actions)
    agent_draws = scan_updates(mets(mixing, effect_mean, effect_cov, action_cov, noise), contexts, actions)

    def draws(key, data, num_draws):
        out = agent_draws(key, data, num_draws)
        return {"psi": out["psi"].reshape(num_draws, -1), "theta": out["theta"]}  # vec order of the program

    result = simulation_based_calibration(simulate, draws, KEY, num_replications=R, num_draws=N)
    assert result.passed, str(result)
    assert len(result.components) == num_effects * d + k * d


@pytest.mark.slow  # about 10 s of compilation on an idle 2-core machine
def test_normal_inverse_wishart_posterior_is_calibrated():
    d, n = 2, 6
    mean0, kappa0, psi0, nu0 = jnp.array([1.0, -1.0]), 2.0, jnp.array([[1.0, 0.3], [0.3, 0.5]]), 5.0
    program = program_simulator(treatment_stage, ["mean", "cov"], "treatment", "treatments", mean0=mean0,
                                kappa0=kappa0, psi0=psi0, nu0=nu0, num_cells=1, cells=jnp.zeros(n, dtype=jnp.int32))

    def simulate(key):
        truth, data = program(key)
        mean, cov = truth["mean"][0], truth["cov"][0]
        lower = jnp.tril_indices(d)
        return {"mean": mean, "mean_marginal": mean, "cov": cov[lower]}, data

    def draws(key, data, num_draws):
        posterior, _ = jax.lax.scan(lambda p, z: (niw_observe(p, z), None), niw_prior(mean0, kappa0, psi0, nu0),
                                    data["treatments"])
        joint_key, marginal_key = jax.random.split(key)
        mean, root = niw_sample(posterior, joint_key, (num_draws,))
        cov = root @ jnp.swapaxes(root, -1, -2)
        return {"mean": mean, "mean_marginal": niw_sample_mean(posterior, marginal_key, (num_draws,)),
                "cov": cov[:, *jnp.tril_indices(d)]}

    result = simulation_based_calibration(simulate, draws, KEY, num_replications=R, num_draws=N)
    assert result.passed, str(result)


@pytest.mark.slow  # about 10 s of compilation on an idle 2-core machine
def test_normal_inverse_gamma_posterior_is_calibrated():
    m0, kappa0, alpha0, beta0, n = 77.0, 5.0, 3.0, 10.0, 5

    def simulate(key):
        var_key, mean_key, data_key = jax.random.split(key, 3)
        var = dist.InverseGamma(alpha0, beta0).sample(var_key)
        mean = dist.Normal(m0, jnp.sqrt(var / kappa0)).sample(mean_key)
        ys = dist.Normal(mean, jnp.sqrt(var)).sample(data_key, (n,))
        return {"mean": mean, "mean_marginal": mean, "var": var}, ys

    def draws(key, ys, num_draws):
        posterior, _ = jax.lax.scan(lambda p, y: (nig_observe(p, y), None), nig_prior(m0, kappa0, alpha0, beta0), ys)
        joint_key, marginal_key = jax.random.split(key)
        mean, var = nig_sample(posterior, joint_key, (num_draws,))
        return {"mean": mean, "mean_marginal": nig_sample_mean(posterior, marginal_key, (num_draws,)), "var": var}

    result = simulation_based_calibration(simulate, draws, KEY, num_replications=R, num_draws=N)
    assert result.passed, str(result)


def test_bad_settings_are_rejected():
    simulate, draws = lints_case()
    with pytest.raises(ValidationError, match="num_bins: expected a divisor of num_draws \\+ 1 = 100, got 7"):
        simulation_based_calibration(simulate, draws, num_draws=99, num_bins=7)
    with pytest.raises(ValidationError, match="num_replications: expected an integer >= 1"):
        simulation_based_calibration(simulate, draws, num_replications=0)
    with pytest.raises(ValidationError, match="'beta' is not a site of linear_bandit"):
        simulation_based_calibration(program_simulator(linear_bandit, ["beta"], "reward", "rewards",
                                                       prior_mean=jnp.zeros((1, 1)), prior_cov=jnp.eye(1)[None],
                                                       noise_scale=1.0, contexts=jnp.ones((2, 1)),
                                                       actions=jnp.zeros(2, int)), draws, num_replications=2)


@pytest.mark.slow  # about 10 s of compilation on an idle 2-core machine
def test_dirichlet_transition_posterior_is_calibrated():
    from structbandits.inference.dirichlet import dirichlet_sample, transition_counts
    from structbandits.models.restless import restless_dirichlet

    shape, n = (2, 3, 2, 3), 30
    concentration = jnp.asarray(DESIGN.uniform(0.5, 2.0, shape))
    arms, states, actions = (jnp.asarray(DESIGN.integers(0, high, n)) for high in shape[:3])
    simulate = program_simulator(restless_dirichlet, ["transitions"], "next_state", "next_states",
                                 concentration=concentration, arms=arms, states=states, actions=actions)

    def draws(key, data, num_draws):
        counts = transition_counts(arms, states, actions, data["next_states"], shape)
        return {"transitions": dirichlet_sample(key, concentration + counts, (num_draws,))}

    result = simulation_based_calibration(simulate, draws, KEY, num_replications=R, num_draws=N)
    assert result.passed, str(result)
    assert len(result.components) == int(np.prod(shape))
