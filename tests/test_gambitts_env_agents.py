"""The mHealth simulator and the GAMBITTS agents: database oracles, closed-form state oracles, runner use."""

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from nig_oracle import nig_textbook

from structbandits.agents.gambitts import fo_gambitts, po_gambitts
from structbandits.agents.standard_ts import standard_ts
from structbandits.data.mhealth import LOCATIONS, load_response_db, response_db_arrays, synthetic_response_db
from structbandits.envs.mhealth import mhealth_bandit, outcome_model, style_index
from structbandits.errors import ValidationError
from structbandits.experiments.gambitts import (
    ens_fo_agent,
    ens_po_agent,
    gambitts_experiment,
    optional_prompting_agent,
    po_agent,
    run_gambitts_experiment,
    stdts_agent,
)
from structbandits.experiments.runner import run_experiment
from structbandits.inference.conjugate import linear_regression_observe_batch
from structbandits.inference.niw import niw_observe_batch

SAMPLES = 40


@pytest.fixture(scope="module")
def db():
    return synthetic_response_db(SAMPLES, seed=3)


@pytest.fixture(scope="module")
def env(db):
    return mhealth_bandit("linear-3d", 5, response_db=db)


def test_database_files_round_trip_and_bad_files_are_named(db, tmp_path):
    small = db[db["prompt"] <= 3]
    small.to_csv(tmp_path / "db.csv.gzip", index=False, compression="gzip")
    small.rename(columns={"female_codedness": "Female-Codedness"}).to_parquet(tmp_path / "db.parquet")
    reference = response_db_arrays(small)
    for name in ("db.csv.gzip", "db.parquet"):
        loaded = response_db_arrays(load_response_db(tmp_path / name))
        np.testing.assert_allclose(loaded.draws, reference.draws)
        assert loaded.styles == reference.styles
    small.drop(columns="curr_loc").to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValidationError, match="curr_loc"):
        load_response_db(tmp_path / "bad.csv")
    small.assign(curr_loc="gym").to_csv(tmp_path / "bad2.csv", index=False)
    with pytest.raises(ValidationError, match="gym"):
        load_response_db(tmp_path / "bad2.csv")
    with pytest.raises(ValidationError, match="no rows"):
        response_db_arrays(small.iloc[1:][small.iloc[1:]["curr_loc"] != "work"])


def test_expected_outcomes_and_prompt_choice_match_the_database(db, env):
    model = outcome_model("linear-3d")
    f = model.params["intercept"] + db[list(model.styles)].to_numpy() @ model.params["coef"]
    frame = db.assign(f=f, cell=db["curr_loc"].map(LOCATIONS.index) * 4 + db["prev_steps"] - 1)
    table = frame.groupby(["prompt", "cell"])["f"].mean().unstack()
    params = env.model.params
    np.testing.assert_allclose(params["expected_outcomes"], table.loc[params["prompts"]].to_numpy(), rtol=1e-12)
    overall = table.mean(axis=1)
    assert overall[params["prompts"]].min() == overall.min() and overall[params["prompts"]].max() == overall.max()
    assert list(overall[params["prompts"]]) == sorted(overall[params["prompts"]])
    with pytest.raises(ValidationError, match="reward_model"):
        mhealth_bandit("quadratic")
    with pytest.raises(ValidationError, match="noise_level"):
        mhealth_bandit("linear-1d", noise_level=7, response_db=db)


