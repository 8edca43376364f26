"""Dropping compiled programs frees their memory mappings (the suite and long sweeps rely on it)."""

import sys

import jax
import jax.numpy as jnp
import pytest

from structbandits.compiled_memory import mapping_count, mapping_limit, release_compiled_programs

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc (Linux only)")


def _compile_many(count: int) -> None:
    for size in range(1, count + 1):
        jax.jit(lambda x: jnp.sin(x) * 2.0 + jnp.cos(x) ** 2)(jnp.ones(size))


def test_counts_are_read():
    assert mapping_limit() > 0
    assert mapping_count() > 0


def test_release_drops_the_mappings_of_compiled_programs():
    jax.clear_caches()
    before = mapping_count()
    _compile_many(60)
    grown = mapping_count()
    assert grown - before >= 60  # each CPU executable holds mappings of its own
    assert not release_compiled_programs(fraction=1.0)  # under the threshold: nothing is dropped
    assert mapping_count() > grown - (grown - before) / 2  # nothing dropped (other frees move it by a few)
    assert release_compiled_programs(fraction=0.0)
    assert mapping_count() - before < (grown - before) / 2
