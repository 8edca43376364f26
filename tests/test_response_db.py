"""The response-database builder, replay generator and style scorers, without the llm/text extras.

Oracles: a fake generator whose messages carry a known style level and a fake embedder that puts
that level on a known direction (plus noise): the scorers must recover the ordering of the levels
(Spearman > 0.9 on held-out messages), the database's "high" prompts must score above their "low"
prompts on their own style, and a build killed half-way and resumed must equal an uninterrupted one.
"""

from __future__ import annotations

import json
import re
import zlib
from importlib import resources

import jax
import numpy as np
import pandas as pd
import pytest

from structbandits.data.mhealth import STYLES, llm_response_db, load_response_db, style_parameters
from structbandits.data.mhealth_prompts import PROMPTS, render_prompt
from structbandits.envs.generators import ResponseDatabaseGenerator, key_to_seed
from structbandits.errors import ValidationError
from structbandits.structure.embeddings import fit_ridge_scorer, fit_vae_scorer, score_styles, validation_table
from structbandits.tools.build_response_db import (
    build_response_db,
    choose_prompts,
    generate_messages,
    graded_tasks,
    interleaved,
    response_tasks,
)

DIM = 24
_DIRECTIONS = np.linalg.qr(np.random.default_rng(7).normal(size=(DIM, len(STYLES))))[0].T  # (S, D) orthonormal


def fake_generator(prompt, context, key) -> str:
    """'<style> level <x>': the requested grade (or 8 / 2 for high / low prompts) plus N(0, 0.5²) noise."""
    style, _, level = str(prompt).rpartition("-")
    target = {"high": 8.0, "low": 2.0}.get(level)
    target = float(level[5:]) if target is None else target
    noise = np.random.default_rng(key_to_seed(key)).normal(0.0, 0.5)
    return f"{style} level {target + noise:.3f} at {context[0]} {context[1]}"


def fake_embed(texts) -> np.ndarray:
    """Embeddings tanh((level − 5) / 3) · 3 · direction(style) + N(0, 0.3²) noise seeded by the text."""
    rows = []
    for text in texts:
        style, level = re.match(r"(\w+) level ([-\d.]+)", text).groups()
        noise = np.random.default_rng(zlib.crc32(text.encode())).normal(0.0, 0.3, DIM)
        rows.append(3.0 * np.tanh((float(level) - 5.0) / 3.0) * _DIRECTIONS[STYLES.index(style)] + noise)
    return np.asarray(rows)


def _graded_set(per_grade: int, seed: int):
    tasks = graded_tasks(STYLES[:3], per_grade, seed)
    texts = [fake_generator(t["prompt_id"], (t["curr_loc"], t["prev_steps"]), jax.random.PRNGKey(t["seed"])) for t in tasks]
    return fake_embed(texts), np.asarray([t["style"] for t in tasks]), np.asarray([t["grade"] for t in tasks])


def test_scorers_recover_a_known_one_dimensional_ordering():
    x, style, grade = _graded_set(6, seed=0)
    xt, style_t, grade_t = _graded_set(3, seed=1)
    styles = STYLES[:3]
    scorers = {"vae": fit_vae_scorer(x, style, grade, styles, key=jax.random.PRNGKey(0), steps=800, hidden=8),
               "ridge": fit_ridge_scorer(x, style, grade, styles)}
    table = validation_table(scorers, xt, style_t, grade_t)
    assert list(table["style"]) == list(styles) and (table["n_test"] == 33).all()
    assert (table["spearman_vae"] > 0.9).all() and (table["spearman_ridge"] > 0.9).all(), table
    for scorer in scorers.values():  # oriented and standardised on the training messages
        own = score_styles(scorer, x)[np.arange(len(x)), [styles.index(s) for s in style]]
        for s in styles:
            assert abs(own[style == s].mean()) < 1e-6 and abs(own[style == s].std() - 1) < 1e-6
    flipped = fit_vae_scorer(x, style, 10 - grade, styles, key=jax.random.PRNGKey(0), steps=800, hidden=8)
    np.testing.assert_allclose(score_styles(flipped, xt), -score_styles(scorers["vae"], xt), atol=1e-9)
    with pytest.raises(ValidationError, match="style_of_row"):
        fit_ridge_scorer(x[:20], style[:20], grade[:20], ("optimism",))


