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


# --- Reports people read (issue 27 item 5): words, widths, sizes, links; figures whose legends cover nothing.
# Oracles: expected headers, cells and descriptions written out by hand; figure geometry from matplotlib's
# renderer (bounding boxes of the legend, the axes and the tick labels).

import json
import tomllib
from pathlib import Path

import pandas as pd
import pytest

from structbandits.experiments.report import render_report

CONFIGS = Path(__file__).resolve().parents[1] / "structbandits" / "experiments" / "configs"


def _headers(document):
    return re.findall(r"<th[^>]*>([^<]*)</th>", document)


def test_headers_are_words_and_a_mean_shares_its_cell_with_its_standard_error(tmp_path):
    pd.DataFrame({"agents.lints.sigma0": [0.1, 10.0], "agent": ["lints", "random"],
                  "final_cumulative_regret": [832.123, 2643.0], "final_cumulative_regret_se": [27.31, 18.0],
                  "gini": [0.339, float("nan")], "gini_se": [0.0123, float("nan")], "wall_s": [1.5, 2.0],
                  "tv_distance": [0.25, 0.0]}).to_csv(tmp_path / "summary.csv", index=False)
    document = render_report(tmp_path).read_text()
    table = document.split("<h2>summary.csv</h2>")[1]
    assert _headers(table)[:6] == ["agents.lints.sigma0", "agent", "final cumulative regret (s.e.)", "Gini (s.e.)",
                                   "wall time (s)", "TV distance"]
    assert "<td>832.1 (27)</td>" in table and "<td>2643 (18)</td>" in table
    assert "<td>0.339 (0.012)</td>" in table and "<td></td>" in table  # a missing mean: an empty cell
    assert 'title="final_cumulative_regret, final_cumulative_regret_se"' in table  # the CSV's names, on hover
    assert not [header for header in _headers(document) if "_" in header and "." not in header]


def test_every_table_scrolls_in_its_own_box_and_the_files_are_linked(tmp_path):
    pd.DataFrame({f"column_{i}": [1.0] for i in range(30)}).to_csv(tmp_path / "summary.csv", index=False)
    (tmp_path / "results.csv").write_text("a\n1\n")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "config.json").write_text(json.dumps({"config": {"name": "wide", "seeds": 2, "horizon": 3}}))
    document = render_report(tmp_path).read_text()
    style = document.split("<style>")[1].split("</style>")[0]
    assert re.search(r"\.table-wrap\s*\{[^}]*overflow-x:\s*auto", style)
    assert document.count("<table>") == document.count('<div class="table-wrap"><table>') >= 2
    links = re.findall(r'<a href="([^"]+)">', document)
    assert {"summary.csv", "results.csv", "notes.txt", "config.json"} <= set(links)
    assert all((tmp_path / link).is_file() for link in links)


def _record(folder, name, record):
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(json.dumps(record))
    pd.DataFrame({"agent": ["a"], "final_cumulative_regret": [1.0]}).to_csv(folder / "summary.csv", index=False)
    return render_report(folder).read_text()


def _description_lines(document):
    return re.findall(r"<p>([^<]*)</p>(<p class='meta'>This run:[^<]*</p>)?", document)[0]


def test_the_description_states_the_run_s_own_seeds_and_rounds(tmp_path):
    demo = tomllib.loads((CONFIGS / "demo.toml").read_text())["description"]
    assert demo == "LinTS vs uniform random on a 10-arm, 5-feature linear bandit (500 rounds, 20 seeds)"
    document = _record(tmp_path / "demo", "config.json",
                       {"config": {"name": "demo", "description": demo, "seeds": 3, "horizon": 12}, "seed": 0})
    text, note = _description_lines(document)
    assert text == "LinTS vs uniform random on a 10-arm, 5-feature linear bandit (12 rounds, 3 seeds)"
    assert note == "<p class='meta'>This run: 3 seeds, 12 rounds; by default 20 seeds, 500 rounds.</p>"
    # The built-in size: the description as written.
    text, note = _description_lines(_record(tmp_path / "full", "config.json", {"config": {
        "name": "demo", "description": demo, "seeds": 20, "horizon": 500}}))
    assert text == demo and note == "<p class='meta'>This run: 20 seeds, 500 rounds.</p>"
    # A user's config: no defaults known, the description kept and the size stated.
    text, note = _description_lines(_record(tmp_path / "mine", "config.json", {"config": {
        "name": "demo", "description": "mine: 50 seeds", "seeds": 5, "horizon": 9}}))
    assert text == "mine: 50 seeds" and note == "<p class='meta'>This run: 5 seeds, 9 rounds.</p>"


def test_a_quick_reproduction_says_so_and_only_its_default_counts_are_replaced(tmp_path):
    from structbandits.experiments.reproductions import REPRODUCTIONS

    learning = REPRODUCTIONS["ermab-learning"].description  # mentions "every 20 rounds": not the horizon (200)
    text, note = _description_lines(_record(tmp_path / "l", "reproduction.json", {
        "reproduction": "ermab-learning", "description": learning, "quick": True, "seeds": 1, "horizon": 40}))
    assert text == learning.replace("&", "&amp;") and "(episodes restart every 20 rounds)" in text
    assert note == "<p class='meta'>This run: 1 seed, 40 rounds (--quick); by default 5 seeds, 200 rounds.</p>"
    gambitts = REPRODUCTIONS["gambitts-illustrative"].description
    text, note = _description_lines(_record(tmp_path / "g", "reproduction.json", {
        "reproduction": "gambitts-illustrative", "description": gambitts, "quick": False, "seeds": 50,
        "horizon": 1000}))
    assert text == "GAMBITTS section 6.1: the 1-D mHealth case, po/fo-GAMBITTS vs standard TS (50 runs, 1000 rounds)"
    assert note == "<p class='meta'>This run: 50 seeds, 1000 rounds; by default 250 seeds.</p>"


