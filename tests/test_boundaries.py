"""Boundaries a user hits: agents sized for another environment, --out folders, built-in names, and
agent kinds on environments they cannot model (issue 19). Expected values are constants of the
test (arm counts, paths, the packaged TOML read directly), never the code under test."""

import json
import threading
import tomllib
from datetime import datetime
from importlib import resources

import jax
import jax.numpy as jnp
import pandas as pd
import pytest
from typer.testing import CliRunner

from structbandits.agents import ActInfo, Policy, lin_ts, uniform_random
from structbandits.cli import app
from structbandits.envs import linear_contextual_bandit
from structbandits.errors import ValidationError
from structbandits.experiments import build_components, load_config, resolve_config, run_experiment
from structbandits.experiments import pipeline, runner as runner_module
from structbandits.experiments.action_range import action_range
from structbandits.experiments.registry import AGENTS
from structbandits.experiments.sweep import load_sweep

cli = CliRunner()
KEY = jax.random.PRNGKey(0)
NAN = ActInfo(jnp.asarray(jnp.nan))


def _no_simulation(*args, **kwargs):
    raise AssertionError("simulated although the input was invalid")


def _range(act, context_shape=(3,)):
    return action_range(act, (), KEY, jax.ShapeDtypeStruct(context_shape, jnp.float64))[0]


# ---- 1. agents whose action count differs from the environment's -------------------------------

@pytest.mark.parametrize("agent_arms", [5, 12])
def test_lints_sized_for_another_env_is_rejected_before_simulating(monkeypatch, agent_arms):
    monkeypatch.setattr(runner_module, "_simulate_batch", _no_simulation)
    env = linear_contextual_bandit(10, 3)
    agent = lin_ts(jnp.zeros(3), jnp.eye(3), 1.0, num_actions=agent_arms)
    with pytest.raises(ValidationError, match=rf"agents\['lints{agent_arms}'\]: chooses among {agent_arms} actions "
                                              rf"\(0\.\.{agent_arms - 1}\), but env 'ten' has 10 actions"):
        run_experiment({f"lints{agent_arms}": agent}, {"ten": env}, horizon=3, num_seeds=1, progress=False)
    with pytest.raises(ValidationError, match=r"agents\['random'\]: chooses among 4 actions"):  # a factory too
        run_experiment({"random": lambda env: uniform_random(4)}, env, horizon=3, num_seeds=1, progress=False)


def _five_arm_lints(env, sigma0: float = 1.0):
    """A (buggy) registered kind that ignores the environment's arm count."""
    return lin_ts(jnp.zeros(env.context_shape[-1]), sigma0**2 * jnp.eye(env.context_shape[-1]), 1.0, num_actions=5)


def test_a_config_agent_sized_for_another_env_exits_2_before_simulating(monkeypatch, tmp_path):
    monkeypatch.setitem(AGENTS, "five", _five_arm_lints)
    monkeypatch.setattr(runner_module, "_simulate_batch", _no_simulation)
    config = tmp_path / "five.toml"
    config.write_text('horizon = 3\nseeds = 1\n[envs.linear]\nnum_actions = 10\nnum_features = 3\n'
                      '[agents.five]\n[agents.random]\n')
    with pytest.raises(ValidationError, match=r"agents\['five'\]: chooses among 5 actions .*env 'linear' has 10"):
        pipeline.run_config(config, out_dir=tmp_path / "api", progress=False)
    result = cli.invoke(app, ["run", str(config), "--out", str(tmp_path / "out"), "--no-progress"])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [
        "error: agents['five']: chooses among 5 actions (0..4), but env 'linear' has 10 actions; "
        "expected an agent built for 10 actions"]
    assert not (tmp_path / "out").exists() and not (tmp_path / "api").exists()


