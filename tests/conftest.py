"""Suite-wide fixtures.

Every XLA executable that JAX compiles on the CPU holds a few memory mappings until its cache entry
is dropped. The suite compiles tens of thousands of programs in one process, which ran into the
kernel's limit on mappings per process (``vm.max_map_count``, 65530 by default) two thirds of the
way through and crashed XLA's compiler with a segmentation fault. Dropping JAX's caches after each
test module keeps the count at what one module needs.
"""

import gc

import jax
import pytest


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    yield
    jax.clear_caches()
    gc.collect()
