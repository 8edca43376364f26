"""The GAMBITTS mHealth simulator: prompts → generated messages (style embeddings) → sqrt(daily steps).

Each round a user context is drawn uniformly: location {home, work, other} × previous-day step bin
{1..4} (12 cells). The agent picks one of K prompts; the "generator" returns a message drawn
uniformly from the response database rows of that (prompt, context) pair (``data.mhealth``: by
default the shipped database of real SmolLM2-135M-Instruct messages, ``llm_response_db``;
``response_db="synthetic"`` for the documented synthetic database, which can be sampled at any
size), and the outcome is sqrt(steps) = f(z) + N(0, σ²) with the reference outcome models:

* ``"linear-1d"``: 82.7949 − 0.13961 · optimism;
* ``"linear-3d"``: 82.8360 − 0.49944 · formality + 0.35232 · optimism − 0.15796 · severity;
* ``"linear-full"``: all 20 styles (the reference's intercept 81.43 and its four published
  coefficients; the other 16 are synthetic, from the package data);
* ``"mlp-3d"``: a one-hidden-layer ReLU network (64 units) on (optimism, severity, formality), a
  prior draw of ``models.mediated.mlp_reward_stage`` (``outcome_seed``) rescaled to the 3-D linear
  model's mean and sd over the database (the reference's fitted network is private);

σ from the reference's noise levels (``noise_level`` 0..4) or ``noise_scale``. Regret is the pseudo
-regret on the per-prompt expected outcome E[f(z) | x, a], the mean of f over the database rows of
(a, x). The K prompts are the database's prompts ranked by expected outcome (averaged over
contexts) and taken at evenly spaced ranks (lowest, …, highest), unless ``prompts`` names them.

Treatments and the runner. ``Environment.reward`` returns a scalar, so the delivered treatment
travels in the context: ``MHealthContext.treatments`` (K, S) holds, for this round, the message each
prompt *would* deliver (one row drawn per prompt with the round's context key: potential
treatments, equal in law to drawing only the chosen one, and common to all agents in a seed).
``reward`` uses ``treatments[action]``; mediated agents read it in ``update`` (never in ``act``).
With ``no_message_outcome`` the action space gains action 0 = send nothing (expected outcome
``no_message_outcome``), and prompt a becomes action a + 1 (optional prompting).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from numpyro.infer import Predictive

from structbandits.data.mhealth import (
    LOCATIONS,
    NUM_CELLS,
    STEP_BINS,
    llm_response_db,
    load_response_db,
    response_db_arrays,
    style_parameters,
)
from structbandits.envs.protocol import Environment, ModelHyperparameters
from structbandits.errors import ValidationError, check_finite, check_integer, check_positive
from structbandits.models.mediated import mlp_apply, mlp_reward_stage

__all__ = ["MHealthContext", "MHealthState", "NOISE_LEVELS", "OutcomeModel", "mhealth_bandit", "outcome_model", "style_index"]

NOISE_LEVELS: dict[str, tuple[float, ...]] = {  # the reference's sd_0 .. sd_4
    "linear-1d": (0.3757, 6.4386, 12.5015, 18.5644, 24.6273),
    "linear-3d": (0.7098, 6.6751, 12.6405, 18.6058, 24.5712),
    "linear-full": (0.7098, 6.6751, 12.6405, 18.6058, 24.5712),  # not published: the 3-D levels
    "mlp-3d": (0.7098, 6.6273, 12.5448, 18.4622, 24.3797),
}
_LINEAR = {
    "linear-1d": (82.7949, {"optimism": -0.13961}),
    "linear-3d": (82.8360, {"formality": -0.49944, "optimism": 0.35232, "severity": -0.15796}),
}
MLP_STYLES = ("optimism", "severity", "formality")


class MHealthContext(NamedTuple):
    """One round's context.

    Attributes
    ----------
    code : (2,) int32 (location index in home/work/other, step bin 0..3).
    cell : () int32 context cell, location · 4 + step bin, in [0, 12).
    treatments : (K, S) the style embedding of the message each prompt would deliver this round;
        only the chosen prompt's row is delivered (read it after acting).
    """

    code: jax.Array
    cell: jax.Array
    treatments: jax.Array


class MHealthState(NamedTuple):
    """``expected`` (K, C): the expected outcome of every prompt in every context cell."""

    expected: jax.Array


class OutcomeModel(NamedTuple):
    """E[sqrt(steps) | z]: ``name``, the ``styles`` it reads and ``params`` (linear: intercept, coef (S',);
    MLP: the network's weights plus ``scale`` and ``shift``)."""

    name: str
    styles: tuple[str, ...]
    params: dict


def outcome_model(name: str, db: pd.DataFrame | None = None, outcome_seed: int = 0) -> OutcomeModel:
    """The reference outcome model ``name`` (the MLP is calibrated on ``db``, required for it)."""
    if name in _LINEAR:
        intercept, coefs = _LINEAR[name]
        return OutcomeModel(name, tuple(coefs), {"intercept": intercept, "coef": np.asarray(list(coefs.values()))})
    if name == "linear-full":
        full = style_parameters()["full_linear_outcome"]
        styles = tuple(full["coefficients"])
        return OutcomeModel(name, styles, {"intercept": full["intercept"],
                                           "coef": np.asarray([full["coefficients"][s] for s in styles])})
    if name == "mlp-3d":
        draw = Predictive(mlp_reward_stage, num_samples=1)(jax.random.PRNGKey(outcome_seed), 3, 64, 1.0, 1.0)
        weights = {k: np.asarray(v[0]) for k, v in draw.items()}
        raw = np.asarray(jax.jit(mlp_apply)(weights, jnp.asarray(db[list(MLP_STYLES)].to_numpy(float))))  # one fused pass
        linear = outcome_model("linear-3d")
        target = _apply(linear, db[list(linear.styles)].to_numpy(float))
        scale = target.std() / raw.std()
        return OutcomeModel(name, MLP_STYLES, {**weights, "scale": scale, "shift": target.mean() - scale * raw.mean()})
    raise ValidationError(f"reward_model: expected one of {sorted(NOISE_LEVELS)}, got {name!r}")


def _apply(model: OutcomeModel, z):
    """f(z) for ``z`` (..., S') in the model's style order; NumPy or JAX arrays."""
    p = model.params
    if model.name.startswith("linear"):
        return p["intercept"] + z @ p["coef"]
    return p["scale"] * mlp_apply({k: p[k] for k in ("w1", "b1", "w2", "b2")}, z) + p["shift"]


def style_index(env: Environment, styles: Sequence[str]) -> tuple[int, ...]:
    """Columns of ``MHealthContext.treatments`` holding ``styles`` (the agent's working embedding)."""
    if env.model is None or env.model.model != "mhealth_mediated":
        raise ValidationError("env: expected an mHealth environment (envs.mhealth.mhealth_bandit)")
    available = env.model.params["styles"]
    missing = [s for s in styles if s not in available]
    if missing:
        raise ValidationError(f"styles: the environment's treatments have no column(s) {missing}; it has {list(available)}")
    return tuple(available.index(s) for s in styles)


@lru_cache(maxsize=4)
def _synthetic_db(samples_per_cell: int, seed: int) -> pd.DataFrame:
    """The synthetic database, sampled once per (size, seed); callers never modify it."""
    return load_response_db(None, samples_per_cell=samples_per_cell, seed=seed)


def _database(response_db, samples_per_cell: int | None, db_seed: int) -> pd.DataFrame:
    """The database ``mhealth_bandit`` runs on (see its docstring for the choices)."""
    if isinstance(response_db, pd.DataFrame):
        return response_db
    if response_db is None:
        raise ValidationError("response_db: expected \"llm\", \"synthetic\", a DataFrame or a path, got None")
    if isinstance(response_db, str) and response_db == "synthetic":
        n = 500 if samples_per_cell is None else check_integer("samples_per_cell", samples_per_cell, minimum=1)
        return _synthetic_db(n, check_integer("db_seed", db_seed, minimum=0))
    db = llm_response_db() if isinstance(response_db, str) and response_db == "llm" else load_response_db(response_db)
    if samples_per_cell is None:
        return db
    n = check_integer("samples_per_cell", samples_per_cell, minimum=1)
    available = int(db.groupby(["prompt", "curr_loc", "prev_steps"]).size().min())
    if n > available:
        raise ValidationError(f"samples_per_cell: the response database has {available} messages in its smallest "
                              f"(prompt, context) cell, got {n}; pass samples_per_cell=None to use all of them or "
                              "response_db='synthetic' for a larger synthetic database")
    return db.groupby(["prompt", "curr_loc", "prev_steps"], sort=False).head(n)


def _select_prompts(db: pd.DataFrame, model: OutcomeModel, num_prompts: int, prompts) -> np.ndarray:
    if prompts is not None:
        ids = db.drop_duplicates("prompt").set_index("prompt_id")["prompt"] if "prompt_id" in db else None
        chosen = np.asarray([ids[p] if isinstance(p, str) and ids is not None and p in ids else p for p in prompts])
        if not np.issubdtype(chosen.dtype, np.integer) or len(set(chosen.tolist())) != len(chosen) or len(chosen) < 2:
            raise ValidationError(f"prompts: expected at least two distinct prompt numbers or prompt_ids, got {list(prompts)}")
        return chosen
    f = _apply(model, db[list(model.styles)].to_numpy(float))
    cell = db["curr_loc"].map({loc: i for i, loc in enumerate(LOCATIONS)}) * len(STEP_BINS) + db["prev_steps"] - 1
    by_cell = pd.DataFrame({"prompt": db["prompt"], "cell": cell, "f": f}).groupby(["prompt", "cell"])["f"].mean()
    overall = by_cell.groupby(level="prompt").mean().sort_values()
    if num_prompts > len(overall):
        raise ValidationError(f"num_prompts: the response database has {len(overall)} prompts, got {num_prompts}")
    ranks = np.round(np.linspace(0, len(overall) - 1, num_prompts)).astype(int)
    return overall.index.to_numpy()[ranks]


def mhealth_bandit(
    reward_model: str = "linear-1d",
    num_prompts: int = 5,
    *,
    noise_level: int = 0,
    noise_scale: float | None = None,
    prompts: Sequence[int | str] | None = None,
    response_db: pd.DataFrame | str = "llm",
    samples_per_cell: int | None = None,
    db_seed: int = 0,
    outcome_seed: int = 0,
    no_message_outcome: float | None = None,
) -> Environment:
    """The mHealth generator-mediated bandit.

    Parameters
    ----------
    reward_model : "linear-1d", "linear-3d", "linear-full" or "mlp-3d".
    num_prompts : K prompts offered (2..number in the database), chosen at evenly spaced outcome ranks.
    noise_level : index 0..4 into the reference's noise sds for this reward model (``NOISE_LEVELS``).
    noise_scale : σ, overriding ``noise_level``.
    prompts : explicit prompt numbers or prompt_ids (overrides ``num_prompts``).
    response_db : "llm" (default): the shipped database of SmolLM2 messages
        (``data.mhealth.llm_response_db``); "synthetic": the synthetic database with
        ``samples_per_cell`` (default 500) rows per (prompt, context) and ``db_seed``; a DataFrame;
        or a path for ``data.mhealth.load_response_db``. For "llm" and paths, ``samples_per_cell`` None uses all
        rows and an integer the first that many of each (prompt, context) cell (an error if a
        cell has fewer).
    outcome_seed : seed of the MLP outcome surface ("mlp-3d").
    no_message_outcome : if given, action 0 = send nothing, with this expected outcome.

    Returns
    -------
    Environment with ``MHealthContext`` contexts (``context_shape`` (2,) is the shape of ``code``) and
    ``model`` "mhealth_mediated", whose params hold ``treatment_draws`` (K, C, N, S) (the database
    rows of the offered prompts: what an agent with generator access can query offline),
    ``treatment_counts`` (K, C), ``styles``, ``prompts``, ``num_prompts``, ``num_cells``,
    ``noise_scale``, ``reward_model``, ``reward_styles``, ``optional_prompting``.
    """
    if reward_model not in NOISE_LEVELS:
        raise ValidationError(f"reward_model: expected one of {sorted(NOISE_LEVELS)}, got {reward_model!r}")
    level = check_integer("noise_level", noise_level, minimum=0, maximum=4)
    sigma = NOISE_LEVELS[reward_model][level] if noise_scale is None else float(
        check_positive("noise_scale", noise_scale, allow_zero=True))
    k_requested = check_integer("num_prompts", num_prompts, minimum=2)
    db = _database(response_db, samples_per_cell, db_seed)
    model = outcome_model(reward_model, db, check_integer("outcome_seed", outcome_seed, minimum=0))
    chosen = _select_prompts(db, model, k_requested, prompts)
    arrays = response_db_arrays(db, prompts=chosen)
    missing = [s for s in model.styles if s not in arrays.styles]
    if missing:
        raise ValidationError(f"response_db: the {reward_model} outcome model needs style column(s) {missing}")
    k, c = arrays.counts.shape
    optional = no_message_outcome is not None
    no_message = float(check_finite("no_message_outcome", no_message_outcome)) if optional else 0.0

    draws = jnp.asarray(arrays.draws)
    counts = jnp.asarray(arrays.counts, jnp.int32)
    reward_cols = jnp.asarray([arrays.styles.index(s) for s in model.styles])
    params = {key: jnp.asarray(value) for key, value in model.params.items()}
    jax_model = OutcomeModel(model.name, model.styles, params)
    valid = np.arange(arrays.draws.shape[2]) < arrays.counts[..., None]
    f_rows = np.asarray(_apply(model, arrays.draws[..., [arrays.styles.index(s) for s in model.styles]]))
    expected = jnp.asarray(np.sum(np.where(valid, f_rows, 0.0), axis=2) / arrays.counts)  # (K, C)

    def init(key: jax.Array) -> MHealthState:
        return MHealthState(expected)

    def context(state: MHealthState, key: jax.Array) -> MHealthContext:
        loc_key, steps_key, row_key = jax.random.split(key, 3)
        code = jnp.stack([jax.random.randint(loc_key, (), 0, len(LOCATIONS)),
                          jax.random.randint(steps_key, (), 0, len(STEP_BINS))]).astype(jnp.int32)
        cell = code[0] * len(STEP_BINS) + code[1]
        cell_counts = counts[:, cell]
        rows = jnp.minimum((jax.random.uniform(row_key, (k,), draws.dtype) * cell_counts).astype(jnp.int32),
                           cell_counts - 1)
        return MHealthContext(code, cell, draws[jnp.arange(k), cell, rows])

    def mean_rewards(state: MHealthState, ctx: MHealthContext) -> jax.Array:
        means = state.expected[:, ctx.cell]
        return jnp.concatenate([jnp.full((1,), no_message, means.dtype), means]) if optional else means

    def reward(state: MHealthState, key: jax.Array, ctx: MHealthContext, action: jax.Array) -> jax.Array:
        prompt = jnp.maximum(action - 1, 0) if optional else action
        mean = _apply(jax_model, ctx.treatments[prompt, reward_cols])
        if optional:
            mean = jnp.where(action == 0, no_message, mean)
        return mean + sigma * jax.random.normal(key, dtype=draws.dtype)

    hyper = ModelHyperparameters("mhealth_mediated", {
        "treatment_draws": arrays.draws, "treatment_counts": arrays.counts, "styles": arrays.styles,
        "prompts": arrays.prompts, "num_prompts": k, "num_cells": c, "noise_scale": sigma,
        "reward_model": reward_model, "reward_styles": model.styles, "optional_prompting": optional,
        "expected_outcomes": np.asarray(expected),
    })
    assert c == NUM_CELLS
    return Environment(k + int(optional), (2,), init, context, mean_rewards, reward, hyper)
