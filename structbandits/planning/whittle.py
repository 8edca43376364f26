"""Finite-horizon Whittle indices by bisection on the action charge, vectorised over arms.

The Whittle index of an arm in state s with T rounds left is the charge λ at which acting and
resting have equal value, Q_T(s, 1; λ) = Q_T(s, 0; λ) (``value_iteration``). Acting counts as
optimal only when it is *strictly* better (ties go to resting, as in the reference code). For an
indexable arm, acting is optimal for every λ below the index and for none above it, so bisection
on "is acting optimal at λ?" converges to the index.

Two searches (``WhittleSearch``):

* bracketing (default): start from [lower, upper] and double the interval outwards until acting is
  optimal at the lower end and not at the upper end, then bisect to ``tolerance``. This brackets
  the true index wherever it is.
* the reference code's search (``REFERENCE_SEARCH``): bisection confined to [-1, 1], stopped once
  the width is <= 0.01, returning the midpoint. Outputs lie on the grid −1 + (k + ½)/128, and true
  indices above 1 are clipped to 0.99609375 (this happens in the synthetic and maternal domains
  and creates exact ties). Use it to reproduce the paper's numbers.

Indices are non-stationary: the reference recomputes them every round with T = min(H − t, 20).
``check_indexability`` tests Whittle's condition on a charge grid.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from structbandits.errors import ValidationError, check_finite, check_integer, check_positive
from structbandits.planning.value_iteration import (
    REFERENCE_GAMMA,
    _stage_q_values,
    arm_q,
    check_arms,
    check_gamma,
    check_states,
)

__all__ = [
    "REFERENCE_SEARCH",
    "WhittleSearch",
    "check_indexability",
    "whittle_index_table",
    "whittle_indices",
]


class WhittleSearch(NamedTuple):
    """How the index is searched for.

    Attributes
    ----------
    lower, upper : the initial interval of charges.
    tolerance : stop once the interval is at most this wide; the midpoint is returned.
    bracket : expand the interval (doubling its width) until it brackets the index; False confines
        the search to [lower, upper] and clips indices outside it, as the reference does.
    max_expansions : cap on the doublings per side (60 doublings cover any finite reward scale).
    """

    lower: float = -1.0
    upper: float = 1.0
    tolerance: float = 1e-7
    bracket: bool = True
    max_expansions: int = 60


REFERENCE_SEARCH = WhittleSearch(lower=-1.0, upper=1.0, tolerance=0.01, bracket=False)
"""The reference code's search: [-1, 1], width tolerance 0.01, no bracketing (clips at 0.996)."""


def arm_whittle_index(transitions, rewards, state, horizon, gamma, search: WhittleSearch) -> jax.Array:
    """Index of one arm (S, A, S), (S,) in ``state`` with ``horizon`` rounds left (jittable core)."""

    def acts(charge):
        q = arm_q(transitions, rewards, charge, horizon, gamma)
        return q[state, 1] > q[state, 0]

    lower = jnp.asarray(search.lower, dtype=jnp.float64)
    upper = jnp.asarray(search.upper, dtype=jnp.float64)
    if search.bracket:
        def expand_up(carry):
            lo, hi, n = carry
            return hi, hi + 2.0 * (hi - lo), n + 1

        def expand_down(carry):
            lo, hi, n = carry
            return lo - 2.0 * (hi - lo), lo, n + 1

        lower, upper, _ = jax.lax.while_loop(lambda c: acts(c[1]) & (c[2] < search.max_expansions),
                                             expand_up, (lower, upper, 0))
        lower, upper, _ = jax.lax.while_loop(lambda c: ~acts(c[0]) & (c[2] < search.max_expansions),
                                             expand_down, (lower, upper, 0))

    def bisect(carry):
        lo, hi = carry
        mid = 0.5 * (lo + hi)
        act = acts(mid)
        return jnp.where(act, mid, lo), jnp.where(act, hi, mid)

    lower, upper = jax.lax.while_loop(lambda c: (c[1] - c[0]) > search.tolerance, bisect, (lower, upper))
    return 0.5 * (lower + upper)


def batched_whittle_indices(transitions, rewards, states, horizon, gamma, search: WhittleSearch) -> jax.Array:
    """Indices (N,) of every arm in its state: ``arm_whittle_index`` vmapped over arms (jittable)."""
    return jax.vmap(lambda p, r, s: arm_whittle_index(p, r, s, horizon, gamma, search))(transitions, rewards, states)


_whittle_jit = jax.jit(batched_whittle_indices, static_argnums=5)


