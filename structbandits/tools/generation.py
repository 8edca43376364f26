"""Resumable, re-prompted, batched message generation for the response-database builder.

``generate_messages`` runs a generator over tasks (dicts with ``task`` id, ``prompt_id``, ``curr_loc``,
``prev_steps`` and ``seed``), appends every try to a JSON-lines file as it is generated (a killed
run resumes there), asks again with a new seed when a reject rule names a reason (capped tries), and
uses a generator's ``generate_batch`` when it has one. Every sampler seed is a hash of the task id,
the try and the build's seed, so a resumed build writes what an uninterrupted one would.
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import pandas as pd
from tqdm.auto import tqdm

from structbandits.data.mhealth_prompts import render_prompt
from structbandits.errors import ValidationError, check_integer

__all__ = ["generate_messages", "read_partial", "task_seed", "try_seed"]


def task_seed(task_id: str, seed: int) -> int:
    """A 31-bit seed hashed from a task id (or any string) and the build's seed (crc32 of "seed:id")."""
    return int(zlib.crc32(f"{seed}:{task_id}".encode()) & 0x7FFFFFFF)


def read_partial(path: Path) -> dict[tuple[str, int], dict]:
    """(task id, try) -> the first stored attempt (lines without "try" are first tries; a cut line is skipped)."""
    if not path.is_file():
        return {}
    rows = {}
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by a kill: regenerate that message
            continue
        rows.setdefault((row["task"], row.get("try", 0)), row)
    return rows


def try_seed(task: dict, attempt: int) -> int:
    """The sampler seed of try ``attempt`` of ``task``: the task's own seed first, then a hash of (id, try, seed)."""
    return task["seed"] if attempt == 0 else task_seed(f"{task['task']}#try{attempt}", task["seed"])


def generate_messages(tasks: Sequence[dict], generator: Callable, partial: str | Path, progress: bool = True, *,
                      reject: Callable[[str], str | None] | None = None, max_tries: int = 1,
                      batch_size: int = 1) -> pd.DataFrame:
    """Run ``generator(prompt_id, (curr_loc, prev_steps), key)`` for every task not yet in ``partial``.

    Each message is appended to the JSON-lines file ``partial`` as soon as it exists (with the
    seconds it took), so a killed run resumes where it stopped. Returns the tasks' rows in task order
    with columns of the task plus ``message``, ``prompt_text`` and ``seconds``.

    Re-prompting: with ``reject`` (text -> the reason it is not a message, or None; e.g.
    ``envs.meta_talk.meta_talk``), a rejected message is asked for again with a new seed
    (``try_seed``), at most ``max_tries`` times in all; tries run in waves (every task's first try,
    then the second try of those rejected, ...). The row of a task is its first accepted try, or
    its last; the returned frame then also has ``tries`` and ``rejected`` (the reason, None if accepted).

    Batches: with ``batch_size`` > 1 and a generator that has ``generate_batch`` (``TransformersGenerator``),
    each wave is cut into consecutive batches of its tasks in task order, and a batch is generated
    whole whenever one of its messages is missing, so a resumed build repeats an uninterrupted one's
    batches (and messages) exactly. ``reject`` is passed as the batch's ``stop`` rule.
    """
    partial = Path(partial)
    partial.parent.mkdir(parents=True, exist_ok=True)
    tries = check_integer("max_tries", max_tries, minimum=1)
    size = check_integer("batch_size", batch_size, minimum=1)
    if reject is None and tries > 1:
        raise ValidationError("max_tries: re-prompting needs a reject rule (e.g. envs.meta_talk.meta_talk)")
    batched = size > 1 and hasattr(generator, "generate_batch")
    done = read_partial(partial)
    chosen: dict[str, dict] = {}
    wave = list(tasks)
    with partial.open("a") as sink, tqdm(total=len(tasks), disable=not progress, desc="messages", unit="msg") as bar:
        for attempt in range(tries):
            for start in range(0, len(wave), size if batched else 1):
                chunk = wave[start:start + (size if batched else 1)]
                if any((t["task"], attempt) not in done for t in chunk):
                    _generate_chunk(chunk, attempt, generator, reject, batched, done, sink)
            retry = []
            for t in wave:
                row = done[(t["task"], attempt)]
                if reject is not None and "rejected" not in row:  # written by a build without the rule
                    row = {**row, "rejected": reject(row["message"])}
                chosen[t["task"]] = {**row, "tries": attempt + 1}
                if reject is not None and row.get("rejected") is not None and attempt + 1 < tries:
                    retry.append(t)
                else:
                    bar.update()
            wave = retry
    rows = pd.DataFrame([chosen[t["task"]] for t in tasks])
    rows["seed"] = [t["seed"] for t in tasks]  # the task's seed; a retry's own is try_seed(task, try)
    drop = ["try"] + ([] if reject is not None else ["tries", "rejected"])
    return rows.drop(columns=[c for c in drop if c in rows.columns])


def _generate_chunk(chunk, attempt, generator, reject, batched, done, sink) -> None:
    keys = [jax.random.PRNGKey(try_seed(t, attempt)) for t in chunk]
    start = time.perf_counter()
    if batched:
        work = [(t["prompt_id"], (t["curr_loc"], t["prev_steps"]), k) for t, k in zip(chunk, keys)]
        texts = generator.generate_batch(work, stop=reject) if reject is not None else generator.generate_batch(work)
    else:
        texts = [generator(chunk[0]["prompt_id"], (chunk[0]["curr_loc"], chunk[0]["prev_steps"]), keys[0])]
    seconds = (time.perf_counter() - start) / len(chunk)
    for task, text in zip(chunk, texts):
        if (task["task"], attempt) in done:
            continue
        row = {**task, "message": str(text), "seconds": seconds,
               "prompt_text": render_prompt(task["prompt_id"], task["curr_loc"], task["prev_steps"])}
        if reject is not None:
            row.update({"try": attempt, "rejected": reject(str(text))})
        sink.write(json.dumps(row) + "\n")
        sink.flush()
        done[(task["task"], attempt)] = row