def test_treatments_come_from_the_database_and_rewards_follow_the_outcome_model(db):
    env = mhealth_bandit("linear-3d", 4, noise_scale=0.0, response_db=db, no_message_outcome=80.0)
    state = env.init(jax.random.PRNGKey(0))
    ctx = env.context(state, jax.random.PRNGKey(5))
    params = env.model.params
    assert env.num_actions == 5 and ctx.treatments.shape == (4, len(params["styles"]))
    cell = int(ctx.cell)
    assert cell == int(ctx.code[0]) * 4 + int(ctx.code[1])
    for a in range(4):
        rows = params["treatment_draws"][a, cell, :params["treatment_counts"][a, cell]]
        assert np.any(np.all(np.isclose(rows, np.asarray(ctx.treatments[a])), axis=1))
    model = outcome_model("linear-3d")
    cols = list(style_index(env, model.styles))
    for action in range(5):
        reward = float(env.reward(state, jax.random.PRNGKey(1), ctx, jnp.asarray(action)))
        expected = 80.0 if action == 0 else model.params["intercept"] + np.asarray(ctx.treatments[action - 1, cols]) @ model.params["coef"]
        assert reward == pytest.approx(expected)
    means = np.asarray(env.mean_rewards(state, ctx))
    assert means[0] == 80.0 and np.allclose(means[1:], params["expected_outcomes"][:, cell])


def _play(policy, env, horizon, seed=0):
    """Run one seed and return the agent's final state and what it saw."""
    def step(carry, t):
        state, key = carry
        key, ctx_key, act_key, reward_key = jax.random.split(key, 4)
        ctx = env.context(env_state, ctx_key)
        action, _ = policy.act(state, act_key, ctx)
        reward = env.reward(env_state, reward_key, ctx, action)
        return (policy.update(state, ctx, action, reward), key), (ctx.cell, ctx.treatments[action], action, reward)

    env_state = env.init(jax.random.PRNGKey(seed))
    run = jax.jit(lambda key: jax.lax.scan(step, (policy.init(key), key), jnp.arange(horizon)))
    (state, _), record = run(jax.random.PRNGKey(seed + 1))
    return state, tuple(np.asarray(r) for r in record)


def test_agent_states_equal_the_batch_posteriors(env):
    params = env.model.params
    index = list(style_index(env, params["reward_styles"]))
    po = po_gambitts(params["treatment_draws"], index, propensity_draws=0)
    fo = fo_gambitts(5, 12, index, propensity_draws=0)
    ts = standard_ts(5, num_cells=12, propensity_draws=0)
    for policy in (po, fo, ts):
        state, (cells, treatments, actions, rewards) = _play(policy, env, 120)
        z = treatments[:, index]
        features = jnp.asarray(np.hstack([np.ones((len(z), 1)), z]))
        if policy is ts:
            prior = policy.init(jax.random.PRNGKey(0)).arms
            for c, a in {(int(c), int(a)) for c, a in zip(cells, actions)}:  # the textbook NIG update, in NumPy
                want = nig_textbook(*(float(leaf[c, a]) for leaf in prior), rewards, (cells == c) & (actions == a))
                np.testing.assert_allclose([float(leaf[c, a]) for leaf in state.arms], want, rtol=1e-9)
            continue
        prior = policy.init(jax.random.PRNGKey(0))
        batch = linear_regression_observe_batch(prior.reward, features, jnp.asarray(rewards), 1.0)
        np.testing.assert_allclose(state.reward.info, batch.info, rtol=1e-9)
        np.testing.assert_allclose(state.reward.precision_chol, batch.precision_chol, rtol=1e-7, atol=1e-7)
        if policy is fo:
            for c, a in {(int(c), int(a)) for c, a in zip(cells, actions)}:
                one = jax.tree.map(lambda leaf: leaf[c, a], prior.treatment)
                batch = niw_observe_batch(one, jnp.asarray(z), jnp.asarray((cells == c) & (actions == a)))
                for got, want in zip(jax.tree.map(lambda leaf: leaf[c, a], state.treatment), batch):
                    np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-9)


def test_runner_logs_propensities_and_po_gambitts_beats_standard_ts(env):
    results = run_experiment({"po": lambda e: po_agent(e, propensity_draws=50),
                              "stdts": lambda e: stdts_agent(e, propensity_draws=50)},
                             env, horizon=150, num_seeds=4, progress=False)
    assert results["propensity"].between(0, 1).all()
    assert (results["expected_regret"] >= -1e-12).all()
    final = results[results["round"] == 150].groupby("agent")["cumulative_regret"].mean()
    assert final["po"] < 0.5 * final["stdts"], final