def test_action_range_reads_the_action_set_off_the_act_program():
    assert _range(lambda s, k, c: (jnp.argmax(jnp.zeros(7) + c[0]), NAN)) == (0, 6)
    assert _range(lambda s, k, c: (jax.random.randint(k, (), 0, 9), NAN)) == (0, 8)
    # a gate in front of a prompter: 0 = send nothing, 1 + a = prompt a of 4
    gate = lambda s, k, c: (jnp.where(c[0] > 0, jnp.argmax(c[:4]) + 1, 0), NAN)  # noqa: E731
    assert _range(gate, (5,)) == (0, 4)
    warmup = lambda s, k, c: (jnp.where(c[0] > 0, jax.random.randint(k, (), 0, 6), jnp.argmax(c[:6])), NAN)  # noqa: E731
    assert _range(warmup, (6,)) == (0, 5)
    branches = lambda s, k, c: (jax.lax.cond(c[0] > 0, lambda x: jnp.argmax(x[:2]), lambda x: jnp.argmax(x), c), NAN)  # noqa: E731
    assert _range(branches, (8,)) == (0, 7)
    assert _range(jax.jit(lambda s, k, c: (jnp.argmax(c), NAN)), (11,)) == (0, 10)
    assert _range(lambda s, k, c: (jnp.asarray(3), NAN)) == (3, 3)  # a fixed arm
    # values the program does not bound are unknown, never guessed
    assert _range(lambda s, k, c: (jnp.argmax(c) * 2, NAN)) is None
    assert _range(lambda s, k, c: (jnp.floor(c[0]).astype(jnp.int32), NAN)) is None
    assert action_range(uniform_random(13).act, (), KEY, jax.ShapeDtypeStruct((3,), jnp.float64))[0] == (0, 12)


def test_actions_the_program_does_not_bound_are_checked_as_taken():
    # argmax * 2 is unknown to the range analysis; on 4 arms it picks 0, 2, 4 or 6.
    doubled = Policy(lambda key: (), lambda state, key, context: (jax.random.randint(key, (), 0, 4) * 2, NAN),
                     lambda state, context, action, reward: state)
    with pytest.raises(ValidationError, match=r"agents\['doubled'\]: chose action [46], but env 'env' has 4 actions"):
        run_experiment({"doubled": doubled}, linear_contextual_bandit(4, 2), horizon=20, num_seeds=1, progress=False)


# ---- 4. linear-Gaussian-only agents on logistic environments ----------------------------------

