"""Decision sensitivity of a sweep: pooled action shares, seed-matched TV distance from the reference
value, propensities and final regret per grid value, checked against hand-computed numbers.

The hand-built frame: grid keys k1 = [0.1, 1, 10] (index i) and k2 = ["x", "y", "z"] (index j),
agents "ts" and "ucb", seeds s = 0, 1, 2, checkpoints 5 and 10; every final window (rounds 6..10 by
the labels, 10 decisions by the counts) has K = 3 actions:

    ts : counts [10 - c - s, c, s] with c = 2 i² + j; propensity 0.5 + 0.1 i + 0.01 j + 0.02 s;
         regret 10 i + j + 3 s
    ucb: counts [10 - s, s, 0]; no propensities (NaN); regret 5 + s

Pooled over k2 and the seeds, ts's shares at k1 index i are [0.8 − 0.2 i², 0.1 + 0.2 i², 0.1]
(i = 0, 1, 2: [.8, .1, .1], [.6, .3, .1], [0, .9, .1]); the reference is k1 = 1 (the middle). Matched
by seed and k2, each simulation moves |c_i − c_1| / 10 = |2 i² − 2| / 10 of its decisions between actions
0 and 1, so TV = 0.2, 0, 0.6 in every pair (s.e. 0). The first checkpoint's rows hold values that would
break every number.
"""

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from structbandits.errors import ValidationError
from structbandits.experiments import load_sweep, run_sweep
from structbandits.experiments.decision_sensitivity import (
    COLUMNS,
    decision_sensitivity,
    has_decisions,
    write_decision_sensitivity,
)
from structbandits.experiments.report import render_report
from structbandits.experiments.sweep_outputs import log_axis, write_sweep_outputs

K1, K2 = [0.1, 1.0, 10.0], ["x", "y", "z"]
KEYS = ["k1", "k2"]
SE3 = 0.02 / np.sqrt(3)  # sd over seeds of values spaced 0.02 apart is 0.02


def hand_frame() -> pd.DataFrame:
    rows = []
    for i, k1 in enumerate(K1):
        for j, k2 in enumerate(K2):
            for agent in ("ts", "ucb"):
                for s in range(3):
                    # The first window: nonsense that any use of it would show.
                    rows.append({"k1": k1, "k2": k2, "env": "e", "agent": agent, "seed": s, "round": 5,
                                 "cumulative_regret": 999.0, "cumulative_realized_regret": 999.0, "mean_reward": 0.0,
                                 "window_propensity": 0.001, "action_counts": np.array([0, 0, 5])})
                    if agent == "ts":
                        c = 2 * i * i + j
                        counts, propensity, regret = [10 - c - s, c, s], 0.5 + 0.1 * i + 0.01 * j + 0.02 * s, \
                            10.0 * i + j + 3 * s
                    else:
                        counts, propensity, regret = [10 - s, s, 0], np.nan, 5.0 + s
                    rows.append({"k1": k1, "k2": k2, "env": "e", "agent": agent, "seed": s, "round": 10,
                                 "cumulative_regret": regret, "cumulative_realized_regret": regret + 1,
                                 "mean_reward": 0.5, "window_propensity": propensity,
                                 "action_counts": np.array(counts)})
    return pd.DataFrame(rows)


def rows_of(table, key, agent, row="value"):
    return table[(table["key"] == key) & (table["agent"] == agent) & (table["row"] == row)].reset_index(drop=True)


@pytest.fixture(scope="module")
def table():
    return decision_sensitivity(hand_frame(), KEYS)


def test_columns_are_documented_and_the_table_has_one_row_per_value_and_one_summary(table):
    assert list(table.columns) == list(COLUMNS)
    # 2 keys × 1 env × 2 agents × (3 values + 1 summary)
    assert len(table) == 16 and (table["row"] == "summary").sum() == 4


