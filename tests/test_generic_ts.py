"""The generic NumPyro Thompson sampler: exact on a conjugate program, learns on a hierarchical one."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pytest

from structbandits.agents import lin_ts, numpyro_ts, uniform_random
from structbandits.agents.generic import program_data
from structbandits.envs import random_effects_bandit
from structbandits.errors import ValidationError
from structbandits.experiments import run_experiment
from structbandits.models import linear_bandit, random_intercept_logistic

K, D, NOISE = 3, 2, 0.5


def linear_data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return (jnp.asarray(rng.uniform(-1, 1, (n, D))), jnp.asarray(rng.integers(0, K, n)), jnp.asarray(rng.normal(size=n)))


def feed(policy, state, contexts, actions, rewards):
    def step(s, data):
        return policy.update(s, *data), None

    return jax.jit(lambda s: jax.lax.scan(step, s, (contexts, actions, rewards))[0])(state)


def test_laplace_refit_is_exact_on_the_conjugate_program():
    prior_mean, prior_cov = jnp.zeros((K, D)), jnp.broadcast_to(jnp.eye(D), (K, D, D))
    model = functools.partial(linear_bandit, prior_mean, prior_cov, NOISE)
    policy = numpyro_ts(model, num_actions=K, example_context=jnp.zeros(D), history_size=40, refit_every=8)
    contexts, actions, rewards = linear_data()
    state = feed(policy, policy.init(jax.random.PRNGKey(0)), contexts, actions, rewards)
    closed = lin_ts(prior_mean, prior_cov, NOISE)
    exact = feed(closed, closed.init(jax.random.PRNGKey(0)), contexts, actions, rewards)
    # A Gaussian posterior is its own Laplace approximation: the refit's mode and precision are exact.
    mean = jax.vmap(lambda g: jax.scipy.linalg.cho_solve((g[0], True), g[1]))(tuple(exact.posterior))
    np.testing.assert_allclose(np.asarray(state.laplace.mode).reshape(K, D), mean, atol=1e-6)
    precision = np.asarray(state.laplace.precision_chol @ state.laplace.precision_chol.T)
    blocks = np.asarray(exact.posterior.precision_chol @ jnp.swapaxes(exact.posterior.precision_chol, 1, 2))
    for arm in range(K):
        np.testing.assert_allclose(precision[arm * D:(arm + 1) * D, arm * D:(arm + 1) * D], blocks[arm], rtol=1e-6)


def test_refits_happen_every_m_rounds_and_the_window_slides():
    model = functools.partial(linear_bandit, jnp.zeros((K, D)), jnp.broadcast_to(jnp.eye(D), (K, D, D)), NOISE)
    policy = numpyro_ts(model, num_actions=K, example_context=jnp.zeros(D), history_size=10, refit_every=7)
    contexts, actions, rewards = linear_data(13)
    state = policy.init(jax.random.PRNGKey(0))
    after_six = feed(policy, state, contexts[:6], actions[:6], rewards[:6])
    np.testing.assert_array_equal(after_six.laplace.mode, state.laplace.mode)  # no refit before the 7th observation
    after_seven = feed(policy, after_six, contexts[6:7], actions[6:7], rewards[6:7])
    assert not np.allclose(after_seven.laplace.mode, state.laplace.mode)
    full = feed(policy, after_seven, contexts[7:], actions[7:], rewards[7:])
    data = program_data(full.history)
    assert int(full.history.count) == 13 and int(data["mask"].sum()) == 10
    np.testing.assert_array_equal(np.sort(data["rewards"]), np.sort(rewards[3:]))


def test_laplace_refit_is_numpyros_laplace_on_the_hierarchical_program():
    """Independent answers: the mode by SciPy's BFGS on NumPyro's own potential energy, the precision
    from NumPyro's ``AutoLaplaceApproximation`` at that mode; compared as matrices, not by draws."""
    from jax.flatten_util import ravel_pytree
    from numpyro.infer import SVI, Trace_ELBO
    from numpyro.infer.autoguide import AutoLaplaceApproximation
    from numpyro.infer.util import initialize_model, potential_energy
    from scipy.optimize import minimize

    env = random_effects_bandit(3, 6, 2)
    truth = env.init(jax.random.PRNGKey(0))
    rng = np.random.default_rng(1)
    n = 120
    contexts = {"user": jnp.asarray(rng.integers(0, 6, n)), "features": jnp.asarray(rng.uniform(-1, 1, (n, 2)))}
    actions = jnp.asarray(rng.integers(0, 3, n))
    logits = jnp.sum(contexts["features"] * truth.theta[actions], -1) + truth.user_effect[contexts["user"]]
    rewards = jax.random.bernoulli(jax.random.PRNGKey(2), jax.nn.sigmoid(logits)).astype(jnp.float64)
    model = functools.partial(random_intercept_logistic, **env.model.params)
    policy = numpyro_ts(model, num_actions=3, example_context={"user": jnp.asarray(0), "features": jnp.zeros(2)},
                        history_size=n, refit_every=n, laplace_steps=200)
    state = feed(policy, policy.init(jax.random.PRNGKey(0)), contexts, actions, rewards)
    assert bool(state.laplace.diagnostics.converged) and int(state.failed_refits) == 0

    data = dict(contexts=contexts, actions=actions, rewards=rewards)
    sites = initialize_model(jax.random.PRNGKey(0), model, model_kwargs=data).param_info.z
    _, unravel = ravel_pytree(sites)
    # The guide packs the latent sites in the program's order, ravel_pytree in sorted order: a permutation.
    positions = unravel(jnp.arange(state.laplace.mode.shape[0], dtype=jnp.float64))
    order = np.concatenate([np.ravel(positions[name]) for name in sites]).astype(int)
    energy = jax.jit(lambda z: potential_energy(model, (), data, unravel(z)))
    best = minimize(lambda z: float(energy(z)), np.zeros(state.laplace.mode.shape[0]),
                    jac=lambda z: np.asarray(jax.grad(energy)(z)), method="BFGS", options={"gtol": 1e-9})
    np.testing.assert_allclose(np.asarray(state.laplace.mode), best.x, atol=1e-5)

    guide = AutoLaplaceApproximation(model)
    svi = SVI(model, guide, numpyro.optim.Adam(1e-3), Trace_ELBO())
    params = svi.get_params(svi.init(jax.random.PRNGKey(0), **data)) | {"auto_loc": jnp.asarray(best.x[order])}
    scale_tril = np.asarray(guide.get_transform(params).scale_tril)
    reference_precision = np.linalg.inv(scale_tril @ scale_tril.T)
    ours = np.asarray(state.laplace.precision_chol @ state.laplace.precision_chol.T)[np.ix_(order, order)]
    np.testing.assert_allclose(ours, reference_precision, rtol=1e-5, atol=1e-6 * np.abs(reference_precision).max())


