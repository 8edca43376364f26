"""Every CLI run is reproducible from its saved config.json: re-running it in a fresh process gives
bit-identical results."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from structbandits.cli import app

TINY = """
name = "tiny"
horizon = 15
seeds = 3
seed = 7
seed_batch = 2          # two batches: 2 seeds, then 1

[envs.mixed]
kind = "mixed_effect"
num_actions = 6
num_effects = 2
num_features = 2
context_pool = 10

[agents.mets]
[agents.lints-matched]
propensity_draws = 4
[agents.random]
"""


def bitwise_equal(first: pd.DataFrame, second: pd.DataFrame) -> None:
    assert list(first.columns) == list(second.columns) and len(first) == len(second)
    for column in first.columns:
        a, b = first[column].to_numpy(), second[column].to_numpy()
        if a.dtype.kind == "f":
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), column  # NaN propensities included
        else:
            assert (a == b).all(), column


def test_a_run_repeats_bitwise_from_its_saved_config_json(tmp_path):
    config = tmp_path / "tiny.toml"
    config.write_text(TINY)
    first = tmp_path / "first"
    result = CliRunner().invoke(app, ["run", str(config), "--set", "agents.mets.factored=true", "--out", str(first),
                                      "--no-progress"])
    assert result.exit_code == 0, result.output
    record = json.loads((first / "config.json").read_text())
    assert record["seed"] == 7 and record["config"]["agents"]["mets"]["factored"] is True

    second = tmp_path / "second"  # a fresh process, from nothing but the saved config.json
    done = subprocess.run([sys.executable, "-m", "structbandits", "run", str(first / "config.json"), "--out",
                           str(second), "--no-progress"], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert done.returncode == 0, done.stderr
    assert json.loads((second / "config.json").read_text())["config"] == record["config"]
    bitwise_equal(pd.read_parquet(first / "results.parquet"), pd.read_parquet(second / "results.parquet"))
    assert (first / "summary.csv").read_text() == (second / "summary.csv").read_text()

    third = tmp_path / "third"  # the oracle can fail: another root seed gives other results
    result = CliRunner().invoke(app, ["run", str(first / "config.json"), "--set", "seed=8", "--out", str(third),
                                      "--no-progress"])
    assert result.exit_code == 0, result.output
    other = pd.read_parquet(third / "results.parquet")
    assert not np.array_equal(other["reward"].to_numpy(), pd.read_parquet(first / "results.parquet")["reward"].to_numpy())


def test_a_broken_config_json_is_a_one_line_error(tmp_path):
    broken = tmp_path / "config.json"
    broken.write_text("{not json")
    result = CliRunner().invoke(app, ["run", str(broken), "--no-progress"])
    assert result.exit_code == 2
    assert "is not valid JSON" in result.output
    broken.write_text("[1, 2]")
    result = CliRunner().invoke(app, ["run", str(broken), "--no-progress"])
    assert result.exit_code == 2 and "expected a JSON object" in result.output
