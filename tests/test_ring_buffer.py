"""The ring buffer against a Python deque of the same capacity, inside jit, on pytree rows."""

import collections
import doctest

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from structbandits.errors import ValidationError
from structbandits.inference import ring_buffer
from structbandits.inference.ring_buffer import ring_append, ring_filled, ring_init, ring_size


def test_the_module_example_holds():
    assert doctest.testmod(ring_buffer).failed == 0


@pytest.mark.parametrize("appended", [0, 2, 5, 12])
def test_the_stored_rows_are_the_latest_ones_as_in_a_deque(appended):
    capacity = 5
    example = {"x": jnp.zeros(3), "arm": jnp.zeros((), jnp.int32), "nested": (jnp.zeros(()),)}
    append = jax.jit(ring_append)
    buffer, oracle = ring_init(example, capacity), collections.deque(maxlen=capacity)
    for t in range(appended):
        row = {"x": jnp.arange(3.0) + t, "arm": jnp.asarray(t % 4), "nested": (jnp.asarray(0.5 * t),)}
        buffer, _ = append(buffer, row), oracle.append(t)
    filled = np.asarray(ring_filled(buffer))
    assert int(buffer.count) == appended and filled.sum() == len(oracle) == int(ring_size(buffer))
    np.testing.assert_array_equal(np.sort(np.asarray(buffer.rows["nested"][0])[filled]), 0.5 * np.asarray(oracle))
    np.testing.assert_array_equal(np.sort(np.asarray(buffer.rows["arm"])[filled]), np.sort(np.asarray(oracle) % 4))
    np.testing.assert_array_equal(np.asarray(buffer.rows["x"])[filled][:, 0], np.asarray(buffer.rows["nested"][0])[filled] * 2)
    assert not np.asarray(buffer.rows["x"])[~filled].any()  # unwritten slots stay zero


def test_values_take_the_stored_dtypes_and_a_bad_capacity_is_named():
    buffer = ring_append(ring_init({"arm": jnp.zeros((), jnp.int32), "y": jnp.zeros(())}, 2),
                         {"arm": jnp.asarray(3.0), "y": jnp.asarray(1, jnp.int32)})
    assert buffer.rows["arm"].dtype == jnp.int32 and buffer.rows["y"].dtype == jnp.zeros(()).dtype
    with pytest.raises(ValidationError, match="capacity: expected an integer >= 1"):
        ring_init(jnp.zeros(()), 0)
