"""Posterior trajectories over rounds: the oracle is the batch closed form on the same data.

On a linear bandit LinTS's posterior after t rounds is the conjugate posterior of ``linear_bandit``
given those t rounds, so the trajectory's final mean must equal ``posterior(linear_bandit, data)``'s
exact mean (within the Monte-Carlo error of the recorded draws), and its sds must shrink.
"""

import jax.numpy as jnp
import numpy as np
import pytest

from structbandits.agents import lin_ts, uniform_random
from structbandits.diagnostics import plot_posterior_trajectory, posterior_trajectory
from structbandits.envs import linear_contextual_bandit
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
