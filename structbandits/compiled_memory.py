"""Keep a long-running process under the kernel's limit on memory mappings.

Every program that XLA compiles for the CPU keeps a few memory mappings for as long as JAX's caches
hold it. A process that compiles tens of thousands of programs (a long sweep, a test suite) reaches
Linux's per-process limit (``/proc/sys/vm/max_map_count``, 65530 by default), and the next mapping
fails inside XLA's compiler as a segmentation fault, losing the run. The runners call
``release_compiled_programs`` between units of work: when the process holds more than ``fraction`` of
the limit it drops JAX's caches (the next call of a dropped program compiles it again).
"""

from __future__ import annotations

import gc
from pathlib import Path

import jax

__all__ = ["mapping_count", "mapping_limit", "release_compiled_programs"]


def mapping_count() -> int | None:
    """Memory mappings this process holds now, or None where ``/proc/self/maps`` does not exist."""
    try:
        with open("/proc/self/maps", "rb") as maps:
            return sum(1 for _ in maps)
    except OSError:
        return None


def mapping_limit() -> int | None:
    """The kernel's limit on mappings per process, or None where it cannot be read."""
    try:
        return int(Path("/proc/sys/vm/max_map_count").read_text())
    except (OSError, ValueError):
        return None


def release_compiled_programs(fraction: float = 0.5) -> bool:
    """Drop JAX's caches if this process holds more than ``fraction`` of the mapping limit.

    Returns True when it dropped them. A no-op (False) where the counts cannot be read.
    """
    count, limit = mapping_count(), mapping_limit()
    if count is None or limit is None or count <= fraction * limit:
        return False
    jax.clear_caches()
    gc.collect()
    return True
