"""Simulation keys: simulation i under a root key uses ``fold_in(root, i)``.

One convention for every runner (``experiments.runner``, ``experiments.restless_runner``) and for
the diagnostics that replay one of their seeds (``diagnostics.trajectories``), so a seed number
names the same draws wherever it is used. It lives at the package root, below every layer.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["seed_keys", "simulation_keys"]


def simulation_keys(root: jax.Array, num_seeds: int, start: int = 0) -> jax.Array:
    """Keys of simulations ``start .. start + num_seeds - 1`` under ``root``: (num_seeds, key), ``fold_in(root, i)``."""
    return jax.vmap(lambda i: jax.random.fold_in(root, i))(jnp.arange(start, start + num_seeds))


def seed_keys(seed: int, num_seeds: int, start: int = 0) -> jax.Array:
    """Keys of simulations ``start .. start + num_seeds - 1`` of root seed ``seed``: (num_seeds, key)."""
    return simulation_keys(jax.random.PRNGKey(seed), num_seeds, start)