def test_optional_prompting_and_ensembles_run_in_the_runner(db, env):
    optional_env = mhealth_bandit("linear-1d", 3, response_db=db, no_message_outcome=82.0)
    agents = {"optional": lambda e: optional_prompting_agent(e, propensity_draws=10)}
    results = run_experiment(agents, optional_env, horizon=40, num_seeds=2, progress=False)
    assert set(results["action"]) <= {0, 1, 2, 3} and results["propensity"].between(0, 1).all()
    small = dict(num_members=3, num_hidden=4, warmup=5, mc_draws=4, batch_size=8, buffer_size=16, propensity_draws=10)
    results = run_experiment({"ens-po": lambda e: ens_po_agent(e, num_draws=10, **small),
                              "ens-fo": lambda e: ens_fo_agent(e, **small)}, env, horizon=30, num_seeds=2, progress=False)
    warm = results[results["round"] <= 5]
    assert np.allclose(warm["propensity"], 1 / 5) and results["propensity"].between(0, 1).all()
    with pytest.raises(ValidationError, match="no_message_outcome"):
        optional_prompting_agent(mhealth_bandit("linear-1d", 3, response_db=db))


def test_builtin_experiment_runs_and_saves(tmp_path):
    with pytest.raises(ValidationError, match="name"):
        gambitts_experiment("gambitts-unknown")
    with pytest.raises(ValidationError, match="agents"):
        gambitts_experiment("gambitts-illustrative", agents=["nope"])
    results = run_gambitts_experiment("gambitts-illustrative", runs=2, horizon=20, out=tmp_path / "run",
                                      progress=False, agents=["poGAMBITTS"], propensity_draws=5)
    assert len(results) == 40 and (tmp_path / "run" / "summary.csv").is_file()
    assert pd.read_csv(tmp_path / "run" / "summary.csv")["agent"].tolist() == ["poGAMBITTS"]


def test_optional_prompting_experiment_puts_the_send_nothing_outcome_where_its_name_says():
    experiment = gambitts_experiment("gambitts-optional-prompting", propensity_draws=5)
    assert set(experiment.agents) == {"optional:poGAMBITTS", "optional:foGAMBITTS", "StdTS", "StdTS:Contextual"}
    best_is_silence = {}
    for label in ("between", "below"):
        env = experiment.envs[f"linear-3d-nomsg-{label}"]
        assert env.num_actions == 6
        state = env.init(jax.random.PRNGKey(0))
        keys = jax.random.split(jax.random.PRNGKey(1), 200)
        means = np.stack([np.asarray(env.mean_rewards(state, env.context(state, k))) for k in keys])
        best_is_silence[label] = means.argmax(axis=1) == 0
    assert best_is_silence["between"].any() and not best_is_silence["between"].all()
    assert not best_is_silence["below"].any()


def test_style_correlations_state_the_database_the_experiment_runs_on(db):
    from structbandits.experiments.gambitts import style_correlations

    planted = db.copy()
    planted["encouragement"] = 1.0 - 2.0 * planted["optimism"]  # r = −1 on any subset of rows
    planted["severity"] = 3.0 * planted["optimism"] + 0.5  # r = +1
    correlations = style_correlations(mhealth_bandit("linear-1d", 5, response_db=planted))
    assert correlations["encouragement"] == pytest.approx(-1.0, abs=1e-12)
    assert correlations["severity"] == pytest.approx(1.0, abs=1e-12)
    assert "optimism" not in correlations and abs(correlations["clarity"]) < 1
    with pytest.raises(ValidationError, match="reference"):
        style_correlations(mhealth_bandit("linear-1d", 5, response_db=planted), reference="nope")
    description = gambitts_experiment("gambitts-misspecification", response_db="synthetic",
                                      propensity_draws=5).description
    assert "encouragement -0.9" in description and "severity +0.8" in description