def test_pooled_shares_tv_and_reference_for_the_first_key(table):
    ts = rows_of(table, "k1", "ts")
    assert list(ts["value"]) == K1 and (ts["reference"] == 1.0).all()
    np.testing.assert_allclose(np.stack(ts["action_shares"]), [[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.0, 0.9, 0.1]],
                               atol=1e-12)
    np.testing.assert_allclose(ts["tv_distance"], [0.2, 0.0, 0.6], atol=1e-12)
    np.testing.assert_allclose(ts["tv_distance_se"], [0.0, 0.0, 0.0], atol=1e-12)
    assert list(ts["tv_pairs"]) == [9, 9, 9] and (ts["note"] == "").all()
    assert list(ts["cells"]) == [3, 3, 3] and list(ts["seeds"]) == [3, 3, 3]
    assert list(ts["round"]) == [10, 10, 10] and list(ts["decisions"]) == [90, 90, 90]
    assert list(ts["top_action"]) == [0, 0, 1]
    np.testing.assert_allclose(ts["top_share"], [0.8, 0.6, 0.9])


def test_propensity_and_regret_means_with_standard_errors_over_seeds(table):
    ts = rows_of(table, "k1", "ts")
    # Per seed, averaged over k2: 0.51 + 0.1 i + 0.02 s; over seeds 0.53 + 0.1 i, sd 0.02.
    np.testing.assert_allclose(ts["window_propensity"], [0.53, 0.63, 0.73])
    np.testing.assert_allclose(ts["window_propensity_se"], [SE3] * 3)
    # Regret per seed 10 i + 1 + 3 s: mean 10 i + 4, sd 3, s.e. 3 / √3.
    np.testing.assert_allclose(ts["final_cumulative_regret"], [4.0, 14.0, 24.0])
    np.testing.assert_allclose(ts["final_cumulative_regret_se"], [np.sqrt(3)] * 3)
    summary = rows_of(table, "k1", "ts", "summary").iloc[0]
    assert summary["max_tv_distance"] == pytest.approx(0.6) and summary["max_tv_value"] == 10.0
    assert summary["final_cumulative_regret_range"] == pytest.approx(20.0)
    assert summary["window_propensity_range"] == pytest.approx(0.2)
    assert pd.isna(summary["value"]) and pd.isna(summary["tv_distance"])


def test_the_second_key_pools_over_the_first(table):
    ts = rows_of(table, "k2", "ts")
    assert list(ts["value"]) == K2 and (ts["reference"] == "y").all()
    # Action 1 pooled over i and s: 3 (0 + 2 + 8) + 9 j of 90; action 2: 9 of 90.
    expected = np.array([[51, 30, 9], [42, 39, 9], [33, 48, 9]]) / 90
    np.testing.assert_allclose(np.stack(ts["action_shares"]), expected, atol=1e-12)
    np.testing.assert_allclose(ts["tv_distance"], [0.1, 0.0, 0.1], atol=1e-12)
    np.testing.assert_allclose(ts["window_propensity"], [0.62, 0.63, 0.64])
    np.testing.assert_allclose(ts["window_propensity_se"], [SE3] * 3)
    np.testing.assert_allclose(ts["final_cumulative_regret"], [13.0, 14.0, 15.0])
    summary = rows_of(table, "k2", "ts", "summary").iloc[0]
    assert summary["max_tv_distance"] == pytest.approx(0.1) and summary["max_tv_value"] == "x"
    assert summary["final_cumulative_regret_range"] == pytest.approx(2.0)
    assert summary["window_propensity_range"] == pytest.approx(0.02)


