from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from structbandits.agents import ActInfo, Policy, lin_ts, uniform_random
from structbandits.envs import linear_contextual_bandit
from structbandits.errors import ValidationError
from structbandits.experiments import batched_simulator, run_experiment, seed_keys, simulate_seed, summarize

ENV = linear_contextual_bandit(4, 3, noise_scale=0.5)


def lints(env):
    return lin_ts(jnp.zeros(3), jnp.eye(3), 0.5, num_actions=env.num_actions, propensity_draws=16)


# Built once, so the runner's compiled simulators are reused across tests.
AGENTS = {"lints": lints(ENV), "random": uniform_random(4)}


@pytest.fixture(scope="module")
def results():
    return run_experiment(AGENTS, {"linear": ENV}, horizon=60, num_seeds=5, seed=3, seed_batch=2, progress=False)


def test_tidy_columns_and_dtypes(results):
    assert list(results.columns) == ["env", "agent", "seed", "round", "action", "reward", "expected_reward",
                                     "expected_regret", "cumulative_regret", "realized_regret", "propensity"]
    assert len(results) == 2 * 5 * 60
    assert results["reward"].dtype == np.float64  # the dtype the CLI runs in
    assert set(results["seed"]) == set(range(5)) and results["round"].min() == 1
    assert (results["expected_regret"] >= -1e-12).all()
    per_seed = results.groupby(["agent", "seed"])
    np.testing.assert_allclose(per_seed["cumulative_regret"].last(), per_seed["expected_regret"].sum())
    random = results[results.agent == "random"]
    np.testing.assert_allclose(random["propensity"], 0.25)
    lints_prop = results.loc[results.agent == "lints", "propensity"]
    assert lints_prop.between(0, 1).all()


def test_same_seed_same_dataframe(results):
    again = run_experiment(AGENTS, {"linear": ENV}, horizon=60, num_seeds=5, seed=3, seed_batch=2, progress=False)
    pd.testing.assert_frame_equal(results, again)
    other = run_experiment(AGENTS, {"linear": ENV}, horizon=60, num_seeds=5, seed=4, seed_batch=2, progress=False)
    assert not np.allclose(other["reward"], results["reward"])


def test_seed_batching_does_not_change_results(results):
    unbatched = run_experiment(AGENTS, {"linear": ENV}, horizon=60, num_seeds=5, seed=3, progress=False)
    pd.testing.assert_frame_equal(results, unbatched, check_exact=False, rtol=1e-10, atol=1e-10)


def test_vmapped_runner_equals_per_seed_python_loop():
    policy = AGENTS["lints"]
    keys = seed_keys(7, 3)
    batched = batched_simulator(policy, ENV, 40)(keys)
    for i in range(3):
        single = simulate_seed(policy, ENV, keys[i], 40)
        np.testing.assert_array_equal(batched.action[i], single.action)
        for field in ("reward", "expected_regret", "propensity"):
            np.testing.assert_allclose(getattr(batched, field)[i], getattr(single, field), rtol=1e-10, atol=1e-12)


def test_agents_share_ground_truth_contexts_and_noise(results):
    # Common random numbers: where both agents pick the same arm in the same round, they see the same reward.
    wide = results.pivot_table(index=["seed", "round"], columns="agent", values=["action", "reward"])
    same = wide[("action", "lints")] == wide[("action", "random")]
    assert same.sum() > 10
    np.testing.assert_allclose(wide.loc[same, ("reward", "lints")], wide.loc[same, ("reward", "random")])


def test_lints_beats_random():
    frame = run_experiment(AGENTS, ENV, horizon=300, num_seeds=6, seed=0, progress=False)
    table = summarize(frame).set_index("agent")
    assert table.loc["lints", "final_cumulative_regret"] < 0.5 * table.loc["random", "final_cumulative_regret"]
    assert table.loc["lints", "seeds"] == 6 and table.loc["lints", "rounds"] == 300
    # Random's expected regret per round is the average gap to the best arm: the curve is linear.
    random = frame[frame.agent == "random"].groupby("round")["cumulative_regret"].mean()
    assert random.iloc[-1] == pytest.approx(2 * random.iloc[149], rel=0.15)


def test_realized_regret_is_expected_regret_plus_noise(results):
    best_chosen = results["expected_regret"] == 0
    np.testing.assert_allclose(results.loc[best_chosen, "realized_regret"], 0.0, atol=1e-12)
    noise = (results["realized_regret"] - results["expected_regret"])[~best_chosen]
    assert abs(noise.mean()) < 4 * np.sqrt(2 * 0.25 / len(noise))  # difference of two N(0, 0.5²)
    np.testing.assert_allclose(noise.var(), 2 * 0.25, rtol=0.15)


