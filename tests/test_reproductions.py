"""Every registered reproduction is complete and tiny at its quick size; one runs end to end here.

Running all of them at their quick size would cost most of the CI budget (each compiles its agents),
so the end-to-end run here covers the built-in-config path (mets-logistic; the CLI tests run
ermab-fig3 and gambitts-illustrative); the others are checked to build their components (configs
resolve, experiments construct every agent on every environment) without compiling, and their quick
paths (grids, the drift reproduction, the response database) are checked with the runs stubbed.
"""

import json
import re
from functools import partial
from pathlib import Path

import numpy as np

import pytest

from structbandits.experiments.reproductions import REPRODUCTIONS, run_reproduction

# The CLI tests run ermab-fig3 and gambitts-illustrative end to end, and test_gambitts_env_agents runs the
# optional-prompting and ensemble agents in the runner; here the built-in-config path.
END_TO_END = ("mets-logistic",)


def test_every_reproduction_has_a_tiny_quick_size_and_a_description():
    assert len(REPRODUCTIONS) >= 15
    for name, entry in REPRODUCTIONS.items():
        assert entry.name == name and len(entry.description) > 20, name
        assert 1 <= entry.quick_seeds <= 2 and entry.quick_seeds <= entry.default_seeds, name
        assert (entry.default_horizon is None) == (entry.quick_horizon is None), name
        assert entry.quick_horizon is None or entry.quick_horizon <= min(50, entry.default_horizon), name


@pytest.mark.parametrize("name", sorted(n for n in REPRODUCTIONS if n.startswith("gambitts")))
def test_every_gambitts_reproduction_builds_every_agent_on_every_environment(name):
    from structbandits.experiments.gambitts import gambitts_experiment

    # The small shipped database keeps this construction check fast; the default database is checked below.
    experiment = gambitts_experiment(name, propensity_draws=2,
                                     response_db="synthetic" if name == "gambitts-simulator-draws" else "llm")
    for env in experiment.envs.values():
        for agent_name, factory in experiment.agents.items():
            assert callable(factory(env).act), (name, agent_name)


@pytest.mark.parametrize("config", ["mets-linear", "mets-logistic", "mets-movielens-linear", "mets-movielens-logistic"])
def test_every_mets_reproduction_config_resolves(config):
    from structbandits.experiments.config import load_config, resolve_config

    resolved = resolve_config(load_config(config))
    assert resolved.seeds == 50 and resolved.horizon == 5000 and resolved.agents


@pytest.mark.slow
@pytest.mark.parametrize("name", END_TO_END)
def test_reproduction_runs_quick_and_leaves_a_complete_folder(name, tmp_path):
    entry = REPRODUCTIONS[name]
    outcome = run_reproduction(name, tmp_path, quick=True, progress=False)
    assert len(outcome.summary) > 0 and outcome.summary.notna().any().any()
    record = json.loads((tmp_path / "reproduction.json").read_text())
    assert record["reproduction"] == name and record["quick"] is True and record["seeds"] == entry.quick_seeds
    assert record["horizon"] == entry.quick_horizon and record["versions"]["jax"]
    document = (tmp_path / "report.html").read_text()
    assert f"<h1>{name}</h1>" in document and "<td>quick</td>" in document and "summary" in document
    images = re.findall(r'<img src="data:image/png;base64,', document)
    assert len(images) == len(list(tmp_path.glob("*.png"))) >= 1


def test_quick_gambitts_grids_run_the_ends_of_each_grid_and_the_full_run_runs_all(monkeypatch, tmp_path):
    import pandas as pd

    import structbandits.experiments.gambitts as gambitts
    from structbandits.errors import ValidationError

    import structbandits.experiments.results as results

    calls = []
    monkeypatch.setattr(gambitts, "run_gambitts_experiment",
                        lambda name, **kw: calls.append((name, kw["grid"])) or pd.DataFrame({"x": [0.0]}))
    monkeypatch.setattr(results, "summarize", lambda frame: frame)
    for name, values in gambitts.GRIDS.items():
        entry = REPRODUCTIONS[name]
        entry.quick_run(tmp_path / name / "quick", 1, 5, False)
        entry.run(tmp_path / name / "full", 1, 5, False)
        assert calls[-2:] == [(name, (values[0], values[-1])), (name, None)], name
        build = partial(gambitts.gambitts_experiment, name, response_db="llm")  # small and fast; the grid is the point
        ends, full = build(grid=(values[-1], values[0])), build()
        assert len(ends.envs) * len(ends.agents) < len(full.envs) * len(full.agents) / 2
        assert ends.agents and ends.envs
    assert list(gambitts.gambitts_experiment("gambitts-arms", grid=(40, 3), response_db="llm").envs) == \
        ["linear-3d-K3", "linear-3d-K40"]
    assert [a for a in gambitts.gambitts_experiment("gambitts-dimension", grid=(20,), response_db="llm").agents
            if "d=" in a] == ["poGAMBITTS:d=20", "foGAMBITTS:d=20", "ens-poGAMBITTS:d=20"]
    assert all(REPRODUCTIONS[n].quick_run is None for n in REPRODUCTIONS if n not in gambitts.GRIDS)
    with pytest.raises(ValidationError, match="grid: expected a non-empty subset of"):
        gambitts.gambitts_experiment("gambitts-arms", grid=(4,))
    with pytest.raises(ValidationError, match="grid: gambitts-illustrative has no grid"):
        gambitts.gambitts_experiment("gambitts-illustrative", grid=(1,))


