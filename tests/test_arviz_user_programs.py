"""ArviZ output for a user's own NumPyro program and for agents' states after a run (issue 21, items 3-4).

Oracles: a user's program shares site names with the package's (``theta`` (K,), ``psi`` (K, 2)) and
must keep ArviZ's default dims unless the user names them; a package program keeps its built-in
dims. An agent's final state from ``run_experiment(..., return_states=True)`` is checked against
the LinTS posterior written out in numpy from the frame's logged rounds (precision Λ₀ + Σ x xᵀ/σ²,
information Λ₀m₀ + Σ x r/σ²; the contexts are recovered from the logged expected rewards of an
environment with a fixed, known θ), and ``policy_to_arviz``'s chains against that posterior's mean
and sd.
"""

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd
import pytest

from structbandits.agents import lin_ts
from structbandits.agents.generic import numpyro_ts
from structbandits.diagnostics import policy_to_arviz, posterior_predictive_to_arviz, posterior_to_arviz, summary
from structbandits.envs import Environment
from structbandits.errors import ValidationError
from structbandits.experiments import run_experiment
from structbandits.inference.posterior import PosteriorResult
from structbandits.models.linear import linear_bandit

K = 3


def user_program(contexts=None, actions=None, rewards=None):
    """A user's program whose site names collide with built-in ones, at other shapes."""
    theta = numpyro.sample("theta", dist.Normal(jnp.zeros(K), 1.0).to_event(1))
    psi = numpyro.sample("psi", dist.Normal(jnp.zeros((K, 2)), 1.0).to_event(2))
    numpyro.sample("reward", dist.Normal(theta[actions] + psi[actions, 0] * contexts[..., 0], 1.0), obs=rewards)


def _user_result(model=user_program) -> PosteriorResult:
    rng = np.random.default_rng(0)
    return PosteriorResult("laplace", {"theta": rng.normal(size=(2, 30, K)), "psi": rng.normal(size=(2, 30, K, 2))},
                           model=model)


def _dims(idata, site, group="posterior"):
    return getattr(idata, group)[site].dims


def test_a_user_program_gets_default_dims_or_the_users():
    for result in (_user_result(), _user_result(functools.partial(user_program, contexts=None)), _user_result(None)):
        idata = posterior_to_arviz(result)
        assert _dims(idata, "theta") == ("chain", "draw", "theta_dim_0")  # not (action, feature)
        assert _dims(idata, "psi") == ("chain", "draw", "psi_dim_0", "psi_dim_1")  # not effect_feature
    # Not even where a user's site has a built-in name at the built-in rank (theta (K, d): action, feature).
    same_rank = PosteriorResult("laplace", {"theta": np.zeros((1, 5, K, 2))}, model=user_program)
    assert _dims(posterior_to_arviz(same_rank), "theta") == ("chain", "draw", "theta_dim_0", "theta_dim_1")
    idata = posterior_to_arviz(_user_result(), dims={"theta": ["arm"], "psi": ["arm", "term"]},
                               coords={"arm": ["a", "b", "c"], "term": ["slope", "other"]})
    assert _dims(idata, "psi") == ("chain", "draw", "arm", "term")
    assert list(idata.posterior["theta"].coords["arm"].values) == ["a", "b", "c"]
    np.testing.assert_array_equal(idata.posterior["psi"].sel(arm="b", term="other").values,
                                  _user_result().draws["psi"][:, :, 1, 1])
    # The posterior predictive of a user's program: default names for its reward too, unless named.
    data = {"contexts": jnp.ones((5, 1)), "actions": jnp.asarray([0, 1, 2, 0, 1]), "rewards": jnp.zeros(5)}
    predictive = posterior_predictive_to_arviz(_user_result(), user_program, data)
    assert _dims(predictive, "reward", "posterior_predictive") == ("chain", "draw", "reward_dim_0")
    assert _dims(predictive, "psi") == ("chain", "draw", "psi_dim_0", "psi_dim_1")
    named = posterior_predictive_to_arviz(_user_result(), user_program, data, dims={"reward": ["trial"]})
    assert _dims(named, "reward", "observed_data") == ("trial",)