def _table(transitions, rewards, horizon, gamma, search):
    states = jnp.arange(transitions.shape[1])
    per_state = jax.vmap(lambda p, r, s: arm_whittle_index(p, r, s, horizon, gamma, search), in_axes=(None, None, 0))
    return jax.vmap(per_state, in_axes=(0, 0, None))(transitions, rewards, states)


_table_jit = jax.jit(_table, static_argnums=4)


def _check_search(search) -> WhittleSearch:
    if not isinstance(search, WhittleSearch):
        raise ValidationError(f"search: expected a WhittleSearch, got {type(search).__name__}")
    lower, upper = (float(v) for v in check_finite("search.lower/upper", [search.lower, search.upper]))
    if not lower < upper:
        raise ValidationError(f"search: expected lower < upper, got [{lower}, {upper}]")
    check_positive("search.tolerance", search.tolerance)
    check_integer("search.max_expansions", search.max_expansions, minimum=0)
    return WhittleSearch(lower, upper, float(search.tolerance), bool(search.bracket), int(search.max_expansions))


def _check_binary(probs: np.ndarray) -> None:
    if probs.shape[2] != 2:
        raise ValidationError(f"transitions: Whittle indices need A = 2 actions (rest, act), got A = {probs.shape[2]}")


def whittle_indices(transitions, rewards, states, horizon: int, gamma: float = REFERENCE_GAMMA,
                    search: WhittleSearch = WhittleSearch()) -> jax.Array:
    """Whittle index of every arm in its current state.

    Parameters
    ----------
    transitions : (N, S, 2, S) per-arm transitions.
    rewards : (N, S) per-arm state rewards.
    states : (N,) current states.
    horizon : T >= 1 rounds left to plan over.
    gamma : discount in (0, 1].
    search : ``WhittleSearch()`` (bracketing, exact to 1e-7) or ``REFERENCE_SEARCH``.

    Returns
    -------
    (N,) indices.
    """
    probs, rew = check_arms(transitions, rewards)
    _check_binary(probs)
    st = check_states("states", states, *probs.shape[:2])
    horizon = check_integer("horizon", horizon, minimum=1)
    return _whittle_jit(jnp.asarray(probs), jnp.asarray(rew), jnp.asarray(st), horizon, check_gamma(gamma),
                        _check_search(search))


def whittle_index_table(transitions, rewards, horizon: int, gamma: float = REFERENCE_GAMMA,
                        search: WhittleSearch = WhittleSearch()) -> jax.Array:
    """Whittle indices of every arm in every state, (N, S); arguments as ``whittle_indices``."""
    probs, rew = check_arms(transitions, rewards)
    _check_binary(probs)
    horizon = check_integer("horizon", horizon, minimum=1)
    return _table_jit(jnp.asarray(probs), jnp.asarray(rew), horizon, check_gamma(gamma), _check_search(search))


def check_indexability(transitions, rewards, horizon: int, gamma: float = REFERENCE_GAMMA,
                       charges=None, atol: float = 1e-9) -> np.ndarray:
    """Whittle's indexability condition on a charge grid, per arm.

    An arm is indexable when, for every number of rounds left k = 1..T and every state, the set of
    charges at which acting is (strictly) optimal is a half-line (−∞, w_k(s)): once resting is
    optimal at some charge it stays optimal at every larger charge. Checked on the grid ``charges``
    (default: 801 points spanning ±(reward range · Σγ^t + 1)); a violation between grid points can
    be missed, so a False is conclusive and a True is evidence.

    Parameters
    ----------
    transitions, rewards : (N, S, 2, S), (N, S).
    horizon : T, the largest number of rounds left to check.
    charges : optional (K,) increasing grid.
    atol : Q differences within ``atol`` of zero count as ties (resting).

    Returns
    -------
    (N,) bool.
    """
    probs, rew = check_arms(transitions, rewards)
    _check_binary(probs)
    horizon = check_integer("horizon", horizon, minimum=1)
    gamma = check_gamma(gamma)
    if charges is None:
        span = float(np.ptp(rew, axis=1).max()) * horizon + 1.0
        grid = np.linspace(-span, span, 801)
    else:
        grid = check_finite("charges", charges)
        if grid.ndim != 1 or grid.size < 2 or np.any(np.diff(grid) <= 0):
            raise ValidationError(f"charges: expected an increasing (K,) grid with K >= 2, got shape {grid.shape}")
    q = np.asarray(_stage_q_values(jnp.asarray(probs), jnp.asarray(rew), jnp.asarray(grid), horizon, gamma))
    acting = (q[..., 1] - q[..., 0]) > atol  # (N, K, T, S)
    # Indexable: along the charge axis acting never switches back on after switching off.
    switched_on = np.diff(acting.astype(np.int8), axis=1) > 0
    return ~switched_on.any(axis=(1, 2, 3))
