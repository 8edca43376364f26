"""HTML reports: self-contained (tables, base64 PNGs, config, versions, seeds), escaped, written by the commands."""

import base64
import re

from typer.testing import CliRunner

from structbandits.cli import app

runner = CliRunner()


def _images(document):
    return re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', document)


def test_run_writes_a_self_contained_report_and_report_rerenders_it(tmp_path):
    config = tmp_path / "mine.toml"
    config.write_text('name = "mine"\ndescription = "<script>alert(1)</script> & co"\nhorizon = 12\nseeds = 2\n'
                      'seed = 5\n\n[envs.small]\nkind = "linear"\nnum_actions = 3\nnum_features = 2\n\n'
                      "[agents.random]\n")
    out = tmp_path / "out"
    result = runner.invoke(app, ["run", str(config), "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    document = (out / "report.html").read_text()
    assert document.startswith("<!DOCTYPE html>") and "<h1>mine</h1>" in document
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in document and "<script>" not in document
    assert "<h2>summary.csv</h2>" in document and "final_cumulative_regret" in document and "<table" in document
    assert "<td>root seed</td>" in document and "<td>5</td>" in document  # the seed, in the run table
    assert "<td>jax</td>" in document and "<td>numpyro</td>" in document  # library versions
    assert "&quot;horizon&quot;: 12" in document  # the resolved config
    images = _images(document)
    assert len(images) == 1 and base64.b64decode(images[0])[:8] == b"\x89PNG\r\n\x1a\n"
    assert base64.b64decode(images[0]) == (out / "cumulative_regret.png").read_bytes()
    (out / "report.html").unlink()
    again = runner.invoke(app, ["report", str(out)])
    assert again.exit_code == 0 and f"Report: {(out / 'report.html').resolve()}" in again.output
    assert _images((out / "report.html").read_text()) == images


def test_report_of_a_folder_that_is_not_a_results_folder_is_exit_2(tmp_path):
    missing = runner.invoke(app, ["report", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and missing.output.strip().startswith("error: results_dir: expected a results folder")
    empty = runner.invoke(app, ["report", str(tmp_path)])
    assert empty.exit_code == 2 and len(empty.output.strip().splitlines()) == 1