def test_a_package_program_keeps_its_builtin_dims_and_user_dims_override_them():
    draws = {"theta": np.random.default_rng(1).normal(size=(1, 20, K, 2))}
    for model in (linear_bandit, functools.partial(linear_bandit, noise_scale=1.0)):
        assert _dims(posterior_to_arviz(PosteriorResult("conjugate", draws, model=model)), "theta") == (
            "chain", "draw", "action", "feature")
    renamed = posterior_to_arviz(PosteriorResult("conjugate", draws, model=linear_bandit),
                                 dims={"theta": ["arm", "coefficient"]}, coords={"coefficient": ["intercept", "slope"]})
    assert _dims(renamed, "theta") == ("chain", "draw", "arm", "coefficient")
    assert list(renamed.posterior.coords["coefficient"].values) == ["intercept", "slope"]


def test_bad_dims_and_coords_name_the_argument_and_the_site_shape():
    result = _user_result()
    with pytest.raises(ValidationError, match=r"dims\['thta'\]: no site 'thta'.*theta \(3,\), psi \(3, 2\)"):
        posterior_to_arviz(result, dims={"thta": ["arm"]})
    with pytest.raises(ValidationError, match=r"dims\['psi'\]: site 'psi' has shape \(3, 2\).*expected 2 dimension "
                                              r"names, got 1"):
        posterior_to_arviz(result, dims={"psi": ["arm"]})
    with pytest.raises(ValidationError, match=r"dims\['psi'\]: dimension 'arm' has size 2 in site 'psi' \(3, 2\) but 3"):
        posterior_to_arviz(result, dims={"theta": ["arm"], "psi": ["term", "arm"]})
    with pytest.raises(ValidationError, match=r"coords\['arm'\]: dimension 'arm' has size 3 .*got 2 labels"):
        posterior_to_arviz(result, dims={"theta": ["arm"]}, coords={"arm": ["a", "b"]})


def test_an_mcmc_result_of_a_user_program_keeps_its_sample_stats_and_names_observed_sites():
    from numpyro.infer import MCMC, SA

    data = {"contexts": jnp.ones((8, 1)), "actions": jnp.arange(8) % K, "rewards": jnp.linspace(-1.0, 1.0, 8)}
    # The MCMC path of posterior_to_arviz (ArviZ's from_numpyro), with the cheapest sampler to compile.
    mcmc = MCMC(SA(user_program, adapt_state_size=4), num_warmup=2, num_samples=5, progress_bar=False)
    mcmc.run(jax.random.PRNGKey(0), **data)
    draws = {name: np.asarray(value) for name, value in mcmc.get_samples(group_by_chain=True).items()}
    result = PosteriorResult("nuts", draws, mcmc=mcmc, model=user_program)
    idata = posterior_to_arviz(result)
    assert "sample_stats" in idata.groups()
    assert _dims(idata, "theta") == ("chain", "draw", "theta_dim_0")
    assert _dims(idata, "psi") == ("chain", "draw", "psi_dim_0", "psi_dim_1")
    named = posterior_to_arviz(result, dims={"theta": ["arm"], "reward": ["trial"]}, coords={"arm": ["a", "b", "c"]})
    assert _dims(named, "theta") == ("chain", "draw", "arm")
    assert _dims(named, "reward", "observed_data") == ("trial",)
    with pytest.raises(ValidationError, match=r"dims\['reward'\]: site 'reward' has shape \(8,\)"):
        posterior_to_arviz(result, dims={"reward": ["trial", "extra"]})


# ---- agents' final states from the runner, and their posteriors as ArviZ chains -----------------

THETA = np.array([[0.2, 1.0], [-0.3, -1.5], [0.5, 0.7]])  # fixed truth; θ[a, 1] ≠ 0 recovers x_t = (1, u_t)
NOISE = 0.5
PRIOR_MEAN, PRIOR_COV = np.array([0.1, -0.2]), np.array([[2.0, 0.3], [0.3, 1.0]])
ENV = Environment(
    num_actions=K,
    context_shape=(2,),
    init=lambda key: jnp.asarray(THETA),
    context=lambda state, key: jnp.asarray([1.0, 0.0]) + jnp.asarray([0.0, 1.0]) * jax.random.normal(key),
    mean_rewards=lambda state, context: state @ context,
    reward=lambda state, key, context, action: state[action] @ context + NOISE * jax.random.normal(key),
)
AGENT = lin_ts(PRIOR_MEAN, PRIOR_COV, NOISE, num_actions=K)


