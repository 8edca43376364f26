"""Sweeps: cells equal plain runs, resume after SIGKILL is bitwise equal, executors agree, CLI errors."""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from typer.testing import CliRunner

from structbandits.cli import app
from structbandits.errors import ValidationError
from structbandits.experiments import load_sweep, run_config, run_sweep
from structbandits.experiments.sweep import checkpoint_rounds

SWEEP_TOML = """name = "tiny"
horizon = 24
seeds = 3
seed = 7

[envs.small]
kind = "linear"
num_actions = 3
num_features = 2
noise_scale = 0.5

[agents.lints]
kind = "lints"
noise_scale = 0.5

[agents.random]

[sweep]
"agents.lints.sigma0" = [0.25, 1, 4, 16]
"""


@pytest.fixture(scope="module")
def config_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("sweep") / "tiny.toml"
    path.write_text(SWEEP_TOML)
    return path


@pytest.fixture(scope="module")
def reference(config_path, tmp_path_factory):
    """The uninterrupted in-process run that every other path must reproduce exactly."""
    spec = load_sweep(config_path, checkpoints=4)
    return run_sweep(spec, tmp_path_factory.mktemp("reference") / "out", progress=False)


def assert_same_sweep(result, reference, sigma0=None):
    """Bitwise equal to the reference (restricted to the grid values ``sigma0`` when given)."""
    frame, dataset = reference.frame, reference.dataset
    if sigma0 is not None:
        frame = frame[frame["agents.lints.sigma0"].isin(sigma0)].reset_index(drop=True)
        dataset = dataset.sel({"agents.lints.sigma0": sigma0})
    pd.testing.assert_frame_equal(result.frame, frame, check_exact=True)
    assert result.dataset.identical(dataset)


# Two cells on two workers: each worker process starts JAX and compiles once.
PAIR = ["agents.lints.sigma0=0.25,16"]


def test_every_cell_equals_the_plain_run_of_its_config(config_path, reference, tmp_path):
    ds = reference.dataset
    assert ds["cumulative_regret"].dims == ("agents.lints.sigma0", "env", "agent", "seed", "round")
    assert ds["final_cumulative_regret"].dims == ("agents.lints.sigma0", "env", "agent", "seed")
    assert list(ds["round"].values) == [6, 12, 18, 24] == list(checkpoint_rounds(24, 4))
    assert list(ds["agents.lints.sigma0"].values) == [0.25, 1.0, 4.0, 16.0]
    # The oracle: the cell sigma0=4 is exactly `structbandits run` of the config with sigma0=4.
    plain, _ = run_config(_without_sweep(config_path, tmp_path), ["agents.lints.sigma0=4.0"], tmp_path / "plain",
                          progress=False)
    final = plain[plain["round"] == 24].set_index(["agent", "seed"])["cumulative_regret"]
    for agent in ("lints", "random"):
        cell = ds["final_cumulative_regret"].sel({"agents.lints.sigma0": 4.0, "env": "small", "agent": agent})
        np.testing.assert_array_equal(cell.values, final.loc[agent].to_numpy())
    # The prior matters to LinTS and not to random (common random numbers across cells).
    lints = ds["final_cumulative_regret"].sel(env="small", agent="lints").values
    random = ds["final_cumulative_regret"].sel(env="small", agent="random").values
    assert not np.array_equal(lints[0], lints[3]) and (random == random[0]).all()
    # The file on disk holds the same Dataset; the summary has the band's ingredients per cell.
    assert xr.open_dataset(reference.folder / "sweep.nc", engine="h5netcdf").load().identical(ds)
    pd.testing.assert_frame_equal(pd.read_parquet(reference.folder / "sweep.parquet"), reference.frame)
    assert len(reference.summary) == 4 * 2 and (reference.summary["seeds"] == 3).all()
    assert (reference.folder / "sensitivity_agents_lints_sigma0.png").read_bytes()[:4] == b"\x89PNG"
    document = (reference.folder / "report.html").read_text()
    assert "<h1>tiny (sweep)</h1>" in document and "<h2>Grid</h2>" in document
    assert "<h2>sweep_summary.csv</h2>" in document and 'src="data:image/png;base64,' in document