def test_only_the_default_count_itself_is_replaced():
    from structbandits.experiments.report import _replace_count

    text = "50 seeds; 150 seeds, 1.50 seeds, 5,000 rounds, 5000 rounds, 50 runs, 50 seedlings"
    assert _replace_count(text, 50, 7, "seeds|runs") == "7 seeds; 150 seeds, 1.50 seeds, 5,000 rounds, 5000 rounds, " \
                                                      "7 runs, 50 seedlings"
    assert _replace_count(text, 5000, 30, "rounds") == "50 seeds; 150 seeds, 1.50 seeds, 30 rounds, 30 rounds, " \
                                                       "50 runs, 50 seedlings"


# --- Figures


def _restless_frame():
    """A hand-made tidy ERMAB frame: 2 seeds, two groups, tall bars (where an in-axes legend would sit)."""
    rows = []
    cells = [("synthetic", "B=10", 10), ("synthetic", "B=20", 20), ("maternal", "A 60%", 20),
             ("diabetes", "lambda=0", 30)]
    for domain, setting, budget in cells:
        policies = ["NoAct", "Opt", "MMR"] + (["HR-RR"] if domain == "diabetes" else [])
        for k, policy in enumerate(policies):
            for seed in (0, 1):
                for group, name in enumerate("AB"):
                    rows.append({"domain": domain, "setting": setting, "budget": budget, "policy": policy,
                                 "seed": seed, "group": group, "group_name": name, "group_size": 5,
                                 "group_mean": 10.0 - k + group + seed, "utility": 10.0 - k + seed,
                                 "gini": 0.1 * (k + 1), "wall_s": 0.1})
    return pd.DataFrame(rows)


def _axes_of(fig):
    from matplotlib.axes import Axes

    return [ax for ax in fig.findobj(Axes) if ax.get_visible()]


def _drawn(fig):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


@pytest.mark.parametrize("figure", ["fig3", "fig4"])
def test_ermab_figures_have_one_legend_outside_every_panel(figure):
    from structbandits.experiments.restless_plots import ermab_fig3_figure, ermab_fig4_figure

    fig = ermab_fig3_figure(_restless_frame()) if figure == "fig3" else ermab_fig4_figure(_restless_frame())
    renderer = _drawn(fig)
    axes = _axes_of(fig)
    assert len(axes) == (2 if figure == "fig3" else 2 * 4)  # fig4: a Gini and a reward panel per setting
    assert not [ax for ax in axes if ax.get_legend() is not None]  # no legend inside a panel
    (legend,) = fig.legends
    labels = [text.get_text() for text in legend.get_texts()]
    expected = ["No Act", "Opt", "MMR"] + (["HR-RR"] if figure == "fig4" else [])
    assert labels == expected
    box = legend.get_window_extent(renderer)
    for ax in axes:
        assert not box.overlaps(ax.get_window_extent(renderer)), ax.get_title()
    if figure == "fig4":
        titles = [ax.get_title() for ax in axes]
        assert titles == ["Gini (lower is better)", "total reward / arm"] * 4  # the reward panels too
        settings = [panel.get_suptitle() for panel in fig.subfigs if panel.get_suptitle()]
        assert settings == ["synthetic: B=10", "synthetic: B=20", "maternal: A 60%, B=20", "diabetes: lambda=0, B=30"]


def test_log_axis_tick_labels_are_the_grid_values_and_do_not_overlap(monkeypatch, tmp_path):
    from matplotlib.figure import Figure

    import structbandits.experiments.sweep_outputs as sweep_outputs

    made = []

    class Recording(Figure):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(sweep_outputs, "Figure", Recording)
    grid = [0.5, 1.0, 1.75, 3.0, 6.0]  # about a decade: matplotlib's own labels read "3×10⁰ 4×10⁰", overlapping
    summary = pd.DataFrame({"agents.mets.effect_scale": grid, "env": "e", "agent": "mets", "seeds": 5,
                            "final_cumulative_regret": [5.0, 4.0, 3.0, 4.0, 5.0],
                            "final_cumulative_regret_se": 0.1})
    sweep_outputs.plot_sensitivity(summary, "agents.mets.effect_scale", tmp_path / "s.png")
    (fig,) = made
    renderer = _drawn(fig)
    (ax,) = _axes_of(fig)
    labels = [label for label in ax.get_xticklabels(minor=False) + ax.get_xticklabels(minor=True)
              if label.get_text() and label.get_visible()]
    assert [label.get_text() for label in labels] == ["0.5", "1", "1.75", "3", "6"]
    boxes = sorted((label.get_window_extent(renderer) for label in labels), key=lambda box: box.x0)
    assert all(left.x1 < right.x0 for left, right in zip(boxes, boxes[1:]))