def test_an_agent_without_propensities_gets_nan_and_keys_it_ignores_give_zero_distance(table):
    for key in KEYS:
        ucb = rows_of(table, key, "ucb")
        np.testing.assert_allclose(np.stack(ucb["action_shares"]), [[27 / 30, 3 / 30, 0]] * 3, atol=1e-12)
        assert (ucb["tv_distance"] == 0).all()
        assert ucb["window_propensity"].isna().all() and ucb["window_propensity_se"].isna().all()
        np.testing.assert_allclose(ucb["final_cumulative_regret"], [6.0] * 3)
        np.testing.assert_allclose(ucb["final_cumulative_regret_se"], [np.sqrt(1 / 3)] * 3)
        summary = rows_of(table, key, "ucb", "summary").iloc[0]
        assert summary["max_tv_distance"] == 0 and pd.isna(summary["window_propensity_range"])
        assert pd.isna(summary["max_tv_value"])  # all 0: no value to name
        assert summary["final_cumulative_regret_range"] == 0


def _numbers(rows):
    return rows.drop(columns=["agent", "value", "tv_distance"]).assign(
        action_shares=rows["action_shares"].map(tuple))


def test_swapping_two_agents_swaps_their_rows(table):
    frame = hand_frame()
    frame["agent"] = frame["agent"].map({"ts": "ucb", "ucb": "ts"})
    swapped = decision_sensitivity(frame, KEYS)
    for key in KEYS:
        for a, b in (("ts", "ucb"), ("ucb", "ts")):
            pd.testing.assert_frame_equal(_numbers(rows_of(swapped, key, a)), _numbers(rows_of(table, key, b)))


def test_swapping_two_values_moves_their_rows_and_the_reference_follows_the_grid_order(table):
    frame = hand_frame()
    frame["k1"] = frame["k1"].map({0.1: 10.0, 1.0: 1.0, 10.0: 0.1})
    swapped = rows_of(decision_sensitivity(frame, KEYS), "k1", "ts").set_index("value")
    original = rows_of(table, "k1", "ts").set_index("value")
    for new, old in ((0.1, 10.0), (10.0, 0.1), (1.0, 1.0)):
        for column in ("tv_distance", "final_cumulative_regret", "window_propensity"):
            assert swapped.loc[new, column] == pytest.approx(original.loc[old, column])
    # Another grid order: the middle is now 0.1, shares [.8, .1, .1].
    reordered = rows_of(decision_sensitivity(hand_frame(), KEYS, grid={"k1": [1.0, 0.1, 10.0]}), "k1", "ts")
    assert (reordered["reference"] == 0.1).all()
    np.testing.assert_allclose(reordered.set_index("value").loc[[1.0, 0.1, 10.0], "tv_distance"], [0.2, 0.0, 0.8],
                               atol=1e-12)
    with pytest.raises(ValidationError, match="k1"):
        decision_sensitivity(hand_frame(), KEYS, grid={"k1": [1.0, 10.0]})


def test_an_even_grid_takes_the_lower_middle_as_reference():
    frame = hand_frame()
    frame = frame[(frame["k2"] == "x") & (frame["agent"] == "ts")].drop(columns="k2")
    extra = frame[frame["k1"] == 10.0].assign(k1=100.0)  # a fourth value; shares as at 10
    table = decision_sensitivity(pd.concat([frame, extra], ignore_index=True), ["k1"])
    ts = rows_of(table, "k1", "ts")
    assert list(ts["value"]) == [0.1, 1.0, 10.0, 100.0] and (ts["reference"] == 1.0).all()
    # Pooled over seeds only (j = 0): action 1 has 3 · 2 i² of 30, action 2 has 3 of 30.
    np.testing.assert_allclose(ts["tv_distance"], [0.2, 0.0, 0.6, 0.6], atol=1e-12)
    assert list(ts["cells"]) == [1, 1, 1, 1]