def test_prompt_catalogue_matches_the_synthetic_numbering():
    synthetic = [(p["prompt"], p["prompt_id"]) for p in style_parameters()["prompts"]]
    assert synthetic == [(p.prompt, p.prompt_id) for p in PROMPTS]
    chosen = choose_prompts(10)
    assert {p.style for p in chosen} == {"optimism", "formality", "severity", "clarity", "encouragement"}
    assert "mildly pessimistic" in render_prompt("optimism-low", "work", 2)
    assert "5,000-9,999 steps" in render_prompt("optimism-low", "work", 2)
    assert "level 7 on a scale" in render_prompt("humor-grade7", "other", 4)
    with pytest.raises(ValidationError, match="prompt"):
        render_prompt("humor-medium", "home", 1)


def test_build_resumes_and_scores_high_above_low(tmp_path):
    kwargs = dict(num_prompts=4, samples=2, graded=4, vae_steps=300, progress=False)
    calls = {"n": 0}

    def dying(prompt, context, key):
        calls["n"] += 1
        if calls["n"] > 400:
            raise RuntimeError("killed")
        return fake_generator(prompt, context, key)

    with pytest.raises(RuntimeError, match="killed"):
        build_response_db(tmp_path / "a", dying, fake_embed, **kwargs)
    partial = (tmp_path / "a" / ".build-mhealth_llm_responses" / "messages.jsonl").read_text().splitlines()
    assert len(partial) == 400
    card = build_response_db(tmp_path / "a", fake_generator, fake_embed, **kwargs)
    build_response_db(tmp_path / "b", fake_generator, fake_embed, **kwargs)
    resumed = pd.read_parquet(tmp_path / "a" / "mhealth_llm_responses.parquet")
    fresh = pd.read_parquet(tmp_path / "b" / "mhealth_llm_responses.parquet")
    pd.testing.assert_frame_equal(resumed.drop(columns="seconds"), fresh.drop(columns="seconds"))
    assert card["counts"]["database_rows"] == 4 * 12 * 2 == len(resumed)
    assert card["counts"]["graded_rows"] == 20 * 11 * 4
    assert json.loads((tmp_path / "a" / "mhealth_llm_responses.json").read_text())["counts"] == card["counts"]
    # 33 training messages per style and 11 held out: a looser bar than the scorer oracle above
    assert min(min(row["spearman_vae"], row["spearman_ridge"]) for row in card["validation"]) > 0.75
    db = load_response_db(tmp_path / "a" / "mhealth_llm_responses.parquet")
    for style in ("optimism", "formality"):
        means = db.groupby("prompt_id")[style].mean()
        assert means[f"{style}-high"] > means[f"{style}-low"]
    replay = ResponseDatabaseGenerator(db)
    text = replay("optimism-high", ("work", 3), jax.random.PRNGKey(5))
    number = db.loc[db.prompt_id == "optimism-high", "prompt"].iloc[0]
    assert text == replay(number, ("work", 3), jax.random.PRNGKey(5))
    assert text in set(db.loc[(db.prompt_id == "optimism-high") & (db.curr_loc == "work") & (db.prev_steps == 3), "message"])
    with pytest.raises(ValidationError, match="context"):
        replay("optimism-high", ("garden", 3), jax.random.PRNGKey(5))


def test_generate_messages_skips_done_tasks(tmp_path):
    tasks = response_tasks(choose_prompts(1), 2) + graded_tasks(("humor",), 1)
    seen = []

    def counting(prompt, context, key):
        seen.append(prompt)
        return fake_generator(prompt, context, key)

    first = generate_messages(tasks, counting, tmp_path / "m.jsonl", progress=False)
    again = generate_messages(tasks, counting, tmp_path / "m.jsonl", progress=False)
    assert len(seen) == len(tasks) == 24 + 11
    pd.testing.assert_frame_equal(first, again)


