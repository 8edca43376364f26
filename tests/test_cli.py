import json
import subprocess
import sys

import pandas as pd
from typer.testing import CliRunner

from structbandits.cli import app

runner = CliRunner()


def test_help_lists_the_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("demo", "run", "list", "sweep", "report", "reproduce", "analyse"):
        assert command in result.output


def test_console_script_entry_point():
    completed = subprocess.run([sys.executable, "-m", "structbandits", "list"], capture_output=True, text=True, check=True)
    assert completed.stdout.startswith("demo")
    assert "linear-k100" in completed.stdout


def test_demo_at_a_tiny_size_writes_the_results_folder(tmp_path):
    out = tmp_path / "demo"
    result = runner.invoke(app, ["demo", "--horizon", "30", "--seeds", "3", "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert f"Results: {out.resolve()}" in result.output
    for name in ("results.parquet", "results.csv", "summary.csv", "config.json", "cumulative_regret.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "cumulative_regret.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary["agent"]) == {"lints", "random"} and (summary["seeds"] == 3).all()
    record = json.loads((out / "config.json").read_text())
    assert record["config"]["horizon"] == 30 and record["seed"] == 0
    assert record["versions"]["jax"] and record["versions"]["numpyro"]
    frame = pd.read_parquet(out / "results.parquet")
    assert len(frame) == 2 * 3 * 30
    pd.testing.assert_frame_equal(frame, pd.read_csv(out / "results.csv"), check_dtype=False)


def test_run_a_toml_file_with_overrides(tmp_path):
    config = tmp_path / "mine.toml"
    config.write_text(
        'name = "mine"\nhorizon = 50\nseeds = 4\n\n[envs.small]\nkind = "linear"\nnum_actions = 3\nnum_features = 2\n\n'
        "[agents.lints]\n[agents.random]\n"
    )
    out = tmp_path / "out"
    result = runner.invoke(app, ["run", str(config), "--set", "horizon=20", "--set", "agents.lints.sigma0=2",
                                 "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    record = json.loads((out / "config.json").read_text())
    assert record["config"]["horizon"] == 20
    assert record["config"]["agents"]["lints"]["sigma0"] == 2.0
    assert set(pd.read_parquet(out / "results.parquet")["env"]) == {"small"}


def test_bad_value_is_one_line_and_exit_code_2(tmp_path):
    result = runner.invoke(app, ["run", "demo", "--set", "agents.lints.sigma0=-2", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert lines == ["error: agents.lints.sigma0: expected values > 0, got -2.0"]
    assert not (tmp_path / "x").exists()


def test_unknown_config_via_subprocess_has_no_traceback():
    completed = subprocess.run([sys.executable, "-m", "structbandits", "run", "nope.toml"], capture_output=True, text=True)
    assert completed.returncode == 2
    assert "Traceback" not in completed.stderr
    assert completed.stderr.strip().startswith("error: config: expected a TOML file or a built-in name")


def test_reproduce_runs_a_tiny_ermab_figure_and_rejects_unknown_names(tmp_path):
    from typer.testing import CliRunner

    from structbandits.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["reproduce", "ermab-fig3", "--seeds", "1", "--out", str(tmp_path), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "fig3_summary.csv").exists() and (tmp_path / "fig3.png").exists()
    assert "MNW-EG" in result.output and "Wall time" in result.output
    bad = runner.invoke(app, ["reproduce", "ermab-fig9"])
    assert bad.exit_code == 2 and "name: expected one of " in bad.output and "ermab-fig3, ermab-fig4" in bad.output
    horizon = runner.invoke(app, ["reproduce", "ermab-fig3", "--horizon", "5"])
    assert horizon.exit_code == 2 and "horizon: ermab-fig3 fixes its horizon" in horizon.output


def test_reproduce_runs_a_tiny_gambitts_experiment(tmp_path):
    from typer.testing import CliRunner

    from structbandits.cli import app

    result = CliRunner().invoke(app, ["reproduce", "gambitts-illustrative", "--seeds", "2", "--horizon", "20",
                                      "--out", str(tmp_path), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "summary.csv").exists() and "poGAMBITTS" in result.output