def test_frames_without_decisions_are_recognised():
    frame = hand_frame()
    assert has_decisions(frame)
    assert not has_decisions(frame.drop(columns=["action_counts"]))
    assert not has_decisions(frame.drop(columns=["window_propensity"]))
    mixed = frame.copy()
    mixed.loc[:3, "action_counts"] = np.nan  # cells from before the columns existed, resumed
    assert not has_decisions(mixed)
    with pytest.raises(ValidationError, match="window_propensity"):
        decision_sensitivity(frame.drop(columns=["window_propensity", "action_counts"]), KEYS)
    assert write_decision_sensitivity(mixed, KEYS, "/nonexistent") == (None, [])
    with pytest.raises(ValidationError, match=f"keys: expected a list of grid keys such as \\['{KEYS[0]}'\\]"):
        decision_sensitivity(frame, KEYS[0])  # one key as a string, not a list


def test_log_axis_rule():
    assert log_axis([0.1, 1, 10]) and log_axis([1, 10])
    assert not log_axis([1, 2, 5]) and not log_axis([-1, 10]) and not log_axis([0, 100])


def _sweep_folder(tmp_path, name="out"):
    folder = tmp_path / name
    folder.mkdir()
    record = {"sweep": {"base": {"name": "hand", "seeds": 3, "horizon": 10},
                        "grid": {"k1": K1, "k2": K2}, "checkpoints": 2}, "cells": []}
    (folder / "sweep.json").write_text(json.dumps(record))
    return folder


def test_write_sweep_outputs_writes_the_csv_the_plots_the_dataset_variable_and_the_report(tmp_path):
    folder = _sweep_folder(tmp_path)
    dataset, _, plots = write_sweep_outputs(hand_frame(), KEYS, folder, wall_s=1.0)
    csv = pd.read_csv(folder / "decision_sensitivity.csv")
    assert list(csv.columns) == list(COLUMNS)
    ts = csv[(csv["key"] == "k1") & (csv["agent"] == "ts") & (csv["row"] == "value")]
    np.testing.assert_allclose(ts["tv_distance"], [0.2, 0.0, 0.6], atol=1e-9)
    np.testing.assert_allclose(np.array([json.loads(s) for s in ts["action_shares"]]),
                               [[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.0, 0.9, 0.1]], atol=1e-6)
    for key in KEYS:
        path = folder / f"decisions_{key}.png"
        assert path in plots and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    final = dataset["final_window_propensity"]
    assert final.dims == ("k1", "k2", "env", "agent", "seed")
    assert final.sel(k1=10.0, k2="y", env="e", agent="ts", seed=2).item() == pytest.approx(0.5 + 0.2 + 0.01 + 0.04)
    assert np.isnan(final.sel(agent="ucb").values).all()
    assert xr.open_dataset(folder / "sweep.nc", engine="h5netcdf").load().identical(dataset)
    document = (folder / "report.html").read_text()
    section = document.split("<h2>Decision sensitivity</h2>")[1]
    assert "structbandits.diagnostics.sensitivity.power_scaling_sensitivity" in section
    assert 'alt="decisions_k1.png"' in section and 'alt="decisions_k2.png"' in section
    assert "<h2>decisions_k1</h2>" not in document  # not also among the other plots
    assert "max_tv_distance" in section and "tv_distance_se" in section and "<td>ts</td>" in section


def test_a_frame_without_decisions_writes_the_rest_and_the_report_says_why(tmp_path):
    folder = _sweep_folder(tmp_path)
    old = hand_frame().drop(columns=["window_propensity", "action_counts"])
    dataset, _, plots = write_sweep_outputs(old, KEYS, folder, wall_s=1.0)
    assert "final_window_propensity" not in dataset and "final_cumulative_regret" in dataset
    assert not (folder / "decision_sensitivity.csv").exists() and not list(folder.glob("decisions_*.png"))
    assert len(plots) == 2 and (folder / "sweep_summary.csv").exists()
    document = (folder / "report.html").read_text()
    assert "<h2>Decision sensitivity</h2>" in document and "Not available" in document
    # `structbandits report` on such a folder renders it too; a plain run's folder gets no section.
    assert "Not available" in render_report(folder).read_text()
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "config.json").write_text(json.dumps({"config": {"name": "run"}}))
    assert "Decision sensitivity" not in render_report(plain).read_text()