def test_shipped_database_has_the_simulator_columns():
    db = llm_response_db()
    card = json.loads((resources.files("structbandits.data") / "mhealth_llm_responses.json").read_text())
    assert {"prompt", "prompt_id", "curr_loc", "prev_steps", "message", "prompt_text", *card["styles"]} <= set(db.columns)
    assert len(db) == card["counts"]["database_rows"] and sorted(set(db["prompt_id"])) == sorted(card["prompts"])
    counts = db.groupby(["prompt", "curr_loc", "prev_steps"]).size()
    assert len(counts) == db["prompt"].nunique() * 12 and counts.min() >= 1
    assert (db["message"].str.len() > 0).all()
    ridge = llm_response_db("ridge")
    np.testing.assert_array_equal(ridge[card["styles"][0]], db[f"ridge_{card['styles'][0]}"])
    with pytest.raises(ValidationError, match="scorer"):
        llm_response_db("bert")


def test_simulator_runs_on_the_llm_database_and_refuses_oversized_requests():
    from structbandits.envs.mhealth import mhealth_bandit

    db = llm_response_db()
    per_cell = int(db.groupby(["prompt", "curr_loc", "prev_steps"]).size().min())
    env = mhealth_bandit("linear-1d", 2, noise_scale=0.0, response_db="llm")
    p = env.model.params
    assert p["treatment_counts"].min() == per_cell and set(p["prompts"]) <= set(db["prompt"])
    rows = db[db["prompt"] == p["prompts"][0]]
    home1 = rows[(rows.curr_loc == "home") & (rows.prev_steps == 1)]["optimism"]  # cell 0
    np.testing.assert_allclose(p["expected_outcomes"][0, 0], 82.7949 - 0.13961 * home1.mean())
    one = mhealth_bandit("linear-1d", 2, samples_per_cell=1, response_db="llm").model.params
    assert one["treatment_counts"].max() == 1
    with pytest.raises(ValidationError, match="samples_per_cell.*synthetic"):
        mhealth_bandit("linear-1d", 2, samples_per_cell=per_cell + 1, response_db="llm")
    synthetic = mhealth_bandit("linear-1d", 3, samples_per_cell=7, response_db="synthetic").model.params
    assert synthetic["treatment_counts"].min() == synthetic["treatment_counts"].max() == 7
    default = mhealth_bandit("linear-1d", 2, noise_scale=0.0).model.params  # the LLM database is the default
    np.testing.assert_array_equal(default["treatment_draws"], p["treatment_draws"])
    with pytest.raises(ValidationError, match="response_db"):
        mhealth_bandit("linear-1d", 2, response_db=None)


# --- re-prompting, batches and the data card (issue 26) -------------------------------------------------


def _meta_unless(seed: int) -> bool:
    """The fake model's rule: a try whose seed is divisible by 3 talks about the message."""
    return seed % 3 == 0


def reprompt_generator(prompt, context, key) -> str:
    seed = key_to_seed(key)
    if _meta_unless(seed):
        return f"The message is designed to encourage you ({seed})."
    return fake_generator(prompt, context, key)


def fake_rule(text: str) -> str | None:
    """The reject rule of these tests (the fake's style messages say "level 8.1", which meta_talk would flag)."""
    return "describes" if text.startswith("The message is") else None


class BatchedFake:
    """A generator with ``generate_batch`` that records each batch's task ids (prompt, context, seed)."""

    def __init__(self):
        self.batches = []

    def __call__(self, prompt, context, key):
        return reprompt_generator(prompt, context, key)

    def generate_batch(self, tasks, stop=None):
        self.batches.append(tuple((p, c, key_to_seed(k)) for p, c, k in tasks))
        return [reprompt_generator(p, c, k) for p, c, k in tasks]


