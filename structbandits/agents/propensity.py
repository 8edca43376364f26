"""Monte-Carlo selection probabilities (propensities) of Thompson-sampling decisions.

A Thompson agent plays argmax_a s̃_a for one posterior draw s̃ of its arms' scores. The probability
that it picks arm a is P(argmax s = a) under the posterior; the agents estimate it as the share of
M fresh posterior draws whose argmax is a (standard error sqrt(p(1 − p)/M)). The estimate is reported
in ``ActInfo.propensity`` for later off-policy and causal analyses; agents that do not estimate it
report ``protocol.no_propensity`` (NaN).

Score-draw convention shared by the agents: ``score_draws(key, shape)`` returns Thompson scores of
shape ``shape + (K,)`` from posterior draws seeded by ``key`` (``shape = ()`` for one draw);
``keyed_draws`` builds one from a function that draws one score vector per key.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from structbandits.agents.protocol import ActInfo, no_propensity

__all__ = ["choice_frequency", "keyed_draws", "monte_carlo_propensity", "thompson_choice"]

ScoreDraws = Callable[[jax.Array, tuple[int, ...]], jax.Array]


def choice_frequency(choices: jax.Array, action: jax.Array, dtype=None) -> jax.Array:
    """The share of ``choices`` (M,) (arm indices, one per posterior draw) equal to ``action`` ().

    ``dtype`` None is JAX's default float (float64 after ``structbandits.configure()``, else float32;
    ``jnp.mean`` itself would give float32 for booleans).
    """
    if dtype is None:
        dtype = jax.dtypes.canonicalize_dtype(jnp.float64)
    return jnp.mean(choices == action, dtype=dtype)


def monte_carlo_propensity(score_draws: ScoreDraws, key: jax.Array, num_draws: int, action: jax.Array,
                           dtype=None) -> jax.Array:
    """Monte-Carlo estimate () of P(argmax of a posterior draw = ``action``) from ``num_draws`` M draws.

    ``score_draws(key, (M,))`` returns (M, K) scores; the draws must be independent of the draw the
    action was chosen with (pass a fresh key). Cost: one batched call of ``score_draws``.
    """
    return choice_frequency(jnp.argmax(score_draws(key, (num_draws,)), axis=-1), action, dtype)


def thompson_choice(score_draws: ScoreDraws, key: jax.Array, propensity_draws: int,
                    dtype=None) -> tuple[jax.Array, ActInfo]:
    """argmax of one posterior draw of the scores, and its Monte-Carlo propensity from M fresh draws.

    ``key`` is split in two: the first half seeds the acting draw, the second the M propensity
    draws. ``propensity_draws`` M = 0 reports NaN (``no_propensity``) and draws nothing more.
    Returns (action (), ActInfo with a ``dtype`` propensity).
    """
    act_key, propensity_key = jax.random.split(key)
    action = jnp.argmax(score_draws(act_key, ()))
    if propensity_draws == 0:
        return action, no_propensity(dtype)
    return action, ActInfo(monte_carlo_propensity(score_draws, propensity_key, propensity_draws, action, dtype))


def keyed_draws(draw_one: Callable[[jax.Array], jax.Array]) -> ScoreDraws:
    """``score_draws`` from ``draw_one(key) -> (K,)``: one split key per draw, vmapped over the draws."""

    def score_draws(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
        if shape == ():
            return draw_one(key)
        scores = jax.vmap(draw_one)(jax.random.split(key, math.prod(shape)))
        return scores.reshape(shape + scores.shape[1:])

    return score_draws