SWEEP_TOML = """name = "decisions"
horizon = 20
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
propensity_draws = 64

[agents.random]

[sweep]
"agents.lints.sigma0" = [0.1, 1, 10]
"""


def test_a_real_sweep_reports_how_lints_decisions_move_with_its_prior(tmp_path):
    path = tmp_path / "decisions.toml"
    path.write_text(SWEEP_TOML)
    result = run_sweep(load_sweep(path, checkpoints=2), tmp_path / "out", progress=False)
    csv = pd.read_csv(result.folder / "decision_sensitivity.csv")
    values = csv[csv["row"] == "value"].set_index(["agent", "value"])
    random, lints = values.loc["random"], values.loc["lints"]
    assert list(lints.index) == [0.1, 1.0, 10.0] and (csv["reference"] == 1.0).all()
    # sigma0 is not random's: under common random numbers its choices are the same in every cell.
    assert (random["tv_distance"] == 0).all()
    # The uniform baseline logs its propensity 1/K.
    np.testing.assert_allclose(random["window_propensity"], 1 / 3)
    assert ((lints["window_propensity"] > 0) & (lints["window_propensity"] <= 1)).all()
    assert lints.loc[1.0, "tv_distance"] == 0 and max(lints.loc[0.1, "tv_distance"], lints.loc[10.0, "tv_distance"]) > 0
    assert (values["decisions"] == 30).all()  # rounds 11..20 of 3 seeds
    # Matched TV by hand from the frame: each seed's final shares against its own at sigma0 = 1.
    last = result.frame[(result.frame["round"] == 20) & (result.frame["agent"] == "lints")]
    shares = {(row[0], row[1]): np.asarray(row[2]) / np.sum(row[2])
              for row in last[["agents.lints.sigma0", "seed", "action_counts"]].itertuples(index=False)}
    for sigma0 in (0.1, 10.0):
        tv = [0.5 * np.abs(shares[sigma0, seed] - shares[1.0, seed]).sum() for seed in range(3)]
        assert lints.loc[sigma0, "tv_distance"] == pytest.approx(np.mean(tv))
        assert lints.loc[sigma0, "tv_distance_se"] == pytest.approx(np.std(tv, ddof=1) / np.sqrt(3))
    # The csv's means are the frame's final windows averaged over seeds.
    frame = result.frame[(result.frame["round"] == 20) & (result.frame["agent"] == "lints")]
    expected = frame.groupby("agents.lints.sigma0")["window_propensity"].mean()
    np.testing.assert_allclose(lints["window_propensity"], expected.loc[[0.1, 1.0, 10.0]])
    final = result.dataset["final_window_propensity"].sel(env="small", agent="lints")
    np.testing.assert_allclose(final.mean("seed").values, expected.loc[[0.1, 1.0, 10.0]])
    assert (result.folder / "decisions_agents_lints_sigma0.png").read_bytes()[:4] == b"\x89PNG"
    assert "<h2>Decision sensitivity</h2>" in (result.folder / "report.html").read_text()


def _final_rows(counts: dict, keys: list[str], propensity=None, regret=None) -> pd.DataFrame:
    """A frame of final windows (round 10) from {(key values..., seed): counts}, with a first window
    (round 5) of nonsense before each; propensity/regret: functions of (key values..., seed)."""
    rows = []
    for cell, cell_counts in counts.items():
        base = {**dict(zip(keys, cell[:-1])), "env": "e", "agent": "ts", "seed": cell[-1],
                "cumulative_realized_regret": 0.0, "mean_reward": 0.0}
        rows.append({**base, "round": 5, "cumulative_regret": 999.0, "window_propensity": 0.001,
                     "action_counts": np.full(len(cell_counts), 7)})
        rows.append({**base, "round": 10, "cumulative_regret": regret(*cell) if regret else 1.0,
                     "window_propensity": propensity(*cell) if propensity else np.nan,
                     "action_counts": np.array(cell_counts)})
    return pd.DataFrame(rows)


