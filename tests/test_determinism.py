"""Every CLI run is reproducible from its saved config.json: re-running it in a fresh process gives
bit-identical results."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from structbandits.cli import app

TINY = """
name = "tiny"
horizon = 12
seeds = 2
seed = 7

[envs.linear]
num_actions = 3
num_features = 2

[agents.lints]
propensity_draws = 4
"""


def bitwise_equal(first: pd.DataFrame, second: pd.DataFrame) -> None:
    assert list(first.columns) == list(second.columns) and len(first) == len(second)
    for column in first.columns:
        a, b = first[column].to_numpy(), second[column].to_numpy()
        if a.dtype.kind == "f":
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), column  # NaN propensities included
        else:
            assert (a == b).all(), column


@pytest.mark.slow  # a fresh process / a second compile: about 10-20 s idle
def test_a_run_repeats_bitwise_from_its_saved_config_json(tmp_path):
    config = tmp_path / "tiny.toml"
    config.write_text(TINY)
    first = tmp_path / "first"
    result = CliRunner().invoke(app, ["run", str(config), "--set", "agents.lints.sigma0=2", "--out", str(first),
                                      "--no-progress"])
    assert result.exit_code == 0, result.output
    record = json.loads((first / "config.json").read_text())
    assert record["seed"] == 7 and record["config"]["agents"]["lints"]["sigma0"] == 2.0

    second = tmp_path / "second"  # a fresh process, from nothing but the saved config.json
    done = subprocess.run([sys.executable, "-m", "structbandits", "run", str(first / "config.json"), "--out",
                           str(second), "--no-progress"], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert done.returncode == 0, done.stderr
    assert json.loads((second / "config.json").read_text())["config"] == record["config"]
    bitwise_equal(pd.read_parquet(first / "results.parquet"), pd.read_parquet(second / "results.parquet"))
    assert (first / "summary.csv").read_text() == (second / "summary.csv").read_text()

    frame = pd.read_parquet(first / "results.parquet")  # the comparison has content: seeds differ
    by_seed = [group["reward"].to_numpy() for _, group in frame.groupby("seed")]
    assert len(by_seed) == 2 and not np.array_equal(*by_seed)
    assert np.isfinite(frame["propensity"]).all()


def test_a_broken_config_json_is_a_one_line_error(tmp_path):
    broken = tmp_path / "config.json"
    broken.write_text("{not json")
    result = CliRunner().invoke(app, ["run", str(broken), "--no-progress"])
    assert result.exit_code == 2
    assert "is not valid JSON" in result.output
    broken.write_text("[1, 2]")
    result = CliRunner().invoke(app, ["run", str(broken), "--no-progress"])
    assert result.exit_code == 2 and "expected a JSON object" in result.output