def _expected_tries(task: dict, max_tries: int) -> list[int]:
    """The sampler seeds of a task's tries, by the documented formula (crc32 of "seed:id#try<t>")."""
    seeds = [task["seed"]] + [zlib.crc32(f"{task['seed']}:{task['task']}#try{t}".encode()) & 0x7FFFFFFF
                              for t in range(1, max_tries)]
    out = []
    for s in seeds:
        out.append(s)
        if not _meta_unless(key_to_seed(jax.random.PRNGKey(s))):
            break
    return out


def test_reprompting_asks_again_with_new_seeds_and_resumes(tmp_path):
    tasks = response_tasks(choose_prompts(2), 3) + graded_tasks(("humor",), 2)
    rows = generate_messages(tasks, reprompt_generator, tmp_path / "a.jsonl", progress=False, reject=fake_rule,
                             max_tries=3)
    for task, row in zip(tasks, rows.to_dict(orient="records")):
        seeds = _expected_tries(task, 3)
        assert row["tries"] == len(seeds)
        assert row["message"] == reprompt_generator(task["prompt_id"], (task["curr_loc"], task["prev_steps"]),
                                                    jax.random.PRNGKey(seeds[-1]))
        assert pd.isna(row["rejected"]) == (not _meta_unless(key_to_seed(jax.random.PRNGKey(seeds[-1]))))
    assert rows["tries"].max() > 1 and rows["rejected"].isna().mean() > 0.5  # both branches exercised
    lines = (tmp_path / "a.jsonl").read_text().splitlines()
    assert len(lines) == rows["tries"].sum()
    # a run killed after 20 tries, then resumed, writes the same rows; batches give the same rows too
    calls = {"n": 0}

    def dying(prompt, context, key):
        calls["n"] += 1
        if calls["n"] > 20:
            raise RuntimeError("killed")
        return reprompt_generator(prompt, context, key)

    with pytest.raises(RuntimeError, match="killed"):
        generate_messages(tasks, dying, tmp_path / "b.jsonl", progress=False, reject=fake_rule, max_tries=3)
    resumed = generate_messages(tasks, reprompt_generator, tmp_path / "b.jsonl", progress=False, reject=fake_rule,
                                max_tries=3)
    batched = generate_messages(tasks, BatchedFake(), tmp_path / "c.jsonl", progress=False, reject=fake_rule,
                                max_tries=3, batch_size=4)
    for other in (resumed, batched):
        pd.testing.assert_frame_equal(rows.drop(columns="seconds"), other.drop(columns="seconds"))
    with pytest.raises(ValidationError, match="max_tries"):
        generate_messages(tasks, reprompt_generator, tmp_path / "d.jsonl", progress=False, max_tries=2)


def test_a_resumed_batched_run_repeats_the_same_batches(tmp_path):
    tasks = response_tasks(choose_prompts(1), 5)  # 60 tasks
    whole = BatchedFake()
    generate_messages(tasks, whole, tmp_path / "a.jsonl", progress=False, reject=fake_rule, max_tries=2, batch_size=8)
    # keep the first 13 lines only (a kill in the middle of the second batch's writes), then resume
    lines = (tmp_path / "a.jsonl").read_text().splitlines()
    (tmp_path / "b.jsonl").write_text("\n".join(lines[:13]) + "\n")
    resumed = BatchedFake()
    generate_messages(tasks, resumed, tmp_path / "b.jsonl", progress=False, reject=fake_rule, max_tries=2,
                      batch_size=8)
    assert resumed.batches == whole.batches[1:]  # the first batch was complete: not asked again
    assert [len(b) for b in whole.batches[:8]] == [8] * 7 + [4]  # first wave: 60 tasks in batches of 8


def test_interleaved_blocks_keep_a_cells_samples_together():
    graded, responses = graded_tasks(("humor",), 3), response_tasks(choose_prompts(1), 3)
    assert interleaved(graded, responses) == sorted([*graded, *responses], key=lambda t: t["sample"])  # k = 1
    blocked = interleaved(graded, responses, rounds_per_block=2)
    ids = [t["task"] for t in blocked]
    assert ids[:4] == ["graded:humor:0:0", "graded:humor:0:1", "graded:humor:1:0", "graded:humor:1:1"]
    assert ids.index("response:optimism-high:home:1:1") == ids.index("response:optimism-high:home:1:0") + 1
    assert [t["sample"] for t in blocked[-(11 + 12):]] == [2] * (11 + 12)  # the last block: round 2 only
    assert sorted(ids) == sorted(t["task"] for t in [*graded, *responses])


