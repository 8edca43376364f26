"""Each arm's observations as a table of distinct rows with counts, read in chunks of its own rows.

The logistic agents refit only the pulled arm after each round, so what a refit reads should be that
arm's data and nothing else. ``ArmRows`` keeps, per arm, the distinct feature rows it has been pulled
with and, for each, how many times (``trials``) and the sum of the rewards (``successes``): a context
seen again adds to its row's counts instead of taking a new one, so where contexts come from a finite
pool of P an arm holds at most P rows whatever the horizon, and with continuous contexts it holds one
row per pull. Rows are matched by exact equality of their features.

Shapes are static under ``jit``: every arm has ``capacity`` slots (rounded up to a multiple of the
chunk size), filled from slot 0; ``filled[a]`` is the high-water mark of arm a. ``arm_rows_sum`` and the
slot search in ``arm_rows_add`` run a ``lax.while_loop`` over chunks of ``CHUNK_ROWS`` slots up to that
mark only, each chunk a ``lax.dynamic_slice`` of the arm's slots, so their cost is proportional to the
arm's own rows, not to K · capacity (a masked pass over fixed-size arrays would cost the full size).
Storage is K · capacity · (d + 2) numbers. Unused slots have zero counts, so they add nothing to a sum.

``arm_rows_remove`` takes one observation back out (a sliding window over the latest rounds); a row
whose counts fall to zero is reused by the next new row of that arm. A row that finds neither its
match, a free slot, nor room below ``capacity`` is not stored and is counted in ``dropped``.

>>> import jax.numpy as jnp
>>> rows = arm_rows_init(num_arms=2, capacity=4, num_features=2)
>>> rows, slot = arm_rows_add(rows, 1, jnp.asarray([0.5, 1.0]), 1.0)
>>> rows, again = arm_rows_add(rows, 1, jnp.asarray([0.5, 1.0]), 0.0)
>>> int(slot), int(again), rows.trials[1, 0].item(), rows.successes[1, 0].item(), rows.filled.tolist()
(0, 0, 2.0, 1.0, [0, 1])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from structbandits.errors import check_integer

__all__ = ["CHUNK_ROWS", "ArmRows", "arm_rows_add", "arm_rows_init", "arm_rows_remove", "arm_rows_sum"]

CHUNK_ROWS = 64


class ArmRows(NamedTuple):
    """Per-arm distinct rows. K arms, C slots each, d features.

    features : (K, C, d) the rows. trials : (K, C) times each row was seen. successes : (K, C) sum of
    its rewards. filled : (K,) int32 slots used so far per arm (high-water mark). dropped : () int32
    observations that found no slot (capacity too small).
    """

    features: jax.Array
    trials: jax.Array
    successes: jax.Array
    filled: jax.Array
    dropped: jax.Array


def arm_rows_init(num_arms: int, capacity: int, num_features: int, dtype=None) -> ArmRows:
    """An empty table: ``capacity`` slots per arm (rounded up to a multiple of ``CHUNK_ROWS`` when larger)."""
    num_arms = check_integer("num_arms", num_arms, minimum=1)
    capacity = check_integer("capacity", capacity, minimum=1)
    num_features = check_integer("num_features", num_features, minimum=1)
    if capacity > CHUNK_ROWS:
        capacity = -(-capacity // CHUNK_ROWS) * CHUNK_ROWS
    counts = jnp.zeros((num_arms, capacity), dtype)
    return ArmRows(jnp.zeros((num_arms, capacity, num_features), dtype), counts, counts,
                   jnp.zeros(num_arms, jnp.int32), jnp.zeros((), jnp.int32))


def _chunk(rows: ArmRows) -> int:
    return min(CHUNK_ROWS, rows.trials.shape[1])


def _slice(rows: ArmRows, arm: jax.Array, start: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Slots [start, start + chunk) of ``arm``: features (B, d), successes (B,), trials (B,)."""
    size, d = _chunk(rows), rows.features.shape[2]
    arm, start = jnp.asarray(arm, jnp.int32), jnp.asarray(start, jnp.int32)
    features = jax.lax.dynamic_slice(rows.features, (arm, start, jnp.int32(0)), (1, size, d))[0]
    successes = jax.lax.dynamic_slice(rows.successes, (arm, start), (1, size))[0]
    trials = jax.lax.dynamic_slice(rows.trials, (arm, start), (1, size))[0]
    return features, successes, trials