def test_lints_on_a_logistic_environment_is_a_config_error(tmp_path):
    raw = {"horizon": 5, "seeds": 1, "envs": {"logit": {"kind": "mixed_effect", "rewards": "logistic", "num_actions": 4}},
           "agents": {"lints": {}}}
    message = ("agents.lints.kind: 'lints' needs an environment generated by linear_bandit, mixed_effect_linear, "
               "changepoint_linear_bandit, random_walk_linear_bandit or habituation_linear_bandit, "
               "got mixed_effect_logistic (env 'logit')")
    with pytest.raises(ValidationError) as caught:
        build_components(resolve_config(raw))
    assert str(caught.value) == message
    config = tmp_path / "logit.toml"
    config.write_text('horizon = 5\nseeds = 1\n[envs.logit]\nkind = "mixed_effect"\nrewards = "logistic"\n'
                      'num_actions = 4\n[agents.lints]\n')
    result = cli.invoke(app, ["run", str(config), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and result.output.strip().splitlines() == [f"error: {message}"]
    linear = {**raw, "envs": {"gauss": {"kind": "mixed_effect", "num_actions": 4}}}
    assert "lints" in build_components(resolve_config(linear))[1]  # the same agent on linear rewards is fine


# ---- 2. --out: never overwrite, refuse before running -----------------------------------------

@pytest.fixture
def no_runs(monkeypatch):
    """Every entry point that would simulate fails the test; returns the calls that got through."""
    calls = []

    def record(name):
        def call(*args, **kwargs):
            calls.append((name, args, kwargs))
            raise ValidationError("stopped by the test")
        return call

    import structbandits.experiments as experiments
    import structbandits.experiments.reproductions as reproductions
    import structbandits.experiments.sweep as sweep

    monkeypatch.setattr(experiments, "run_config", record("run_config"))
    monkeypatch.setattr(reproductions, "run_reproduction", record("run_reproduction"))
    monkeypatch.setattr(sweep, "run_sweep", record("run_sweep"))
    return calls


@pytest.mark.parametrize("command", [["run", "demo"], ["demo"], ["reproduce", "ermab-fig3"],
                                     ["sweep", "lints-prior"], ["sweep", "lints-prior", "--resume"]])
def test_out_refuses_an_existing_file_or_results_folder(tmp_path, no_runs, command):
    folder = tmp_path / "old"
    folder.mkdir()
    (folder / "results.parquet").write_bytes(b"earlier results")
    afile = tmp_path / "old.csv"
    afile.write_text("a file")
    for out, expected in ((folder, "error: --out: {} already exists and is not empty"),
                          (afile, "error: --out: {} is an existing file; expected a new or empty folder"),
                          (afile / "sub", "error: --out: {} is inside " + str(afile) + ", which is a file")):
        if "--resume" in command and out == folder:
            expected = "error: --out: {} holds no sweep to resume (no sweep.json)"
        result = cli.invoke(app, [*command, "--out", str(out), "--no-progress"])
        assert result.exit_code == 2, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(expected.format(out)), lines
    assert no_runs == []
    assert (folder / "results.parquet").read_bytes() == b"earlier results" and afile.read_text() == "a file"
    empty = tmp_path / "empty"
    empty.mkdir()
    cli.invoke(app, [*command, "--out", str(empty), "--no-progress"])  # a new or empty folder is accepted
    cli.invoke(app, [*command, "--out", str(tmp_path / "new" / "deeper"), "--no-progress"])
    assert len(no_runs) == 2


def test_sweep_resume_continues_a_sweep_folder_and_only_with_resume(tmp_path, no_runs):
    folder = tmp_path / "s"
    (folder / "cells").mkdir(parents=True)
    (folder / "sweep.json").write_text("{}")
    refused = cli.invoke(app, ["sweep", "lints-prior", "--out", str(folder)])
    assert refused.exit_code == 2
    assert refused.output.strip() == f"error: --out: {folder} already holds a sweep; pass --resume to continue it " \
                                     "or choose another folder"
    assert no_runs == []
    cli.invoke(app, ["sweep", "lints-prior", "--out", str(folder), "--resume"])
    cli.invoke(app, ["sweep", "lints-prior", "--out", str(tmp_path / "fresh"), "--resume"])  # nothing to resume yet
    assert [(name, kwargs["resume"]) for name, _, kwargs in no_runs] == [("run_sweep", True), ("run_sweep", True)]


def test_default_results_folders_never_collide(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    class Frozen(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime(2024, 5, 6, 7, 8, 9)

    monkeypatch.setattr(pipeline, "datetime", Frozen)
    first, second = pipeline.default_output_dir("demo"), pipeline.default_output_dir("demo")
    assert (str(first), str(second)) == ("results/demo-20240506-070809", "results/demo-20240506-070809-2")
    folders = []
    threads = [threading.Thread(target=lambda: folders.append(pipeline.default_output_dir("demo"))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(folders)) == 8 and all(folder.is_dir() and not any(folder.iterdir()) for folder in folders)
    assert sorted(path.name for path in (tmp_path / "results").iterdir()) == sorted(
        ["demo-20240506-070809"] + [f"demo-20240506-070809-{n}" for n in range(2, 11)])


def test_a_rejected_command_leaves_no_default_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.invoke(app, ["run", "demo", "--set", "agents.lints.sigma0=-2"]).exit_code == 2
    assert cli.invoke(app, ["reproduce", "ermab-fig9"]).exit_code == 2
    assert cli.invoke(app, ["reproduce", "ermab-fig3", "--horizon", "5"]).exit_code == 2
    assert not (tmp_path / "results").exists()


# ---- 3. a name is a built-in, whatever the working directory holds ------------------------------

def _packaged(name):
    return tomllib.loads((resources.files("structbandits.experiments") / "configs" / f"{name}.toml").read_text())


def test_a_local_file_or_folder_never_hides_a_builtin(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo").mkdir()
    assert load_config("demo") == _packaged("demo")
    local = 'name = "local"\nhorizon = 3\nseeds = 1\n[envs.linear]\n[agents.random]\n'
    (tmp_path / "linear-k100").write_text(local)
    assert load_config("linear-k100") == _packaged("linear-k100")
    assert load_config("./linear-k100")["name"] == "local"  # an explicit path is the file
    (tmp_path / "demo.toml").write_text(local)
    assert load_config("demo.toml")["name"] == "local"  # a suffix makes it a path
    (tmp_path / "mystudy").write_text(local)
    with pytest.raises(ValidationError, match=r"got 'mystudy' \(a name is a built-in; for the file in this folder "
                                              r"write ./mystudy\)"):
        load_config("mystudy")
    with pytest.raises(ValidationError, match=r"config: expected a TOML file or a built-in name .*got 'demo/'"):
        load_config("demo/")
    (tmp_path / "lints-prior").mkdir()
    packaged = tomllib.loads((resources.files("structbandits.experiments") / "sweeps" / "lints-prior.toml").read_text())
    assert load_sweep("lints-prior").grid == packaged["sweep"]


def test_run_demo_beside_a_demo_folder_runs_the_builtin_and_never_overwrites(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "notes.txt").write_text("mine")
    seen = []

    def simulate(agents, envs, **run):  # stands in for the simulation (compile-bound), records what it got
        seen.append(({name: env.num_actions for name, env in envs.items()}, sorted(agents), run["horizon"]))
        rows = [{"env": "linear", "agent": agent, "seed": 0, "round": t, "action": 0, "reward": 1.0,
                 "expected_reward": 1.0, "expected_regret": 0.0, "cumulative_regret": 0.0, "realized_regret": 0.0,
                 "propensity": float("nan")} for agent in sorted(agents) for t in (1, 2)]
        return pd.DataFrame(rows)

    monkeypatch.setattr(pipeline, "run_experiment", simulate)
    args = ["run", "demo", "--set", "horizon=2", "--out", "out", "--no-progress"]
    first = cli.invoke(app, args)
    assert first.exit_code == 0, first.output
    packaged = _packaged("demo")
    assert seen == [({"linear": packaged["envs"]["linear"]["num_actions"]}, sorted(packaged["agents"]), 2)]
    assert json.loads((tmp_path / "out" / "config.json").read_text())["config"]["name"] == "demo"
    before = (tmp_path / "out" / "results.parquet").read_bytes()
    again = cli.invoke(app, args)
    assert again.exit_code == 2 and again.output.strip().startswith("error: --out: out already exists")
    assert len(seen) == 1 and (tmp_path / "out" / "results.parquet").read_bytes() == before
    assert (tmp_path / "demo" / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("api", ["run_config", "run_reproduction"])
def test_the_python_api_refuses_a_results_folder_in_use_before_running(tmp_path, monkeypatch, api):
    from structbandits.experiments import reproductions
    from structbandits.experiments.reproductions import run_reproduction

    def no_simulation(*args, **kwargs):
        raise AssertionError("simulated before checking the output folder")

    monkeypatch.setattr(pipeline, "run_experiment", no_simulation)
    entry = reproductions.REPRODUCTIONS["ermab-fig3"]
    monkeypatch.setitem(reproductions.REPRODUCTIONS, "ermab-fig3", entry._replace(run=no_simulation))
    used = tmp_path / "used"
    used.mkdir()
    (used / "results.csv").write_text("old")
    afile = tmp_path / "file.txt"
    afile.write_text("old")
    call = ((lambda out: pipeline.run_config("demo", [], out, progress=False)) if api == "run_config"
            else (lambda out: run_reproduction("ermab-fig3", out, quick=True, progress=False)))
    argument = "out_dir" if api == "run_config" else "out"
    with pytest.raises(ValidationError, match=f"{argument}: .*used already exists and is not empty"):
        call(used)
    with pytest.raises(ValidationError, match=f"{argument}: .*file.txt is an existing file"):
        call(afile)
    assert (used / "results.csv").read_text() == "old" and afile.read_text() == "old"
