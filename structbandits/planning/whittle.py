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

Bisection always terminates: it also stops when the midpoint rounds to an end of the interval
(the tolerance is below the float spacing there, e.g. an index near 1e9 at tolerance 1e-7) and after
``max_bisections`` steps, and ``relative_tolerance`` adds a width allowance proportional to the
index's magnitude. Neither changes a result that the width test alone reached.

Indices are non-stationary: the reference recomputes them every round with T = min(H − t, 20).
``check_indexability`` tests Whittle's condition on a charge grid for every state and stage;
``whittle_indices`` and ``whittle_index_table`` check the queried state and horizon by default and
warn naming the arms whose index is not well defined there (``check=False`` skips it;
``diagnostics=True`` returns the flags). The jitted policies call ``batched_whittle_indices``, which
does not check.
"""

from __future__ import annotations

import warnings
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
    "WhittleDiagnostics",
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
    relative_tolerance : also stop once the width is at most
        ``tolerance + relative_tolerance · max(|lo|, |hi|)``; 0 (default) is the plain width test.
    max_bisections : cap on the bisection steps. Bisection also stops when the midpoint rounds to
        an end, which on float64 happens within ~2100 halvings of any finite interval, so the
        default never binds; lower it to bound the cost per index.
    """

    lower: float = -1.0
    upper: float = 1.0
    tolerance: float = 1e-7
    bracket: bool = True
    max_expansions: int = 60
    relative_tolerance: float = 0.0
    max_bisections: int = 2200


REFERENCE_SEARCH = WhittleSearch(lower=-1.0, upper=1.0, tolerance=0.01, bracket=False)
"""The reference code's search: [-1, 1], width tolerance 0.01, no bracketing (clips at 0.996)."""


class WhittleDiagnostics(NamedTuple):
    """Indices with what their search found (``whittle_indices(..., diagnostics=True)``).

    Attributes
    ----------
    indices : (N,) or (N, S) the indices, as without diagnostics.
    indexable : same shape, bool. False when acting, having stopped being optimal as the charge
        grows, becomes optimal again at a larger charge (for the queried state and horizon only):
        there is no single crossing and the index is one of several. Checked on a charge grid
        spanning every possible crossing, so False is conclusive and True is evidence.
    converged : same shape, bool. False when bisection stopped before the interval was within the
        tolerance (the midpoint met an end, or ``max_bisections`` ran out).
    """

    indices: jax.Array
    indexable: jax.Array
    converged: jax.Array


def _action_gap(transitions, rewards, state, horizon, gamma, charge):
    q = arm_q(transitions, rewards, charge, horizon, gamma)
    return q[state, 1] - q[state, 0]


def _width_allowance(lo, hi, search: WhittleSearch):
    if search.relative_tolerance > 0:  # static: the default keeps the plain width test, bit for bit
        return search.tolerance + search.relative_tolerance * jnp.maximum(jnp.abs(lo), jnp.abs(hi))
    return search.tolerance


def arm_whittle_bracket(transitions, rewards, state, horizon, gamma, search: WhittleSearch):
    """Final (lo, hi) of the search for one arm; the index is their midpoint (jittable core)."""

    def acts(charge):
        return _action_gap(transitions, rewards, state, horizon, gamma, charge) > 0

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
        lo, hi, n = carry
        mid = 0.5 * (lo + hi)
        act = acts(mid)
        return jnp.where(act, mid, lo), jnp.where(act, hi, mid), n + 1

    def unfinished(carry):
        lo, hi, n = carry
        mid = 0.5 * (lo + hi)
        # A midpoint that rounds to an end would repeat forever; stopping there returns that
        # midpoint, the value the plain width test reached whenever it stopped.
        return ((hi - lo) > _width_allowance(lo, hi, search)) & (n < search.max_bisections) & (mid != lo) & (mid != hi)

    lower, upper, _ = jax.lax.while_loop(unfinished, bisect, (lower, upper, 0))
    return lower, upper


