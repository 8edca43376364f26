"""Posterior trajectories over rounds: the oracle is the batch closed form on the same data.

On a linear bandit LinTS's posterior after t rounds is the conjugate posterior of ``linear_bandit``
given those t rounds, so the trajectory's final mean must equal ``posterior(linear_bandit, data)``'s
exact mean (within the Monte-Carlo error of the recorded draws), and its sds must shrink.
"""

import warnings

import jax.numpy as jnp
import numpy as np
import pytest

from structbandits.agents import lin_ts, uniform_random
from structbandits.diagnostics import plot_posterior_trajectory, posterior_trajectory
from structbandits.envs import Environment, linear_contextual_bandit
from structbandits.envs.synthetic import LinearBanditState
from structbandits.errors import ValidationError
from structbandits.experiments import run_experiment
from structbandits.inference import posterior
from structbandits.models import linear_bandit

K, D, NOISE, HORIZON, EVERY, DRAWS = 3, 2, 0.5, 120, 20, 4000


@pytest.fixture(scope="module")
def setup():
    env = linear_contextual_bandit(num_actions=K, num_features=D, noise_scale=NOISE)
    policy = lin_ts(jnp.zeros(D), jnp.eye(D), NOISE, num_actions=K)
    return env, policy, posterior_trajectory(policy, env, horizon=HORIZON, every=EVERY, seed=3, num_draws=DRAWS)


def test_final_mean_is_the_batch_posterior_and_sds_shrink(setup):
    env, policy, trajectory = setup
    frame, history = trajectory.frame, trajectory.history
    assert list(frame["round"].unique()) == list(range(0, HORIZON + 1, EVERY))
    assert len(frame) == (HORIZON // EVERY + 1) * K * D and set(frame["site"]) == {"theta"}
    data = {"prior_mean": jnp.zeros((K, D)), "prior_cov": jnp.broadcast_to(jnp.eye(D), (K, D, D)),
            "noise_scale": NOISE, "contexts": history["contexts"], "actions": history["actions"],
            "rewards": history["rewards"]}
    exact_mean, exact_cov = posterior(linear_bandit, data, num_draws=2).moments["theta"]
    final = frame[frame["round"] == HORIZON]
    exact_sd = np.sqrt(np.diagonal(exact_cov, axis1=1, axis2=2)).reshape(-1)
    np.testing.assert_allclose(final["mean"], exact_mean.reshape(-1), atol=5 * exact_sd.max() / np.sqrt(DRAWS))
    np.testing.assert_allclose(final["sd"], exact_sd, rtol=0.06)
    prior = frame[frame["round"] == 0]
    np.testing.assert_allclose(prior["sd"], 1.0, rtol=0.06)  # N(0, I) prior
    # Every pulled arm's sd contracts; the mean sd over components never grows beyond MC error.
    pulled = np.bincount(history["actions"], minlength=K)
    shrunk = final["sd"].to_numpy().reshape(K, D) < prior["sd"].to_numpy().reshape(K, D)
    assert shrunk[pulled > 2].all()
    mean_sd = frame.groupby("round")["sd"].mean().to_numpy()
    assert (np.diff(mean_sd) < 0.05 * mean_sd[:-1]).all() and mean_sd[-1] < 0.6 * mean_sd[0]
    # The truth column is the environment's ground truth, the seed's theta.
    np.testing.assert_allclose(final["truth"], np.asarray(trajectory.env_state.theta).reshape(-1))


def test_the_trajectory_is_the_runners_simulation_of_that_seed(setup):
    env, policy, trajectory = setup
    results = run_experiment({"lints": policy}, env, horizon=HORIZON, num_seeds=1, seed=3, progress=False)
    np.testing.assert_array_equal(results["action"].to_numpy(), trajectory.history["actions"])
    np.testing.assert_allclose(results["reward"].to_numpy(), trajectory.history["rewards"])
    np.testing.assert_allclose(results["expected_regret"].to_numpy(), trajectory.history["expected_regret"])


def test_plot_and_validation(setup, tmp_path):
    env, policy, trajectory = setup
    path = plot_posterior_trajectory(trajectory, tmp_path / "trajectory.png", title="LinTS")
    assert path.stat().st_size > 5000 and path.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValidationError, match="components"):
        plot_posterior_trajectory(trajectory, tmp_path / "x.png", components=["beta[0]"])
    with pytest.raises(ValidationError, match="every: expected a divisor"):
        posterior_trajectory(policy, env, horizon=50, every=20)
    with pytest.raises(ValidationError, match="sites"):
        posterior_trajectory(policy, env, horizon=20, every=20, sites=["psi"])
    with pytest.raises(ValidationError, match="posterior_draws"):
        posterior_trajectory(uniform_random(K), env, horizon=20, every=20)
    moving = env._replace(transition=lambda state, key, context, action: state)
    with pytest.raises(ValidationError, match="env: expected a stationary environment"):
        posterior_trajectory(policy, moving, horizon=20, every=20)