def test_summary_standard_error():
    frame = pd.DataFrame({
        "env": "e", "agent": "a", "seed": [0, 0, 1, 1], "round": [1, 2, 1, 2],
        "reward": [1.0, 3.0, 0.0, 2.0], "cumulative_regret": [0.5, 1.0, 1.0, 3.0],
        "realized_regret": [1.0, -0.5, 2.0, 2.0],
    })
    row = summarize(frame).iloc[0]
    assert row["final_cumulative_regret"] == 2.0
    assert row["final_cumulative_regret_se"] == pytest.approx(np.std([1.0, 3.0], ddof=1) / np.sqrt(2))
    assert row["mean_reward"] == 1.5 and row["seeds"] == 2
    assert row["final_cumulative_realized_regret"] == pytest.approx(2.25)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(horizon=0, num_seeds=2), "horizon: expected an integer >= 1, got 0"),
        (dict(horizon=5, num_seeds=0), "num_seeds: expected an integer >= 1, got 0"),
        (dict(horizon=5, num_seeds=2, seed=-1), "seed: expected an integer >= 0"),
        (dict(horizon=5, num_seeds=2, seed_batch=0), "seed_batch"),
    ],
)
def test_runner_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValidationError, match=message):
        run_experiment(AGENTS, ENV, progress=False, **kwargs)


def test_runner_rejects_agents_that_do_not_fit_the_environment():
    wrong_features = lin_ts(jnp.zeros(5), jnp.eye(5), 0.5, num_actions=4)
    with pytest.raises(ValidationError, match=r"agents\['lints'\]: cannot act on the contexts of env 'env' \(shape \(3,\), 4 actions\)"):
        run_experiment({"lints": wrong_features}, ENV, horizon=2, num_seeds=1, progress=False)
    with pytest.raises(ValidationError, match=r"agents\['bad'\]: expected a Policy or a function env -> Policy, got int"):
        run_experiment({"bad": 3}, ENV, horizon=2, num_seeds=1, progress=False)


def test_runner_rejects_non_environments():
    with pytest.raises(ValidationError, match=r"envs\['x'\]: expected an Environment"):
        run_experiment(AGENTS, {"x": object()}, horizon=2, num_seeds=1, progress=False)
    with pytest.raises(ValidationError, match="agents: expected at least one agent"):
        run_experiment({}, ENV, horizon=2, num_seeds=1, progress=False)


def test_large_vmapped_run_finishes(tmp_path):
    """Regression: jax/jaxlib 0.10.0-0.10.2 deadlocked on 2-core CPUs at this size (50 seeds, K=100, d=10)."""
    import subprocess
    import sys

    script = (
        "import jax, jax.numpy as jnp, structbandits\n"
        "structbandits.configure()\n"
        "from structbandits.agents import lin_ts\n"
        "from structbandits.envs import linear_contextual_bandit\n"
        "from structbandits.experiments import batched_simulator, seed_keys\n"
        "env = linear_contextual_bandit(100, 10)\n"
        "policy = lin_ts(jnp.zeros(10), jnp.eye(10), 1.0, num_actions=100)\n"
        "out = batched_simulator(policy, env, 100)(seed_keys(0, 50))\n"
        "print(float(out.expected_regret.sum(axis=1).mean()))\n"
    )
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180)
    assert completed.returncode == 0, completed.stderr
    assert float(completed.stdout) > 0


class _Seen(NamedTuple):
    contexts: jax.Array
    count: jax.Array


def _context_recorder(num_actions: int, horizon: int, d: int) -> Policy:
    """Random arms; the state keeps every context the agent was shown (the oracle for the frame's columns)."""
    return Policy(lambda key, params=None: _Seen(jnp.zeros((horizon, d)), jnp.zeros((), jnp.int32)),
                  lambda state, key, context: (jax.random.randint(key, (), 0, num_actions),
                                               ActInfo(jnp.asarray(1.0 / num_actions))),
                  lambda state, context, action, reward: _Seen(state.contexts.at[state.count].set(context),
                                                               state.count + 1))


@pytest.mark.parametrize("moving", [False, True])
def test_the_frame_carries_the_contexts_the_agent_saw(moving):
    from structbandits.envs.drifting import habituation_bandit

    env = habituation_bandit(3, 2, decay=0.5, retention=0.5) if moving else linear_contextual_bandit(3, 2)
    horizon, seeds = 7, 3
    frame, states = run_experiment({"rec": _context_recorder(3, horizon, 2)}, {"e": env}, horizon=horizon,
                                   num_seeds=seeds, seed=5, seed_batch=2, progress=False, return_states=True,
                                   contexts=None)
    seen = np.asarray(states[("e", "rec")].contexts)  # (seeds, horizon, d)
    np.testing.assert_array_equal(frame[["context_0", "context_1"]].to_numpy(), seen.reshape(-1, 2))
    assert list(frame.columns[:11]) == list(run_experiment({"rec": _context_recorder(3, horizon, 2)}, {"e": env},
                                                           horizon=horizon, num_seeds=1, progress=False).columns)


def test_contexts_are_recorded_when_small_or_asked_for():
    from structbandits.experiments.runner import MAX_CONTEXT_COLUMNS

    wide = linear_contextual_bandit(2, MAX_CONTEXT_COLUMNS + 1)
    policy = uniform_random(2)
    assert "context_0" not in run_experiment({"r": policy}, wide, horizon=2, num_seeds=1, progress=False, contexts=None)
    forced = run_experiment({"r": policy}, wide, horizon=2, num_seeds=1, progress=False, contexts=True)
    assert f"context_{MAX_CONTEXT_COLUMNS}" in forced and forced["context_0"].abs().max() <= 1.0
    with pytest.raises(ValidationError, match="contexts: expected True, False or None"):
        run_experiment({"r": policy}, wide, horizon=2, num_seeds=1, progress=False, contexts="yes")