def arm_whittle_index(transitions, rewards, state, horizon, gamma, search: WhittleSearch) -> jax.Array:
    """Index of one arm (S, A, S), (S,) in ``state`` with ``horizon`` rounds left (jittable core)."""
    lower, upper = arm_whittle_bracket(transitions, rewards, state, horizon, gamma, search)
    return 0.5 * (lower + upper)


def arm_acting_is_monotone(transitions, rewards, state, horizon, gamma, num_charges: int = 257) -> jax.Array:
    """Whether acting in ``state`` with ``horizon`` rounds left never turns back on as the charge grows.

    Q(s, 1) − Q(s, 0) = −λ + γ Σ_s' (P[s,1,s'] − P[s,0,s']) V_{T−1}(s'), and the spread of V_{T−1}
    over states is at most (T − 1)·(max r − min r) at any charge, so every crossing lies in
    |λ| <= γ (T − 1)(max r − min r). The check evaluates ``num_charges`` charges across that span;
    a gap within 1e-9 (relative) of zero counts as neither acting nor resting. Jittable.
    """
    scale = rewards.max() - rewards.min()
    span = gamma * (jnp.asarray(horizon, dtype=rewards.dtype) - 1.0) * scale
    charges = jnp.linspace(-1.0, 1.0, num_charges) * span
    gaps = jax.vmap(lambda c: _action_gap(transitions, rewards, state, horizon, gamma, c))(charges)
    noise = 1e-9 * (1.0 + horizon * (jnp.abs(rewards).max() + span))
    resting_so_far = jax.lax.cummax((gaps < -noise).astype(jnp.int32))
    return ~jnp.any((resting_so_far > 0) & (gaps > noise))


def _over_arms(arm_fn, transitions, rewards, states, horizon, gamma, search):
    """``arm_fn(p, r, s, horizon, gamma, search)`` vmapped over arms, each in its state (N,)."""
    return jax.vmap(lambda p, r, s: arm_fn(p, r, s, horizon, gamma, search))(transitions, rewards, states)


def _over_arms_and_states(arm_fn, transitions, rewards, horizon, gamma, search):
    """``arm_fn`` for every arm in every state: results with leading axes (N, S)."""
    states = jnp.arange(transitions.shape[1])
    per_state = jax.vmap(lambda p, r, s: arm_fn(p, r, s, horizon, gamma, search), in_axes=(None, None, 0))
    return jax.vmap(per_state, in_axes=(0, 0, None))(transitions, rewards, states)


def batched_whittle_indices(transitions, rewards, states, horizon, gamma, search: WhittleSearch) -> jax.Array:
    """Indices (N,) of every arm in its state: ``arm_whittle_index`` vmapped over arms (jittable)."""
    return _over_arms(arm_whittle_index, transitions, rewards, states, horizon, gamma, search)


_whittle_jit = jax.jit(batched_whittle_indices, static_argnums=5)


def _table(transitions, rewards, horizon, gamma, search):
    return _over_arms_and_states(arm_whittle_index, transitions, rewards, horizon, gamma, search)


_table_jit = jax.jit(_table, static_argnums=4)


def _diagnose_arm(transitions, rewards, state, horizon, gamma, search):
    lo, hi = arm_whittle_bracket(transitions, rewards, state, horizon, gamma, search)
    return (0.5 * (lo + hi), arm_acting_is_monotone(transitions, rewards, state, horizon, gamma),
            (hi - lo) <= _width_allowance(lo, hi, search))


def _diagnosed(transitions, rewards, states, horizon, gamma, search):
    return _over_arms(_diagnose_arm, transitions, rewards, states, horizon, gamma, search)


def _diagnosed_table(transitions, rewards, horizon, gamma, search):
    return _over_arms_and_states(_diagnose_arm, transitions, rewards, horizon, gamma, search)


_diagnosed_jit = jax.jit(_diagnosed, static_argnums=5)
_diagnosed_table_jit = jax.jit(_diagnosed_table, static_argnums=4)