def test_generic_sampler_learns_on_the_hierarchical_bandit():
    env = random_effects_bandit(4, 10, 2)
    model = functools.partial(random_intercept_logistic, **env.model.params)
    example = {"user": jnp.asarray(0), "features": jnp.zeros(2)}
    agents = {"generic": numpyro_ts(model, num_actions=4, example_context=example, history_size=150, refit_every=10,
                                    propensity_draws=8),
              "random": uniform_random(4)}
    results = run_experiment(agents, env, horizon=150, num_seeds=4, seed=0, progress=False)
    final = results[results["round"] == 149].groupby("agent")["cumulative_regret"].mean()
    assert final["generic"] < 0.7 * final["random"]
    propensity = results.loc[results["agent"] == "generic", "propensity"]
    assert propensity.between(0, 1).all()


def test_bad_programs_and_arguments_are_rejected():
    model = functools.partial(linear_bandit, jnp.zeros((K, D)), jnp.broadcast_to(jnp.eye(D), (K, D, D)), NOISE)
    with pytest.raises(ValidationError, match="method: expected one of laplace, nuts, got 'vi'"):
        numpyro_ts(model, num_actions=K, example_context=jnp.zeros(D), history_size=5, method="vi")
    with pytest.raises(ValidationError, match="model: expected a NumPyro program .* observed site 'y'"):
        numpyro_ts(model, num_actions=K, example_context=jnp.zeros(D), history_size=5, reward_site="y")
    with pytest.raises(ValidationError, match="refit_every: expected an integer >= 1"):
        numpyro_ts(model, num_actions=K, example_context=jnp.zeros(D), history_size=5, refit_every=0)
    with pytest.raises(ValidationError, match="example_context: per_arm_context needs a leading axis of 3 arms"):
        numpyro_ts(model, num_actions=K, example_context=jnp.zeros(D), history_size=5, per_arm_context=True)