def _num_chunks(rows: ArmRows, arm: jax.Array) -> jax.Array:
    return -(-rows.filled[arm] // _chunk(rows))


def arm_rows_sum(rows: ArmRows, arm: jax.Array, fn: Callable[[jax.Array, jax.Array, jax.Array], Any]) -> Any:
    """Σ over the chunks of ``arm``'s used slots of ``fn(features (B, d), successes (B,), trials (B,))``.

    ``fn`` returns a pytree of arrays and must give zero for rows with zero trials (unused slots past the
    last row of the arm inside its last chunk are passed too). Cost: ⌈filled[arm] / B⌉ calls of ``fn``.
    """
    size = _chunk(rows)
    total = jax.tree.map(jnp.zeros_like, jax.eval_shape(fn, *_slice(rows, arm, jnp.zeros((), jnp.int32))))

    def add_chunk(index, total):
        return jax.tree.map(jnp.add, total, fn(*_slice(rows, arm, index * size)))

    return jax.lax.fori_loop(0, _num_chunks(rows, arm), add_chunk, total)


def _find_slot(rows: ArmRows, arm: jax.Array, features: jax.Array) -> jax.Array:
    """The slot for a new row of ``arm``: its match, else the first free slot, else the next, else -1 (full)."""
    size, filled = _chunk(rows), rows.filled[arm]

    def first(index, mask):
        return jnp.where(jnp.any(mask), index[jnp.argmax(mask)], jnp.int32(-1))

    def unmatched(carry):
        chunk, match, _ = carry
        return (chunk < _num_chunks(rows, arm)) & (match < 0)

    def scan_chunk(carry):
        chunk, _, free = carry
        stored, _, trials = _slice(rows, arm, chunk * size)
        index = chunk * size + jnp.arange(size, dtype=jnp.int32)
        used = index < filled
        match = first(index, used & jnp.all(stored == features, axis=1))
        free = jnp.where(free >= 0, free, first(index, used & (trials == 0)))
        return chunk + 1, match, free

    none = jnp.asarray(-1, jnp.int32)
    _, match, free = jax.lax.while_loop(unmatched, scan_chunk, (jnp.zeros((), jnp.int32), none, none))
    slot = jnp.where(match >= 0, match, jnp.where(free >= 0, free, filled))
    return jnp.where(slot < rows.trials.shape[1], slot, -1).astype(jnp.int32)


def arm_rows_add(rows: ArmRows, arm: jax.Array, features: jax.Array, reward: jax.Array) -> tuple[ArmRows, jax.Array]:
    """``rows`` with one observation (``features`` (d,), ``reward`` ()) of ``arm`` added, and its slot () int32
    (-1 when the arm's slots are all taken by other rows: then nothing is stored and ``dropped`` grows)."""
    arm = jnp.asarray(arm, jnp.int32)
    slot = _find_slot(rows, arm, features)
    stored = slot >= 0
    at = jnp.maximum(slot, 0)
    weight = stored.astype(rows.trials.dtype)
    current = jax.lax.dynamic_slice(rows.features, (arm, at, jnp.int32(0)), (1, 1, rows.features.shape[2]))
    row = jnp.where(stored, jnp.asarray(features, rows.features.dtype)[None, None], current)
    return ArmRows(
        jax.lax.dynamic_update_slice(rows.features, row, (arm, at, jnp.int32(0))),
        rows.trials.at[arm, at].add(weight),
        rows.successes.at[arm, at].add(weight * reward),
        rows.filled.at[arm].max(jnp.where(stored, slot + 1, 0)),
        rows.dropped + (~stored).astype(jnp.int32),
    ), slot


def arm_rows_remove(rows: ArmRows, arm: jax.Array, slot: jax.Array, reward: jax.Array, where: jax.Array) -> ArmRows:
    """``rows`` with one observation of ``arm`` with ``reward`` taken out of ``slot`` where ``where`` () is
    true and the slot is a stored one (>= 0); unchanged otherwise."""
    weight = (where & (slot >= 0)).astype(rows.trials.dtype)
    at = jnp.maximum(slot, 0)
    return rows._replace(trials=rows.trials.at[arm, at].add(-weight),
                         successes=rows.successes.at[arm, at].add(-weight * reward))