def _report(result, what: str) -> WhittleDiagnostics:
    indices, indexable, converged = (np.asarray(v) for v in result)
    if not indexable.all():
        where = [tuple(int(i) for i in w) for w in np.argwhere(~indexable)]
        warnings.warn(f"whittle: not indexable at {what} {where}: acting turns optimal again at a larger charge, "
                      f"so the index returned is one of several crossings", RuntimeWarning, stacklevel=3)
    if not converged.all():
        where = [tuple(int(i) for i in w) for w in np.argwhere(~converged)]
        warnings.warn(f"whittle: bisection stopped above the tolerance at {what} {where} (the tolerance is below the "
                      f"float spacing of the index, or max_bisections ran out); consider relative_tolerance",
                      RuntimeWarning, stacklevel=3)
    return WhittleDiagnostics(jnp.asarray(indices), indexable, converged)


def _check_search(search) -> WhittleSearch:
    if not isinstance(search, WhittleSearch):
        raise ValidationError(f"search: expected a WhittleSearch, got {type(search).__name__}")
    lower, upper = (float(v) for v in check_finite("search.lower/upper", [search.lower, search.upper]))
    if not lower < upper:
        raise ValidationError(f"search: expected lower < upper, got [{lower}, {upper}]")
    check_positive("search.tolerance", search.tolerance)
    check_integer("search.max_expansions", search.max_expansions, minimum=0)
    check_finite("search.relative_tolerance", search.relative_tolerance)
    check_positive("search.relative_tolerance", search.relative_tolerance, allow_zero=True)
    check_integer("search.max_bisections", search.max_bisections, minimum=1)
    return WhittleSearch(lower, upper, float(search.tolerance), bool(search.bracket), int(search.max_expansions),
                         float(search.relative_tolerance), int(search.max_bisections))


def _check_binary(probs: np.ndarray) -> None:
    if probs.shape[2] != 2:
        raise ValidationError(f"transitions: Whittle indices need A = 2 actions (rest, act), got A = {probs.shape[2]}")


def whittle_indices(transitions, rewards, states, horizon: int, gamma: float = REFERENCE_GAMMA,
                    search: WhittleSearch = WhittleSearch(), *, check: bool = True, diagnostics: bool = False):
    """Whittle index of every arm in its current state.

    Parameters
    ----------
    transitions : (N, S, 2, S) per-arm transitions.
    rewards : (N, S) per-arm state rewards.
    states : (N,) current states.
    horizon : T >= 1 rounds left to plan over.
    gamma : discount in (0, 1].
    search : ``WhittleSearch()`` (bracketing, exact to 1e-7) or ``REFERENCE_SEARCH``.
    check : check each arm's indexability at its state and whether bisection reached the tolerance,
        warning (``RuntimeWarning``) naming the arms that fail (costs ~257 more value iterations per
        arm; ``False`` skips it, e.g. in timing loops).
    diagnostics : return the checks' results too (implies ``check``).

    Returns
    -------
    (N,) indices, or with ``diagnostics`` a ``WhittleDiagnostics`` of (N,) arrays.
    """
    probs, rew = check_arms(transitions, rewards)
    _check_binary(probs)
    st = check_states("states", states, *probs.shape[:2])
    horizon = check_integer("horizon", horizon, minimum=1)
    args = (jnp.asarray(probs), jnp.asarray(rew), jnp.asarray(st), horizon, check_gamma(gamma), _check_search(search))
    if diagnostics or check:
        report = _report(_diagnosed_jit(*args), "arms")
        return report if diagnostics else report.indices
    return _whittle_jit(*args)


def whittle_index_table(transitions, rewards, horizon: int, gamma: float = REFERENCE_GAMMA,
                        search: WhittleSearch = WhittleSearch(), *, check: bool = True,
                        diagnostics: bool = False):
    """Whittle indices of every arm in every state, (N, S); arguments as ``whittle_indices``
    (with ``diagnostics`` a ``WhittleDiagnostics`` of (N, S) arrays, warnings naming (arm, state))."""
    probs, rew = check_arms(transitions, rewards)
    _check_binary(probs)
    horizon = check_integer("horizon", horizon, minimum=1)
    args = (jnp.asarray(probs), jnp.asarray(rew), horizon, check_gamma(gamma), _check_search(search))
    if diagnostics or check:
        report = _report(_diagnosed_table_jit(*args), "(arm, state)")
        return report if diagnostics else report.indices
    return _table_jit(*args)


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