def test_data_card_numbers_against_hand_computed_values():
    from structbandits.tools.data_card import auc, graded_auc, prompt_auc, rejection_report, style_correlations

    assert auc([3, 4], [1, 2]) == 1.0 and auc([1, 2], [3, 4]) == 0.0
    assert auc([1, 2], [2, 3]) == 0.125  # pairs (1,2) (1,3) (2,2)=½ (2,3): ½ of 4
    assert np.isnan(auc([], [1.0]))
    db = pd.DataFrame({"prompt_id": ["optimism-high"] * 2 + ["optimism-low"] * 2, "optimism": [3.0, 1.0, 2.0, 0.0],
                       "severity": [-3.0, -1.0, -2.0, 0.0], "ridge_optimism": [0.0, 1.0, 2.0, 3.0]})
    assert prompt_auc(db, ["optimism", "severity"]) == {"optimism": 0.75}  # (3>2, 3>0, 1<2, 1>0)
    assert prompt_auc(db, ["optimism"], "ridge_") == {"optimism": 0.0}
    assert style_correlations(db, ["optimism", "severity"]) == {"severity": pytest.approx(-1.0)}
    graded = pd.DataFrame({"style": ["humor"] * 5, "grade": [0, 10, 9, 5, 10], "split": ["test"] * 4 + ["train"],
                           "vae_score": [0.5, 1.0, 0.2, 9.0, 0.0]})
    assert graded_auc(graded, "vae_score") == {"humor": 0.5}  # 10: 1.0 > 0.5, 9: 0.2 < 0.5; grade 5, train out
    attempts = pd.DataFrame({"try": [0, 0, 1, 0, 1, 2, 0],
                             "rejected": [None, "echoes", None, "assistant", "echoes", "echoes", None]})
    final = pd.DataFrame({"tries": [1, 2, 3, 1], "rejected": [None, None, "echoes", None]})
    report = rejection_report(attempts, final)
    assert report["rejection_rate"] == 4 / 7 and report["first_try_rejection_rate"] == 2 / 4
    assert report["rejected_by_rule"] == {"echoes": 3, "assistant": 1}
    assert report["tasks_still_rejected_after_max_tries"] == 1 and report["mean_tries"] == 7 / 4


def test_build_with_reprompting_drops_what_stays_rejected(tmp_path):
    kwargs = dict(num_prompts=4, samples=2, graded=4, vae_steps=300, progress=False, reject=fake_rule, max_tries=2)
    card = build_response_db(tmp_path, reprompt_generator, fake_embed, **kwargs)
    db = pd.read_parquet(tmp_path / "mhealth_llm_responses.parquet")
    graded = pd.read_parquet(tmp_path / "mhealth_llm_responses_graded.parquet")
    assert db["message"].map(fake_rule).isna().all() and graded["message"].map(fake_rule).isna().all()
    meta = card["meta_talk"]
    partial = tmp_path / ".build-mhealth_llm_responses" / "messages.jsonl"
    lines = [json.loads(x) for x in partial.read_text().splitlines()]
    assert meta["attempts"] == len(lines) and meta["rejected_attempts"] == sum(x["rejected"] is not None for x in lines)
    assert len(db) + len(graded) == meta["tasks"] - meta["tasks_still_rejected_after_max_tries"]
    assert card["counts"]["database_rows"] == len(db) < 4 * 12 * 2
    assert card["rows_per_cell"]["max"] <= 2 and set(db["tries"]) <= {1, 2}
    assert card["high_low_auc"]["prompts_vae"]["optimism"] > 0.9  # the fake's high prompts sit at 8, low at 2
    assert set(card["correlation_with_optimism"]["vae"]) == set(STYLES) - {"optimism"}
