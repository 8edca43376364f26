"""The generic NumPyro Thompson sampler: exact on a conjugate program (against the textbook posterior in
NumPy), NumPyro's own Laplace on a hierarchical one, and it learns there."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pytest

from structbandits.agents import numpyro_ts, uniform_random
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


def gaussian_posterior(contexts, actions, rewards):
    """The textbook posterior of ``linear_bandit`` with N(0, I) priors, in NumPy: per arm Λ = I + XᵀX/σ²,
    m = Λ⁻¹Xᵀy/σ²; returns the means (K, D) and the block-diagonal precision (K·D, K·D)."""
    contexts, actions, rewards = (np.asarray(v) for v in (contexts, actions, rewards))
    means, precision = np.zeros((K, D)), np.zeros((K * D, K * D))
    for arm in range(K):
        x, y = contexts[actions == arm], rewards[actions == arm]
        block = np.eye(D) + x.T @ x / NOISE**2
        means[arm] = np.linalg.solve(block, x.T @ y / NOISE**2)
        precision[arm * D:(arm + 1) * D, arm * D:(arm + 1) * D] = block
    return means, precision


def test_refits_every_m_rounds_on_the_sliding_window_are_exact_on_the_conjugate_program():
    # One program, one scan of 14 rounds (history 10, refits after the 7th and the 14th observation),
    # recording the Laplace fit after every round. A Gaussian posterior is its own Laplace approximation:
    # each refit's mode and precision are exactly the posterior given the rounds in the window.
    model = functools.partial(linear_bandit, jnp.zeros((K, D)), jnp.broadcast_to(jnp.eye(D), (K, D, D)), NOISE)
    policy = numpyro_ts(model, num_actions=K, example_context=jnp.zeros(D), history_size=10, refit_every=7)
    contexts, actions, rewards = linear_data(14)
    state = policy.init(jax.random.PRNGKey(0))

    def step(s, data):
        s = policy.update(s, *data)
        return s, (s.laplace.mode, s.laplace.precision_chol)

    full, (modes, chols) = jax.jit(lambda s: jax.lax.scan(step, s, (contexts, actions, rewards)))(state)
    prior_mean, _ = gaussian_posterior(contexts[:0], actions[:0], rewards[:0])
    np.testing.assert_allclose(np.asarray(state.laplace.mode).reshape(K, D), prior_mean, atol=1e-6)  # the prior's fit
    for after in range(6):  # no refit before the 7th observation
        np.testing.assert_array_equal(modes[after], state.laplace.mode)
    np.testing.assert_array_equal(modes[7:13], np.broadcast_to(modes[6], modes[7:13].shape))  # none until the 14th
    data = program_data(full.history)
    assert int(full.history.count) == 14 and int(data["mask"].sum()) == 10
    np.testing.assert_array_equal(np.sort(data["rewards"]), np.sort(rewards[4:]))
    for refit, window in ((6, slice(0, 7)), (13, slice(4, 14))):  # the 14th: rounds 4..13, the window's 10
        means, precision = gaussian_posterior(contexts[window], actions[window], rewards[window])
        np.testing.assert_allclose(np.asarray(modes[refit]).reshape(K, D), means, atol=1e-6)
        np.testing.assert_allclose(np.asarray(chols[refit] @ chols[refit].T), precision, rtol=1e-6, atol=1e-9)


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