def _oracle_posterior(rounds: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per-arm precision (K, 2, 2) and information (K, 2) from one seed's logged rounds, in numpy."""
    actions = rounds["action"].to_numpy()
    u = (rounds["expected_reward"].to_numpy() - THETA[actions, 0]) / THETA[actions, 1]
    x = np.stack([np.ones_like(u), u], axis=1)
    prior_precision = np.linalg.inv(PRIOR_COV)
    precision = np.stack([prior_precision + x[actions == k].T @ x[actions == k] / NOISE**2 for k in range(K)])
    info = np.stack([prior_precision @ PRIOR_MEAN + x[actions == k].T @ rounds["reward"].to_numpy()[actions == k]
                     / NOISE**2 for k in range(K)])
    return precision, info


@pytest.fixture(scope="module")
def run():
    options = dict(horizon=25, num_seeds=4, seed=5, seed_batch=2, progress=False)  # two batches of two seeds
    frame, states = run_experiment({"lints": AGENT}, {"fixed": ENV}, return_states=True, **options)
    return frame, states[("fixed", "lints")], run_experiment({"lints": AGENT}, {"fixed": ENV}, **options)


def test_return_states_gives_every_seeds_final_state_and_the_same_records(run):
    frame, states, plain = run
    pd.testing.assert_frame_equal(frame, plain)  # the records do not depend on return_states
    assert all(leaf.shape[0] == 4 for leaf in jax.tree.leaves(states))
    for seed in range(4):
        precision, info = _oracle_posterior(frame[frame.seed == seed].sort_values("round"))
        chol = np.asarray(states.posterior.precision_chol[seed])
        np.testing.assert_allclose(chol @ np.swapaxes(chol, -1, -2), precision, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(np.asarray(states.posterior.info[seed]), info, rtol=1e-9, atol=1e-9)


def test_policy_to_arviz_gives_independent_chains_of_the_closed_form_posterior(run):
    frame, states, _ = run
    seed = 2  # from the second seed batch
    state = jax.tree.map(lambda leaf: leaf[seed], states)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        idata = policy_to_arviz(AGENT, state, key=jax.random.PRNGKey(1))
        table = summary(idata)
    assert not [w for w in caught if "chain" in str(w.message)]  # no "more chains than draws" warning
    assert _dims(idata, "theta") == ("chain", "draw", "action", "feature")
    assert idata.posterior["theta"].shape == (4, 1000, K, 2)
    assert table["r_hat"].between(0.99, 1.02).all() and (table["ess_bulk"] > 2000).all()
    precision, info = _oracle_posterior(frame[frame.seed == seed])
    mean = np.linalg.solve(precision, info[..., None])[..., 0]
    sd = np.sqrt(np.diagonal(np.linalg.inv(precision), axis1=-2, axis2=-1))
    theta = idata.posterior["theta"].values.reshape(-1, K, 2)
    np.testing.assert_array_less(np.abs(theta.mean(0) - mean), 5 * sd / np.sqrt(4000))
    np.testing.assert_allclose(theta.std(0), sd, rtol=0.1)


def test_numpyro_ts_draws_the_users_sites_without_builtin_dims():
    policy = numpyro_ts(user_program, num_actions=K, example_context=jnp.zeros(1), history_size=5, laplace_steps=5)
    # A state of the right type and shapes is enough: only the names are checked (a refit compiles for long).
    state = jax.tree.map(lambda leaf: jnp.zeros(leaf.shape, leaf.dtype), jax.eval_shape(policy.init, jax.random.PRNGKey(0)))
    idata = policy_to_arviz(policy, state, num_draws=5, num_chains=2)
    assert _dims(idata, "psi") == ("chain", "draw", "psi_dim_0", "psi_dim_1")  # not AGENT_DIMS' effect, feature
    assert _dims(idata, "theta") == ("chain", "draw", "theta_dim_0")
    named = policy_to_arviz(policy, state, num_draws=5, num_chains=2, dims={"psi": ["arm", "term"]})
    assert _dims(named, "psi") == ("chain", "draw", "arm", "term")