def test_the_drift_reproduction_runs_each_drift_config_and_combines_their_summaries(monkeypatch, tmp_path):
    import pandas as pd

    import structbandits.experiments.pipeline as pipeline
    from structbandits.experiments.config import load_config
    from structbandits.experiments.nonstationary import DRIFT_CONFIGS

    calls = []

    def fake_run_config(config, overrides, out, progress):  # two agents, two seeds, two rounds per config
        calls.append((config, overrides))
        Path(out).mkdir(parents=True)
        shift = 10.0 * len(calls)
        frame = pd.DataFrame({"env": "e", "agent": np.repeat(["a", "b"], 4), "seed": np.tile([0, 0, 1, 1], 2),
                              "round": np.tile([1, 2], 4), "reward": 1.0, "realized_regret": 0.0,
                              "cumulative_regret": shift + np.arange(8.0)})
        return frame, Path(out)

    monkeypatch.setattr(pipeline, "run_config", fake_run_config)
    outcome = run_reproduction("drift", tmp_path, seeds=2, horizon=7, progress=False)
    assert [c for c, _ in calls] == list(DRIFT_CONFIGS)
    # A 7-round run scales the change points 501, 1001, 1501 of 2000 rounds to round(r * 7 / 2000) = 2, 4, 5
    # (1.75, 3.50, 5.25), so a short run still meets them; the other configs have none.
    assert calls[0][1] == ["seeds=2", "horizon=7", "envs.changepoint.change_rounds=[2, 4, 5]"]
    assert all(o == ["seeds=2", "horizon=7"] for _, o in calls[1:])
    summary = outcome.summary
    assert list(summary["setting"]) == ["changepoint", "changepoint", "smooth", "smooth", "habituation", "habituation",
                                        "stationary", "stationary"]
    # agent a, config i: final rounds hold cumulative regret 10i + 1 and 10i + 3 -> mean 10i + 2.
    np.testing.assert_allclose(summary.loc[summary["agent"] == "a", "final_cumulative_regret"], [12, 22, 32, 42])
    assert (tmp_path / "summary.csv").is_file() and (tmp_path / "final_regret.png").stat().st_size > 5000
    calls.clear()
    run_reproduction("drift", tmp_path / "full", seeds=2, horizon=2000, progress=False)
    assert all(o == ["seeds=2", "horizon=2000"] for _, o in calls)  # the full horizon keeps the configs' rounds
    for config in DRIFT_CONFIGS:  # the configs exist and compare stationary LinTS with forgetting
        agents = load_config(config)["agents"]
        assert {"lints", "lints-exponential", "lints-stabilised", "lints-window"} <= set(agents), config


def test_gambitts_reproductions_run_on_the_paper_calibrated_synthetic_database_by_default(monkeypatch, tmp_path):
    import structbandits.experiments.gambitts as gambitts
    from structbandits.errors import ValidationError

    env = gambitts.gambitts_experiment("gambitts-illustrative").envs["linear-1d"]
    draws = env.model.params["treatment_draws"]  # (K, C, N, S): 1000 messages per (prompt, context) cell
    assert gambitts.RESPONSE_DB == "synthetic" and draws.shape[2] == 1000
    styles = list(env.model.params["styles"])
    rows = draws.reshape(-1, draws.shape[-1])
    corr = np.corrcoef(rows[:, styles.index("optimism")], rows[:, styles.index("encouragement")])[0, 1]
    assert corr < -0.5  # the seed's Table 1: encouragement -0.96 with optimism (within-component); the LLM database: +0.80
    llm = gambitts.gambitts_experiment("gambitts-illustrative", response_db="llm").envs["linear-1d"]
    assert llm.model.params["treatment_draws"].shape[2] < 10
    with pytest.raises(ValidationError, match="gambitts-simulator-draws needs 1000 messages per cell"):
        gambitts.gambitts_experiment("gambitts-simulator-draws", response_db="llm")
    with pytest.raises(ValidationError, match="response_db: expected \"synthetic\", \"llm\" or the path"):
        gambitts.gambitts_experiment("gambitts-illustrative", response_db="")
    with pytest.raises(ValidationError, match="response_db: only the GAMBITTS reproductions"):
        run_reproduction("ermab-fig3", tmp_path / "x", response_db="llm")
    seen = []
    monkeypatch.setattr(gambitts, "run_gambitts_experiment", lambda name, **kw: seen.append(kw["response_db"]) or
                        __import__("pandas").DataFrame({"x": [0.0]}))
    import structbandits.experiments.results as results
    monkeypatch.setattr(results, "summarize", lambda frame: frame)
    REPRODUCTIONS["gambitts-noise"].run(tmp_path / "a", 1, 5, False)
    REPRODUCTIONS["gambitts-noise"].quick_run(tmp_path / "b", 1, 5, False, response_db="llm")
    assert seen == ["synthetic", "llm"]


def test_the_cli_passes_response_db_and_refuses_it_where_it_does_not_apply(tmp_path):
    from typer.testing import CliRunner

    from structbandits.cli import app

    result = CliRunner().invoke(app, ["reproduce", "ermab-fig3", "--response-db", "llm", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "response_db: only the GAMBITTS reproductions" in result.output
    result = CliRunner().invoke(app, ["reproduce", "gambitts-noise", "--response-db", "", "--out", str(tmp_path / "y")])
    assert result.exit_code == 2 and "response_db: expected \"synthetic\", \"llm\" or the path" in result.output
