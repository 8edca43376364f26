"""A fixed-capacity ring buffer of observations, so that refits run inside ``jit`` with static shapes.

The buffer keeps the last ``capacity`` rows of any pytree (every leaf gets a leading capacity axis).
``count`` is the number of rows ever appended: row number ``count`` goes to slot ``count % capacity``,
overwriting the oldest once the buffer is full, and ``ring_filled`` marks the slots written so far.
The Laplace refits of the GLM agents, the generic NumPyro sampler and the perturbed ensembles all
store their data this way.

>>> import jax.numpy as jnp
>>> buffer = ring_init({"x": jnp.zeros(2), "y": jnp.zeros(())}, capacity=3)
>>> for t in range(4):
...     buffer = ring_append(buffer, {"x": jnp.full(2, t), "y": jnp.asarray(t)})
>>> buffer.rows["y"].tolist(), int(buffer.count), ring_filled(buffer).tolist()
([3.0, 1.0, 2.0], 4, [True, True, True])
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from structbandits.errors import check_integer

__all__ = ["RingBuffer", "ring_append", "ring_evicted", "ring_filled", "ring_init", "ring_size"]


class RingBuffer(NamedTuple):
    """``rows``: a pytree whose leaves have a leading capacity axis (T, ...); ``count`` (): rows ever appended."""

    rows: Any
    count: jax.Array


def ring_init(example_row: Any, capacity: int) -> RingBuffer:
    """An empty buffer of ``capacity`` rows shaped and typed like ``example_row`` (zeros, count 0)."""
    capacity = check_integer("capacity", capacity, minimum=1)
    rows = jax.tree.map(lambda leaf: jnp.zeros((capacity, *jnp.shape(leaf)), jnp.asarray(leaf).dtype), example_row)
    return RingBuffer(rows, jnp.zeros((), jnp.int32))


def ring_append(buffer: RingBuffer, row: Any) -> RingBuffer:
    """``buffer`` with ``row`` (the example row's structure; values are cast to the stored dtypes) in the next slot."""
    slot = buffer.count % _capacity(buffer)
    rows = jax.tree.map(lambda stored, value: stored.at[slot].set(jnp.asarray(value).astype(stored.dtype)),
                        buffer.rows, row)
    return RingBuffer(rows, buffer.count + 1)


def ring_filled(buffer: RingBuffer) -> jax.Array:
    """(T,) bool: the slots that hold a row (the first ``count`` slots until the buffer is full, then all)."""
    return jnp.arange(_capacity(buffer)) < buffer.count


def ring_size(buffer: RingBuffer) -> jax.Array:
    """() int32: the number of rows held, min(count, capacity)."""
    return jnp.minimum(buffer.count, _capacity(buffer))


def ring_evicted(buffer: RingBuffer) -> tuple[Any, jax.Array]:
    """The row the next ``ring_append`` overwrites (the oldest held) and () bool: whether it holds data
    (the buffer is full), so that a caller keeping other tables of the same rows can take it out of them."""
    slot = buffer.count % _capacity(buffer)
    return jax.tree.map(lambda stored: stored[slot], buffer.rows), buffer.count >= _capacity(buffer)


def _capacity(buffer: RingBuffer) -> int:
    return jax.tree.leaves(buffer.rows)[0].shape[0]