def _without_sweep(config_path, tmp_path):
    path = tmp_path / "plain.toml"
    path.write_text(config_path.read_text().split("[sweep]")[0])
    return path


def test_a_cell_does_not_depend_on_the_other_cells(config_path, reference, tmp_path):
    # Another grid, other order, integer spelling of a float key: the shared cells are identical.
    alone = run_sweep(load_sweep(config_path, grid=["agents.lints.sigma0=16,4"], checkpoints=4),
                      tmp_path / "x", progress=False)
    assert list(alone.dataset["agents.lints.sigma0"].values) == [4.0, 16.0]
    got = alone.frame.sort_values(["agents.lints.sigma0", "env", "agent", "seed", "round"], kind="stable")
    pd.testing.assert_frame_equal(got.reset_index(drop=True),
                                  reference.frame[reference.frame["agents.lints.sigma0"].isin([4.0, 16.0])]
                                  .reset_index(drop=True), check_exact=True)


@pytest.mark.slow  # starts fresh Python processes, each importing JAX and compiling
def test_resume_after_sigkill_equals_the_uninterrupted_run(config_path, reference, tmp_path):
    out = tmp_path / "killed"
    # One cell per vmapped call, so cells are written one by one (the reference ran all four in one
    # call: the resumed result must not depend on how cells were chunked either).
    command = [sys.executable, "-m", "structbandits", "sweep", str(config_path), "--checkpoints", "4",
               "--cells-per-call", "1", "--out", str(out), "--no-progress"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while not list((out / "cells").glob("cell-*.parquet")) and process.poll() is None:
            assert time.monotonic() < deadline, "the sweep wrote no cell in time"
            time.sleep(0.01)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    done = len(list((out / "cells").glob("cell-*.parquet")))
    assert process.returncode == -signal.SIGKILL and 1 <= done < 4
    assert not (out / "sweep.nc").exists()
    # The killed run's cells and time are on record (written as its cells were), and count in the total.
    killed = json.loads((out / "sweep.json").read_text())["invocations"]
    assert len(killed) == 1 and killed[0]["cells_run"] == done and killed[0]["wall_s"] > 0
    (out / "cells" / ".cell-00003.parquet.999.partial").write_bytes(b"half a file")  # an interrupted write
    again = CliRunner().invoke(app, ["sweep", str(config_path), "--checkpoints", "4", "--out", str(out), "--no-progress"])
    assert again.exit_code == 2 and "pass --resume" in again.output
    result = CliRunner().invoke(app, ["sweep", str(config_path), "--checkpoints", "4", "--out", str(out),
                                      "--resume", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert f"{4 - done} run now, {done} already done" in result.output
    assert f"Sweep folder: {out.resolve()}" in result.output  # named before the cells run
    resumed = run_sweep(load_sweep(config_path, checkpoints=4), out, resume=True, progress=False)
    assert resumed.cells_run == 0
    record = json.loads((out / "sweep.json").read_text())
    assert [entry["cells_run"] for entry in record["invocations"]] == [done, 4 - done, 0]
    assert record["wall_time_s"] == resumed.total_wall_s == round(sum(e["wall_s"] for e in record["invocations"]), 2)
    assert resumed.total_wall_s >= killed[0]["wall_s"] > resumed.wall_s  # a no-op resume does not reset it
    assert_same_sweep(resumed, reference)
    other = CliRunner().invoke(app, ["sweep", str(config_path), "--grid", "agents.lints.sigma0=1,2", "--out", str(out),
                                     "--resume"])
    assert other.exit_code == 2 and "holds a different sweep" in other.output


@pytest.mark.slow  # starts fresh Python processes, each importing JAX and compiling
def test_process_executor_matches_in_process(config_path, reference, tmp_path):
    result = run_sweep(load_sweep(config_path, grid=PAIR, checkpoints=4), tmp_path / "p", executor="processes",
                       workers=2, progress=False)
    assert_same_sweep(result, reference, sigma0=[0.25, 16.0])


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("distributed") is None,
                    reason="the Dask extra is not installed (pip install 'structbandits[dask]')")
def test_dask_local_cluster_with_two_workers_matches_in_process(config_path, reference, tmp_path):
    result = run_sweep(load_sweep(config_path, grid=PAIR, checkpoints=4), tmp_path / "d", executor="dask", workers=2,
                       progress=False)
    assert_same_sweep(result, reference, sigma0=[0.25, 16.0])


def test_dask_without_the_extra_is_a_clear_error(config_path, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # makes `import distributed` fail
    with pytest.raises(ValidationError, match=r"pip install 'structbandits\[dask\]'"):
        run_sweep(load_sweep(config_path), tmp_path / "never", executor="dask", progress=False)
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize("grid, message", [
    ("agents.lints.sigmaX=1,2", "error: agents.lints.sigmaX: unknown key for kind 'lints'"),
    ("agents.nope.sigma0=1,2", "error: agents.nope.sigma0: the config has no [agents.nope] table"),
    ("envs.small.num_actions=3,-1", "error: envs.small.num_actions: expected an integer"),
    ("colour=1,2", "error: colour: not a sweepable key"),
    ("seed=1,2", "error: seed: not a sweepable key"),
    ("agents.lints.sigma0=", "error: --grid: expected KEY=V1,V2"),
])
def test_bad_grid_keys_exit_2_with_one_line_naming_the_key(config_path, tmp_path, grid, message):
    result = CliRunner().invoke(app, ["sweep", str(config_path), "--grid", grid, "--out", str(tmp_path / "x")])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), lines
    assert not (tmp_path / "x").exists()


def test_run_sweep_refuses_a_folder_of_something_else(config_path, tmp_path):
    # A results folder of another run (here one file of it) is never written into, nor is a file.
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "report.html").write_text("another run's report")
    spec = load_sweep(config_path, checkpoints=4)
    with pytest.raises(ValidationError, match="out_dir: .* already exists and is not empty"):
        run_sweep(spec, tmp_path / "run", progress=False)
    with pytest.raises(ValidationError, match="out_dir: .* holds no sweep to resume"):
        run_sweep(spec, tmp_path / "run", resume=True, progress=False)
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["report.html"]
    assert (tmp_path / "run" / "report.html").read_text() == "another run's report"
    with pytest.raises(ValidationError, match="out_dir: .* is an existing file"):
        run_sweep(spec, tmp_path / "run" / "report.html", progress=False)


def test_a_config_without_a_grid_is_rejected():
    with pytest.raises(ValidationError, match=r"sweep: expected a \[sweep\] table"):
        load_sweep("demo")


def test_docs_name_every_value_key_and_an_unknown_name_lists_the_sweeps():
    from pathlib import Path

    from structbandits.experiments.registry import VALUE_KEYS

    text = " ".join((Path(__file__).parents[1] / "docs" / "sweeps.md").read_text().split())
    start = text.index("*value keys*")
    sentence = text[start:text.index("form one program group", start)]
    for kind, keys in VALUE_KEYS.items():
        for key in keys:
            assert f"`{key}`" in sentence, (kind, key)
        if keys:
            assert f"`{kind}`" in sentence, kind
    with pytest.raises(ValidationError, match=r"got 'no-such-sweep'; or a built-in sweep \(.*lints-prior"):
        load_sweep("no-such-sweep")


def test_a_string_where_a_list_of_settings_belongs_is_named():
    with pytest.raises(ValidationError, match=r"grid: expected a list of strings such as \['agents.lints.sigma0=0.5,1'\], "
                                              r"got the string 'agents.lints.sigma0=1,2'"):
        load_sweep("demo", grid="agents.lints.sigma0=1,2")
    with pytest.raises(ValidationError, match="overrides: expected a list of strings such as"):
        load_sweep("lints-prior", "seeds=5")


@pytest.mark.parametrize("option", ["--checkpoints", "--cells-per-call", "--workers"])
def test_bad_sweep_options_are_named_as_the_command_line_spells_them(config_path, tmp_path, option):
    result = CliRunner().invoke(app, ["sweep", str(config_path), option, "0", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and result.output.strip() == f"error: {option}: expected an integer >= 1, got 0"
    assert not (tmp_path / "x").exists()
