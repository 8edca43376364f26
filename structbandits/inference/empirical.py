"""The offline (empirical) treatment model of poGAMBITTS: generator draws per (prompt, context cell).

With simulation access to the generator, the treatment distribution p(z | x, a) is replaced by the
empirical distribution of draws collected offline: for every prompt a and context cell c, n_{a,c}
embedded responses z. A linear reward model needs only their means; a nonlinear one scores a prompt
by the average prediction over treatments resampled (with replacement) from its cell.

Draws are stored padded, ``draws`` (K, C, N, d) with ``counts`` (K, C) valid rows per cell, so a real
database with unequal cell sizes fits the same static shapes.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from structbandits.errors import ValidationError, check_finite, check_integer

__all__ = [
    "EmpiricalTreatment",
    "empirical_means",
    "empirical_sample",
    "empirical_subsample",
    "empirical_treatment",
    "empirical_weights",
]


class EmpiricalTreatment(NamedTuple):
    """Offline generator draws: ``draws`` (K, C, N, d), ``counts`` (K, C) valid rows (1..N) per cell."""

    draws: jax.Array
    counts: jax.Array


def empirical_treatment(draws, counts=None) -> EmpiricalTreatment:
    """Validate offline draws (K, C, N, d) and their per-cell row counts (default: all N rows valid)."""
    draws = check_finite("treatment_draws", draws)
    if draws.ndim != 4:
        raise ValidationError(f"treatment_draws: expected shape (K, C, N, d), got shape {draws.shape}")
    k, c, n, _ = draws.shape
    if counts is None:
        counts = np.full((k, c), n)
    counts = np.asarray(counts)
    if counts.shape != (k, c) or not np.issubdtype(counts.dtype, np.integer):
        raise ValidationError(f"treatment_counts: expected integers of shape ({k}, {c}), got {counts.dtype} {counts.shape}")
    if counts.min() < 1 or counts.max() > n:
        raise ValidationError(f"treatment_counts: expected every cell to hold 1..{n} draws, got {counts.min()}..{counts.max()}")
    return EmpiricalTreatment(jnp.asarray(draws), jnp.asarray(counts, jnp.int32))


def empirical_means(model: EmpiricalTreatment) -> jax.Array:
    """Mean treatment per (prompt, cell): (K, C, d), over each cell's valid rows."""
    valid = jnp.arange(model.draws.shape[2]) < model.counts[..., None]
    total = jnp.sum(jnp.where(valid[..., None], model.draws, 0.0), axis=2)
    return total / model.counts[..., None].astype(model.draws.dtype)


def empirical_subsample(model: EmpiricalTreatment, key: jax.Array, num_draws: int) -> EmpiricalTreatment:
    """What an agent with ``num_draws`` generator queries per cell sees: rows without replacement.

    Each cell keeps min(num_draws, count) of its valid rows, chosen uniformly at random; the result
    has N = num_draws padded rows (the model itself when num_draws >= N). Jittable (a random
    permutation of the valid rows per cell).
    """
    num_draws = check_integer("num_draws", num_draws, minimum=1)
    k, c, n, _ = model.draws.shape
    if num_draws >= n:
        return model
    keys = jax.random.split(key, k * c).reshape(k, c, -1)

    def one_cell(cell_key, rows, count):
        # Valid rows first, in random order: sort random keys with invalid rows pushed to the end.
        order = jnp.argsort(jnp.where(jnp.arange(n) < count, jax.random.uniform(cell_key, (n,)), 2.0))
        return rows[order[:num_draws]]

    draws = jax.vmap(jax.vmap(one_cell))(keys, model.draws, model.counts)
    return EmpiricalTreatment(draws, jnp.minimum(model.counts, num_draws))


def _resampled_rows(model: EmpiricalTreatment, key: jax.Array, cell: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Row indices ``shape + (K,)`` drawn uniformly with replacement from each prompt's valid rows in ``cell``."""
    counts = model.counts[:, cell]  # (K,)
    u = jax.random.uniform(key, shape + counts.shape, dtype=model.draws.dtype)
    return jnp.minimum((u * counts).astype(jnp.int32), counts - 1)


def empirical_sample(model: EmpiricalTreatment, key: jax.Array, cell: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Treatments resampled with replacement for every prompt in context ``cell``: ``shape + (K, d)``."""
    rows = _resampled_rows(model, key, cell, shape)
    return model.draws[jnp.arange(rows.shape[-1]), cell, rows]


def empirical_weights(model: EmpiricalTreatment, key: jax.Array, cell: jax.Array, num_samples: int) -> jax.Array:
    """How often each row of ``cell`` is drawn among ``num_samples`` resampled treatments: (K, N) counts.

    With the same key, ``empirical_sample(model, key, cell, (num_samples,))`` returns exactly these
    rows, so for any f the Monte-Carlo average ``mean_s f(z_s)`` equals
    ``Σ_j weights[a, j] · f(draws[a, cell, j]) / num_samples``: the same estimator evaluated on the
    N stored rows instead of the ``num_samples`` draws (cheaper when N < num_samples).
    """
    rows = _resampled_rows(model, key, cell, (num_samples,))  # (num_samples, K)
    return jnp.sum(rows[..., None] == jnp.arange(model.draws.shape[2]), axis=0, dtype=model.draws.dtype)