def test_tv_is_matched_by_seed_so_swapped_preferences_do_not_cancel():
    # Two seeds whose truths differ: at k = 0 each seed prefers the arm the other seed's reference
    # simulation prefers. Pooled over seeds both values have shares [.5, .5] (pooled TV 0); each seed
    # moved all its decisions (matched TV 1). k = 2 behaves like the reference.
    frame = _final_rows({(0, 0): [0, 10], (0, 1): [10, 0], (1, 0): [10, 0], (1, 1): [0, 10],
                         (2, 0): [10, 0], (2, 1): [0, 10]}, ["k"])
    ts = rows_of(decision_sensitivity(frame, ["k"]), "k", "ts")
    np.testing.assert_allclose(np.stack(ts["action_shares"]), [[0.5, 0.5]] * 3)
    np.testing.assert_allclose(ts["tv_distance"], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(ts["tv_distance_se"], [0.0, 0.0, 0.0])
    assert list(ts["tv_pairs"]) == [2, 2, 2] and list(ts["decisions"]) == [20, 20, 20]
    summary = rows_of(decision_sensitivity(frame, ["k"]), "k", "ts", "summary").iloc[0]
    assert summary["max_tv_distance"] == 1.0 and summary["max_tv_value"] == 0


# Keys k = [0, 1, 2] (reference 1) and m = ["u", "v"] (reference "u"), seeds 0 and 1, K = 2.
MATCHED = {(0, "u", 0): [0, 10], (0, "u", 1): [10, 0], (0, "v", 0): [5, 5], (0, "v", 1): [0, 10],
           (1, "u", 0): [10, 0], (1, "u", 1): [0, 10], (1, "v", 0): [10, 0], (1, "v", 1): [0, 10],
           (2, "u", 0): [0, 0], (2, "u", 1): [0, 10], (2, "v", 0): [2, 8], (2, "v", 1): [4, 6]}


def test_matched_tv_averages_per_seed_then_over_seeds_and_skips_empty_windows():
    table = decision_sensitivity(_final_rows(MATCHED, ["k", "m"]), ["k", "m"])
    k = rows_of(table, "k", "ts")
    # Per pair (k vs 1 at the same m and seed): k = 0: s0 (1, .5), s1 (1, 0); k = 2: s0 (skipped: no
    # decisions at m = u, .8), s1 (0, .4). Per seed .75/.5 and .8/.2; for two seeds s.e. = |a − b| / 2.
    np.testing.assert_allclose(k["tv_distance"], [0.625, 0.0, 0.5])
    np.testing.assert_allclose(k["tv_distance_se"], [0.125, 0.0, 0.3])
    assert list(k["tv_pairs"]) == [4, 4, 3]
    assert k["note"].tolist()[:2] == ["", ""]
    assert k["note"][2] == "1 of 4 pairs skipped: no decisions in a final window"
    # Pooled (descriptive) shares: k = 0 [15, 25] / 40, k = 2 [6, 24] / 30.
    np.testing.assert_allclose(np.stack(k["action_shares"]), [[0.375, 0.625], [0.5, 0.5], [0.2, 0.8]])
    assert list(k["top_action"]) == [1, 0, 1] and list(k["decisions"]) == [40, 40, 30]
    m = rows_of(table, "m", "ts")
    # v vs u per (k, seed): s0: .5, 0, (skipped: the reference window is empty); s1: 1, 0, .4.
    np.testing.assert_allclose(m["tv_distance"], [0.0, (0.25 + 1.4 / 3) / 2])
    np.testing.assert_allclose(m["tv_distance_se"], [0.0, abs(0.25 - 1.4 / 3) / 2])
    assert list(m["tv_pairs"]) == [5, 5] and list(m["cells"]) == [3, 3]
    summary = rows_of(table, "m", "ts", "summary").iloc[0]
    assert summary["max_tv_value"] == "v" and summary["max_tv_distance"] == pytest.approx(0.3583333333)


# A key n that changes the number of actions (3 or 5; reference 3) and a prior key s = [0.1, 1.0]
# (reference 0.1), seeds 0 and 1; propensity 0.5 + 0.1 seed (+ 0.2 at K = 5), regret n + 10 s + seed.
BY_K = {(3, 0.1, 0): [4, 0, 0], (3, 0.1, 1): [0, 4, 0], (3, 1.0, 0): [2, 2, 0], (3, 1.0, 1): [0, 4, 0],
        (5, 0.1, 0): [0, 0, 0, 0, 4], (5, 0.1, 1): [4, 0, 0, 0, 0],
        (5, 1.0, 0): [0, 0, 0, 0, 4], (5, 1.0, 1): [3, 0, 0, 0, 1]}


def _by_k_frame():
    return _final_rows(BY_K, ["n", "s"], propensity=lambda n, s, seed: 0.5 + 0.1 * seed + (0.2 if n == 5 else 0),
                       regret=lambda n, s, seed: n + 10 * s + seed)


def test_a_key_that_changes_the_number_of_actions_gets_nan_distance_and_every_other_column(tmp_path):
    table = decision_sensitivity(_by_k_frame(), ["n", "s"])
    n = rows_of(table, "n", "ts")
    assert list(n["value"]) == [3, 5] and (n["reference"] == 3).all()
    assert list(n["cells"]) == [2, 2] and list(n["seeds"]) == [2, 2] and list(n["round"]) == [10, 10]
    assert list(n["decisions"]) == [16, 16]
    np.testing.assert_allclose(n["action_shares"][0], [0.375, 0.625, 0])
    np.testing.assert_allclose(n["action_shares"][1], [7 / 16, 0, 0, 0, 9 / 16])
    assert list(n["top_action"]) == [1, 4]
    np.testing.assert_allclose(n["top_share"], [0.625, 9 / 16])
    assert n["tv_distance"][0] == 0 and np.isnan(n["tv_distance"][1]) and np.isnan(n["tv_distance_se"][1])
    assert list(n["tv_pairs"]) == [4, 0]
    assert n["note"][1] == "4 of 4 pairs skipped: a different number of actions K than at the reference"
    np.testing.assert_allclose(n["window_propensity"], [0.55, 0.75])
    np.testing.assert_allclose(n["window_propensity_se"], [0.05, 0.05])
    np.testing.assert_allclose(n["final_cumulative_regret"], [9.0, 11.0])  # per seed (4 + 13) / 2 + seed
    np.testing.assert_allclose(n["final_cumulative_regret_se"], [0.5, 0.5])
    summary = rows_of(table, "n", "ts", "summary").iloc[0]
    assert summary["max_tv_distance"] == 0 and pd.isna(summary["max_tv_value"])  # no value beats another
    assert summary["note"].startswith("max_tv_value empty")
    assert summary["window_propensity_range"] == pytest.approx(0.2)
    assert summary["final_cumulative_regret_range"] == pytest.approx(2.0)

    s = rows_of(table, "s", "ts")
    # Pairs match n and the seed, so they never mix K: at s = 1, s0 (.5 at K = 3, 0 at K = 5),
    # s1 (0, .25): per seed .25 and .125.
    np.testing.assert_allclose(s["tv_distance"], [0.0, 0.1875])
    np.testing.assert_allclose(s["tv_distance_se"], [0.0, 0.0625])
    assert list(s["tv_pairs"]) == [4, 4] and list(s["decisions"]) == [16, 16]
    # Pooled shares would mix K = 3 and 5: none, and no top action.
    assert list(s["action_shares"]) == [[], []] and list(s["top_action"]) == [-1, -1]
    assert s["top_share"].isna().all()
    assert (s["note"] == "action_shares empty: the cells have different numbers of actions (3, 5)").all()
    np.testing.assert_allclose(s["window_propensity"], [0.65, 0.65])
    np.testing.assert_allclose(s["final_cumulative_regret"], [5.5, 14.5])
    summary = rows_of(table, "s", "ts", "summary").iloc[0]
    assert summary["max_tv_value"] == 1.0 and summary["max_tv_distance"] == pytest.approx(0.1875)

    # The sweep's outputs are all written, the CSV with NaN distance and empty shares.
    folder = tmp_path / "out"
    folder.mkdir()
    sweep = {"base": {"name": "k", "seeds": 2, "horizon": 10}, "grid": {"n": [3, 5], "s": [0.1, 1.0]}, "checkpoints": 2}
    (folder / "sweep.json").write_text(json.dumps({"sweep": sweep, "cells": []}))
    write_sweep_outputs(_by_k_frame(), ["n", "s"], folder, wall_s=1.0)
    csv = pd.read_csv(folder / "decision_sensitivity.csv")
    assert list(csv.columns) == list(COLUMNS)
    values = csv[csv["row"] == "value"]
    assert values.loc[values["key"] == "n", "tv_distance"].isna().tolist() == [False, True]
    assert values.loc[values["key"] == "s", "action_shares"].isna().all()
    for name in ("sweep.nc", "sweep_summary.csv", "report.html", "decisions_n.png", "decisions_s.png"):
        assert (folder / name).exists(), name


def test_all_nan_distances_name_no_value():
    only_k5 = {cell: counts for cell, counts in BY_K.items() if cell[0] == 5}
    frame = _final_rows(only_k5, ["n", "s"])
    table = decision_sensitivity(frame, ["n", "s"], grid={"n": [3, 5], "s": [0.1, 1.0]})  # no reference cells
    n = rows_of(table, "n", "ts")
    assert list(n["value"]) == [5] and np.isnan(n["tv_distance"][0])
    assert n["note"][0] == "4 of 4 pairs skipped: no simulation with that seed and other keys' values at the reference"
    summary = rows_of(table, "n", "ts", "summary").iloc[0]
    assert np.isnan(summary["max_tv_distance"]) and pd.isna(summary["max_tv_value"])


SEEDS_TOML = """name = "seeds-grid"
horizon = 12
seed = 3

[envs.small]
kind = "linear"
num_actions = 3
num_features = 2

[agents.random]

[sweep]
seeds = [2, 3]
"""


def test_a_seeds_grid_key_keeps_its_column_and_the_count_becomes_num_seeds(tmp_path):
    path = tmp_path / "seeds.toml"
    path.write_text(SEEDS_TOML)
    result = run_sweep(load_sweep(path, checkpoints=2), tmp_path / "out", progress=False)
    summary = pd.read_csv(result.folder / "sweep_summary.csv")
    assert list(summary.columns[:4]) == ["seeds", "env", "agent", "num_seeds"]
    assert summary["seeds"].tolist() == [2, 3] and summary["num_seeds"].tolist() == [2, 3]
    csv = pd.read_csv(result.folder / "decision_sensitivity.csv")
    values = csv[csv["row"] == "value"]
    assert values["value"].tolist() == [2, 3] and values["seeds"].tolist() == [2, 3]
    # Simulation i is the same in both cells (common random numbers): the shared seeds chose alike;
    # the third seed has no partner at the reference (2 seeds).
    assert values["tv_distance"].tolist() == [0, 0] and values["tv_pairs"].tolist() == [2, 2]
    assert values["note"].tolist()[1] == "1 of 3 pairs skipped: no simulation with that seed and other keys' " \
                                         "values at the reference"
    assert result.dataset["final_cumulative_regret"].dims == ("seeds", "env", "agent", "seed")
    for name in ("sweep.nc", "sensitivity_seeds.png", "decisions_seeds.png", "report.html"):
        assert (result.folder / name).exists(), name