def _dict_state_env(env, layout):
    """``env`` with its ground truth kept in a dict: ``layout`` maps each key to a function of θ (K, d)."""
    def unwrap(state):
        return LinearBanditState(state["weights"] if "weights" in state else state["theta"])

    return Environment(env.num_actions, env.context_shape, lambda key: {name: f(env.init(key).theta) for name, f in layout.items()},
                       lambda state, key: env.context(unwrap(state), key),
                       lambda state, context: env.mean_rewards(unwrap(state), context),
                       lambda state, key, context, action: env.reward(unwrap(state), key, context, action))


def test_truth_is_found_in_a_dict_environment_state(setup):
    env, policy, trajectory = setup
    dict_env = _dict_state_env(env, {"theta": lambda theta: theta, "scale": lambda theta: theta[0, 0]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # truth found: nothing to warn about
        short = posterior_trajectory(policy, dict_env, horizon=EVERY, every=EVERY, seed=3, num_draws=50)
    assert short.truth_notes == {}
    # Same seed, same ground truth as the NamedTuple environment of the fixture, at every checkpoint.
    expected = np.asarray(trajectory.env_state.theta).reshape(-1)
    for _, rows in short.frame.groupby("round"):
        np.testing.assert_array_equal(rows["truth"], expected)
    np.testing.assert_array_equal(short.history["actions"], trajectory.history["actions"][:EVERY])


def test_missing_or_misshapen_truth_is_nan_with_the_reason(setup):
    env, policy, _ = setup
    dict_env = _dict_state_env(env, {"weights": lambda theta: theta, "flat": lambda theta: theta.reshape(-1)})
    with pytest.warns(UserWarning, match=r"site 'theta': the environment state has no 'theta': it is a dict with keys "
                                         r"'flat' \(6,\), 'weights' \(3, 2\)"):
        missing = posterior_trajectory(policy, dict_env, horizon=EVERY, every=EVERY, seed=3, num_draws=50)
    assert np.isnan(missing.frame["truth"]).all() and set(missing.truth_notes) == {"theta"}
    with pytest.raises(ValidationError, match=r"truth\['theta'\]: expected shape \(3, 2\), got \(6,\)"):
        posterior_trajectory(policy, dict_env, horizon=EVERY, every=EVERY, seed=3, num_draws=50,
                             truth=lambda state: {"theta": state["flat"]})
    with pytest.warns(UserWarning, match=r"truth has no key 'theta' \(it has \['psi'\]\)"):
        posterior_trajectory(policy, dict_env, horizon=EVERY, every=EVERY, seed=3, num_draws=50, truth={"psi": 0.0})
    # A truth in the site's layout, handed over explicitly, is used as is.
    explicit = posterior_trajectory(policy, dict_env, horizon=EVERY, every=EVERY, seed=3, num_draws=50,
                                    truth=lambda state: {"theta": state["flat"].reshape(K, D)})
    np.testing.assert_array_equal(explicit.frame["truth"], np.tile(np.asarray(missing.env_state["weights"]).reshape(-1), 2))
    # A field of the site's name but another shape is not taken for the truth (no silent reshape).
    flat_env = _dict_state_env(env, {"weights": lambda theta: theta, "theta": lambda theta: theta.reshape(-1)})
    with pytest.warns(UserWarning, match=r"the environment state's 'theta' has shape \(6,\), the posterior site has \(3, 2\)"):
        misshapen = posterior_trajectory(policy, flat_env, horizon=EVERY, every=EVERY, seed=3, num_draws=50)
    assert np.isnan(misshapen.frame["truth"]).all() and "shape (6,)" in misshapen.truth_notes["theta"]
