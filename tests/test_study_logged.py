"""Loading a logged study (study.logged), its Open Bandit Pipeline export (study.obp) and ``structbandits
analyse``. Oracle: what the OnlineAgent returned (its Decision objects) and what the test wrote."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from structbandits import ValidationError
from structbandits.agents import lin_ts
from structbandits.cli import app
from structbandits.study import LoggedStudy, OnlineAgent, load_decision_log, load_table, to_obp_bandit_feedback
from structbandits.study.decision_log import ContextSpec, write_csv_log

K, D = 3, 2


@pytest.fixture(scope="module")
def agent_log(tmp_path_factory):
    """A real OnlineAgent study exported to CSV: 12 decisions, 10 rewards (one observed with a later context), a
    snapshot."""
    folder = tmp_path_factory.mktemp("study")
    policy = lin_ts(jnp.zeros(D), jnp.eye(D), 0.5, num_actions=K, propensity_draws=8)
    agent = OnlineAgent(policy, key=3, store=folder / "study.db", name="lints", hyperparameters={"num_actions": K})
    rng = np.random.default_rng(0)
    contexts = rng.normal(size=(12, D))
    decisions = [agent.select(x) for x in contexts]
    rewards = rng.normal(size=12)
    agent.observe([3, 1, 0], rewards[[3, 1, 0]].tolist())      # late and out of order
    agent.observe(2, float(rewards[2]), context=contexts[2] + 5.0)  # updated with another context
    for i in range(4, 10):
        agent.observe(i, float(rewards[i]))
    agent.save(folder / "agent.npz")
    agent.export_csv(folder / "log")
    agent.close()
    return folder, contexts, decisions, rewards


def test_a_decision_log_loads_with_the_decision_contexts_and_drops_pending_decisions(agent_log):
    folder, contexts, decisions, rewards = agent_log
    study = load_decision_log(folder / "log", num_actions=K)
    observed = list(range(10))
    assert study.num_decisions == 10 and study.num_without_outcome == 2 and study.num_actions == K
    np.testing.assert_array_equal(study.decision_ids, observed)
    np.testing.assert_array_equal(study.features, contexts[observed])  # bit-identical; decision 2's own context
    np.testing.assert_array_equal(study.actions, [decisions[i].action for i in observed])
    np.testing.assert_array_equal(study.propensities, [decisions[i].propensity for i in observed])
    np.testing.assert_array_equal(study.rewards, rewards[observed])
    assert study.feature_names == ("x0", "x1")
    assert study.times.dtype == np.dtype("datetime64[ns]")
    assert study.times[0] == np.datetime64(pd.Timestamp(decisions[0].time).tz_localize(None))


def test_num_actions_from_the_snapshot_or_a_clear_error(agent_log, tmp_path):
    folder, *_ = agent_log
    assert load_decision_log(folder / "log").num_actions == K          # the export's study.json
    assert load_decision_log(folder / "log", snapshot=folder / "agent.npz").num_actions == K
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("decisions.csv", "observations.csv"):
        (copy / name).write_bytes((folder / "log" / name).read_bytes())
    with pytest.raises(ValidationError, match=r"num_actions: the log in .* does not record the number of actions"):
        load_decision_log(copy)


def decision(i, context, action, propensity):
    return dict(decision_id=i, time="2024-01-01T00:00:00+00:00", context=context, action=action, propensity=propensity,
                model_version=0)


def observation(i, reward):
    return dict(sequence=i, decision_id=i, time="2024-01-01T00:00:01+00:00", reward=reward, context=None)


def test_pytree_contexts_are_flattened_in_context_spec_order(tmp_path):
    example = {"mood": np.zeros(2), "steps": np.zeros((), np.int64)}
    spec = ContextSpec(example)
    rows = [({"mood": np.array([0.5, -1.0]), "steps": np.array(40)}, 1, 0.25, 1.5),
            ({"mood": np.array([2.0, 0.0]), "steps": np.array(7)}, 0, 0.5, -0.5)]
    write_csv_log(tmp_path, [decision(i, spec.encode(spec.validate(context)), action, propensity)
                             for i, (context, action, propensity, _) in enumerate(rows)],
                  [observation(i, repr(reward)) for i, (*_, reward) in enumerate(rows)])
    for study in (load_decision_log(tmp_path, num_actions=2), load_decision_log(tmp_path, num_actions=2, example_context=example)):
        np.testing.assert_array_equal(study.features, [[0.5, -1.0, 40.0], [2.0, 0.0, 7.0]])
        assert study.feature_names == ("['mood'][0]", "['mood'][1]", "['steps']")
        np.testing.assert_array_equal(study.rewards, [1.5, -0.5])


def test_clear_errors_for_folders_that_are_not_decision_logs(tmp_path):
    with pytest.raises(ValidationError, match=r"folder: expected an OnlineAgent log folder, got .* \(no such folder\)"):
        load_decision_log(tmp_path / "missing")
    (tmp_path / "results.parquet").write_bytes(b"")
    with pytest.raises(ValidationError, match="this results folder carries no contexts"):
        load_decision_log(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValidationError, match="without one"):
        load_decision_log(empty)
    nan = [decision(0, "[0.5]", 1, float("nan")), decision(1, "[0.7]", 0, 0.5)]
    write_csv_log(tmp_path / "nan", nan, [])
    with pytest.raises(ValidationError, match="none with an observed reward"):
        load_decision_log(tmp_path / "nan", num_actions=2)
    write_csv_log(tmp_path / "nan", nan, [observation(0, "1.0"), observation(1, "0.0")])
    with pytest.raises(ValidationError, match="propensities: .* NaN at decision 0"):
        load_decision_log(tmp_path / "nan", num_actions=2)
    write_csv_log(tmp_path / "vector", [decision(0, "[0.5]", 1, 0.5)], [observation(0, "[1.0, 2.0]")])
    with pytest.raises(ValidationError, match="needs a scalar reward"):
        load_decision_log(tmp_path / "vector", num_actions=2)
    write_csv_log(tmp_path / "cut", [decision(0, "[0.5]", 1, 0.5), decision(1, "[0.7]", 0, 0.5)],
                  [observation(0, "1.0"), observation(1, "0.0")])
    with open(tmp_path / "cut" / "decisions.csv", "a") as handle:  # an older version's log, cut short by a crash
        handle.write('2,2024-01-01T00:00:00+00:00,"[0.')
    assert load_decision_log(tmp_path / "cut", num_actions=2).num_without_outcome == 0  # the cut row is left out


def test_tables_load_from_csv_and_parquet(tmp_path):
    frame = pd.DataFrame({"decision_id": [5, 6, 7], "action": [0, 2, 1], "reward": [1.0, 0.0, 0.5],
                          "propensity": [0.5, 0.2, 1.0], "x_age": [30.0, 41.0, 52.0], "x_dose": [1, 0, 1], "note": list("abc")})
    frame.to_csv(tmp_path / "log.csv", index=False)
    frame.to_parquet(tmp_path / "log.parquet", index=False)
    for path in (tmp_path / "log.csv", tmp_path / "log.parquet"):
        study = load_table(path, num_actions=3, feature_prefix="x_")
        np.testing.assert_array_equal(study.features, [[30, 1], [41, 0], [52, 1]])
        np.testing.assert_array_equal(study.actions, [0, 2, 1])
        np.testing.assert_array_equal(study.propensities, [0.5, 0.2, 1.0])
        np.testing.assert_array_equal(study.decision_ids, [5, 6, 7])
        assert study.feature_names == ("x_age", "x_dose")
    assert load_table(tmp_path / "log.csv", num_actions=3, feature_columns=["x_dose"]).features.shape == (3, 1)
    pd.DataFrame({"env": ["e"] * 2, "agent": ["a"] * 2, "seed": [0, 0], "round": [0, 1], "action": [0, 1],
                  "reward": [1.0, 0.0], "propensity": [0.5, 0.5]}).to_csv(tmp_path / "results.csv", index=False)
    with pytest.raises(ValidationError, match="this results folder carries no contexts"):
        load_table(tmp_path / "results.csv", num_actions=2)
    with pytest.raises(ValidationError, match="feature_prefix: no column"):
        load_table(tmp_path / "log.csv", num_actions=3, feature_prefix="z")
    with pytest.raises(ValidationError, match=r"feature_columns: .*\['nope'\] absent"):
        load_table(tmp_path / "log.csv", num_actions=3, feature_columns=["nope"])
    with pytest.raises(ValidationError, match="missing \\['propensity'\\]"):
        frame.drop(columns="propensity").to_csv(tmp_path / "bad.csv", index=False)
        load_table(tmp_path / "bad.csv", num_actions=3)
    with pytest.raises(ValidationError, match="actions: expected integers in \\[0, 2\\)"):
        load_table(tmp_path / "log.csv", num_actions=2, feature_prefix="x_")


GOOD = dict(features=np.zeros((3, 2)), actions=[0, 1, 1], rewards=[1.0, 0.0, 2.0], propensities=[0.5, 0.5, 1.0], num_actions=2)


@pytest.mark.parametrize("change, message", [
    (dict(propensities=[0.5, 0.0, 1.0]), r"propensities: expected probabilities in \(0, 1\].*got 0.0 at decision 1"),
    (dict(propensities=[0.5, 1.2, 1.0]), r"propensities: expected probabilities in \(0, 1\]"),
    (dict(propensities=[0.5, 0.5]), r"propensities: expected shape \(3,\)"),
    (dict(rewards=[1.0, 2.0]), r"rewards: expected shape \(3,\)"),
    (dict(rewards=[1.0, np.inf, 2.0]), "rewards: expected finite values"),
    (dict(actions=[0, 2, 1]), r"actions: expected integers in \[0, 2\)"),
    (dict(actions=[0, 0.5, 1]), "actions: expected integers"),
    (dict(num_actions=1), "num_actions: expected an integer >= 2"),
    (dict(features=np.zeros((2, 2))), r"actions: expected shape \(2,\)"),
    (dict(action_probabilities=[[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]]), "action_probabilities: expected the logged action's"),
    (dict(action_probabilities=[[0.5, 0.6], [0.5, 0.5], [0.0, 1.0]]), "action_probabilities: expected rows of probabilities"),
    (dict(feature_names=("a",)), "feature_names: expected 2 names"),
])
def test_logged_study_validation_names_the_field(change, message):
    with pytest.raises(ValidationError, match=message):
        LoggedStudy(**(GOOD | change))


def test_obp_export_has_the_documented_keys_and_dtypes():
    logger = np.array([[0.5, 0.5], [0.5, 0.5], [0.0, 1.0]])
    study = LoggedStudy(**GOOD, action_probabilities=logger)
    feedback = to_obp_bandit_feedback(study)
    assert set(feedback) == {"n_rounds", "n_actions", "action", "position", "reward", "pscore", "context",
                             "action_context", "pi_b"}
    assert (feedback["n_rounds"], feedback["n_actions"]) == (3, 2)
    np.testing.assert_array_equal(feedback["action"], [0, 1, 1])
    assert feedback["action"].dtype == np.int64 and feedback["position"].dtype == np.int64
    np.testing.assert_array_equal(feedback["position"], 0)
    np.testing.assert_array_equal(feedback["pscore"], [0.5, 0.5, 1.0])
    assert np.all(feedback["pscore"] > 0)  # what OBP's estimators require ("pscore must be positive")
    np.testing.assert_array_equal(feedback["action_context"], np.eye(2))
    assert feedback["context"].shape == (3, 2) and feedback["pi_b"].shape == (3, 2, 1)
    np.testing.assert_array_equal(feedback["pi_b"][np.arange(3), feedback["action"], 0], feedback["pscore"])
    assert "pi_b" not in to_obp_bandit_feedback(LoggedStudy(**GOOD))
    assert to_obp_bandit_feedback(study, action_context=[[1.0, 0.0, 3.0], [0.0, 1.0, 4.0]])["action_context"].shape == (2, 3)
    with pytest.raises(ValidationError, match=r"action_context: expected shape \(2, any\)"):
        to_obp_bandit_feedback(study, action_context=np.eye(3))


runner = CliRunner()


def test_cli_analyse_a_real_agent_log(agent_log, tmp_path):
    folder, *_ = agent_log
    out = tmp_path / "table.csv"
    result = runner.invoke(app, ["analyse", str(folder / "log"), "--target", "arm:1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "from 10 decisions with a reward (2 without one left out), 3 actions" in result.output
    assert "effective_sample_size" in result.output
    table = pd.read_csv(out)
    assert list(table["estimator"]) == ["ipw", "snipw", "dm", "dr"] and set(table["interval"]) == {"normal"}
    result = runner.invoke(app, ["analyse", str(folder / "log"), "--num-actions", "3", "--bootstrap", "50"])
    assert result.exit_code == 0, result.output
    assert "bootstrap" in result.output


def test_cli_analyse_clear_errors(agent_log, tmp_path):
    folder, *_ = agent_log
    (tmp_path / "results.csv").write_text("x")
    for arguments, message in (([str(tmp_path / "missing")], "no such file or folder"),
                               ([str(tmp_path)], "this results folder carries no contexts"),
                               ([str(folder / "log"), "--target", "greedy"], "--target: expected uniform, arm:J or module:function"),
                               ([str(folder / "log"), "--target", "arm:3"], "--target: expected an arm in 0..2"),
                               ([str(tmp_path / "results.csv")], "--num-actions: a table does not record")):
        result = runner.invoke(app, ["analyse", *arguments])
        assert result.exit_code == 2, (arguments, result.output)
        assert message in result.output and "Traceback" not in result.output


def test_a_simulation_results_folder_with_contexts_is_a_logged_study(tmp_path):
    # A uniform logger (propensity exactly 1/K) evaluated at the uniform target: every IPW weight is 1, so
    # IPW is the plain mean of the rewards, computed here from the frame by pandas.
    from structbandits.agents import uniform_random
    from structbandits.envs import linear_contextual_bandit
    from structbandits.experiments import run_experiment
    from structbandits.experiments.results import save_results
    from structbandits.study import load_results, off_policy_value

    env = linear_contextual_bandit(3, 2)
    frame = run_experiment({"random": uniform_random(3), "again": uniform_random(3)}, {"e": env}, horizon=15,
                           num_seeds=2, progress=False, contexts=None)
    save_results(frame, tmp_path / "run", config={"envs": {"e": {"num_actions": 3}}})
    study = load_results(tmp_path / "run", agent="random")
    rows = frame[frame["agent"] == "random"].sort_values(["seed", "round"])
    np.testing.assert_array_equal(study.features, rows[["context_0", "context_1"]].to_numpy())
    np.testing.assert_array_equal(study.actions, rows["action"].to_numpy())
    assert study.num_actions == 3 and study.feature_names == ("context_0", "context_1")
    ipw = off_policy_value(study, "uniform").table.set_index("estimator").loc["ipw", "estimate"]
    assert ipw == pytest.approx(rows["reward"].mean(), rel=1e-12)
    result = runner.invoke(app, ["analyse", str(tmp_path / "run"), "--agent", "random"])
    assert result.exit_code == 0, result.output
    with pytest.raises(ValidationError, match=r"agent: the results in .* have several: \['again', 'random'\]"):
        load_results(tmp_path / "run")
    with pytest.raises(ValidationError, match="env: expected one of \\['e'\\]"):
        load_results(tmp_path / "run", env="x", agent="random")
    frame.drop(columns=["context_0", "context_1"]).to_parquet(tmp_path / "run" / "results.parquet")
    with pytest.raises(ValidationError, match="this results folder carries no contexts"):
        load_results(tmp_path / "run", agent="random")
