"""Equitable budget allocation across groups, and the within-group choice of arms.

Every allocator returns integer per-group budgets b (G,) with Σ_g b_g = B and 0 <= b_g <= n_g:

* ``top_index_allocation`` (utilitarian "Opt"): the groups of the B largest Whittle indices.
* ``water_filling`` (MMR): B unit steps, each to the non-full group with the smallest
  group-average value L_g(b_g) / n_g (ties to the lowest group). Optimal for maximin when the
  curves are nondecreasing.
* ``mnw_greedy`` (MNW): B unit steps, each to the non-full group with the largest
  log L_g(b_g + 1) − log L_g(b_g). Optimal for Σ_g log L_g(b_g) when the curves are positive,
  nondecreasing and concave. On group totals it favours small groups (the paper's Thm. 4).
* ``exact_maximin`` / ``exact_nash_welfare`` (extension, not in the paper): the optimal integer
  splits for max_b min_g L_g(b_g) / n_g resp. max_b Σ_g log L_g(b_g) on ANY curves (non-concave,
  non-monotone, negative for maximin), by dynamic programming over groups: a (G, B_max + 1) table
  of the best value of groups 0..g spending c units (``lax.scan`` over groups), then a backtrack.
  Cost O(G · B_max · K). Tie-breaking: among maximin-optimal splits the one with the largest total
  Σ_g L_g(b_g) (a second DP restricted to b with L_g(b) / n_g >= the optimal minimum); any tie left
  (of that total, or of the Nash objective) goes to the split whose LAST group has the smallest
  b_g, then the next-to-last, and so on (the backtrack takes the first argmax). The greedy
  allocators above are optimal only on nondecreasing (MMR) or concave (MNW) curves; the
  WhittleToLagrange curves of the maternal domain are neither.
* ``rescale_equal_groups`` (the last steps of MNW-EG): budgets found for groups upsampled to the
  largest size M are rescaled by n_g / M, renormalised to B, clipped to the group sizes (excess
  spread evenly over the groups with room, repeated until none overflows) and integerised: integer
  parts plus the leftover units to groups drawn without replacement with probability ∝ fractional
  part (Gumbel top-k).

``select_within_groups`` then acts on the top-b_g indices of each group, breaking ties (indices
within ``tie_tolerance`` of the b_g-th largest) uniformly at random with an explicit key.

The ``*_core`` functions are jittable (budgets may be traced); the public wrappers validate.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from structbandits.errors import ValidationError, check_finite, check_integer, check_shape

__all__ = [
    "TIE_TOLERANCE",
    "exact_maximin",
    "exact_nash_welfare",
    "group_counts",
    "mnw_greedy",
    "rescale_equal_groups",
    "select_within_groups",
    "top_index_allocation",
    "water_filling",
]

TIE_TOLERANCE = 1e-4
"""Indices within this distance of the b-th largest are ties (the reference's tolerance)."""

_LOG_FLOOR = 1e-300


# --- jittable cores ------------------------------------------------------------------------------


def water_filling_core(curves: jax.Array, sizes: jax.Array, budget) -> jax.Array:
    """MMR water filling on ``curves`` (G, K) normalised by ``sizes`` (G,); caps min(n_g, K-1)."""
    caps = jnp.minimum(sizes, curves.shape[1] - 1)
    groups = jnp.arange(curves.shape[0])

    def step(_, alloc):
        average = curves[groups, alloc] / sizes
        g = jnp.argmin(jnp.where(alloc < caps, average, jnp.inf))
        return alloc.at[g].add(jnp.where(alloc[g] < caps[g], 1, 0))

    return jax.lax.fori_loop(0, budget, step, jnp.zeros(curves.shape[0], dtype=jnp.int32))


def mnw_greedy_core(curves: jax.Array, caps: jax.Array, budget) -> jax.Array:
    """MNW greedy on log differences of ``curves`` (G, K); group g takes at most min(caps_g, K-1)."""
    caps = jnp.minimum(caps, curves.shape[1] - 1)
    logs = jnp.log(jnp.maximum(curves, _LOG_FLOOR))
    groups = jnp.arange(curves.shape[0])

    def step(_, alloc):
        gain = logs[groups, jnp.minimum(alloc + 1, curves.shape[1] - 1)] - logs[groups, alloc]
        g = jnp.argmax(jnp.where(alloc < caps, gain, -jnp.inf))
        return alloc.at[g].add(jnp.where(alloc[g] < caps[g], 1, 0))

    return jax.lax.fori_loop(0, budget, step, jnp.zeros(curves.shape[0], dtype=jnp.int32))


def _group_dp(values: jax.Array, allowed: jax.Array, combine, empty: float, budget, max_budget: int):
    """Best ``combine``-accumulated value of groups 0..g spending exactly c units, then the split.

    ``values`` (G, K) per-group values of b = 0..K-1, ``allowed`` (G, K) bool; ``combine`` is
    jnp.minimum or jnp.add with identity ``empty``. Returns ((G,) int32 split of ``budget``, the
    optimal value; -inf when no allowed split exists).
    """
    spend = jnp.arange(max_budget + 1)
    units = jnp.arange(values.shape[1])
    before = spend[:, None] - units[None, :]  # (C, K) units spent by the earlier groups

    def add_group(best, group):
        value, ok = group
        candidates = combine(best[jnp.maximum(before, 0)], value[None, :])
        candidates = jnp.where((before >= 0) & ok[None, :], candidates, -jnp.inf)
        return candidates.max(axis=1), jnp.argmax(candidates, axis=1).astype(jnp.int32)

    start = jnp.where(spend == 0, empty, -jnp.inf).astype(values.dtype)
    best, choices = jax.lax.scan(add_group, start, (values, allowed))

    def backtrack(left, choice):
        return left - choice[left], choice[left]

    _, split = jax.lax.scan(backtrack, jnp.asarray(budget, jnp.int32), choices, reverse=True)
    return split, best[budget]


def _within_caps(curves: jax.Array, caps: jax.Array) -> jax.Array:
    return jnp.arange(curves.shape[1])[None, :] <= jnp.minimum(caps, curves.shape[1] - 1)[:, None]


def exact_maximin_core(curves: jax.Array, sizes: jax.Array, budget, max_budget: int) -> jax.Array:
    """Maximin-optimal split of ``budget`` <= ``max_budget`` (static) on curves (G, K) / ``sizes`` (G,).

    Caps min(n_g, K-1) as ``water_filling_core``; ties to the largest total Σ_g L_g(b_g) (module
    docstring). ``budget`` may be traced but must not exceed the total capacity (trusted).
    """
    averages = curves / sizes[:, None]
    ok = _within_caps(curves, sizes)
    _, level = _group_dp(averages, ok, jnp.minimum, jnp.inf, budget, max_budget)
    split, _ = _group_dp(curves, ok & (averages >= level), jnp.add, 0.0, budget, max_budget)
    return split


def exact_nash_welfare_core(curves: jax.Array, caps: jax.Array, budget, max_budget: int) -> jax.Array:
    """Split of ``budget`` <= ``max_budget`` (static) maximising Σ_g log max(L_g(b_g), 1e-300).

    ``curves`` (G, K), group g takes at most min(caps_g, K-1), as ``mnw_greedy_core``.
    """
    logs = jnp.log(jnp.maximum(curves, _LOG_FLOOR))
    split, _ = _group_dp(logs, _within_caps(curves, caps), jnp.add, 0.0, budget, max_budget)
    return split


def rescale_equal_groups_core(equal_budgets: jax.Array, sizes: jax.Array, upsampled_size, budget,
                              key: jax.Array) -> jax.Array:
    """MNW-EG steps 4-6: rescale by n_g / M, renormalise to B, clip to n_g, integerise."""
    sizes_f = sizes.astype(jnp.float64)
    share = equal_budgets * sizes_f / upsampled_size
    total = share.sum()
    share = jnp.where(total > 0, share * budget / jnp.where(total > 0, total, 1.0), budget * sizes_f / sizes_f.sum())

    def clip_step(_, x):
        excess = jnp.maximum(x - sizes_f, 0.0).sum()
        x = jnp.minimum(x, sizes_f)
        room = x < sizes_f
        return x + jnp.where(room, excess / jnp.maximum(room.sum(), 1), 0.0)

    share = jax.lax.fori_loop(0, sizes.shape[0] + 1, clip_step, share)
    whole = jnp.minimum(jnp.floor(share + 1e-9), sizes_f)
    fraction = jnp.maximum(share - whole, 0.0)
    leftover = budget - whole.sum().astype(jnp.int32)
    gumbel = jax.random.gumbel(key, sizes.shape, dtype=jnp.float64)
    score = jnp.where(whole < sizes_f, jnp.log(fraction + _LOG_FLOOR) + gumbel, -jnp.inf)
    rank = jnp.argsort(jnp.argsort(-score))
    return (whole + (rank < leftover)).astype(jnp.int32)


def select_within_groups_core(indices: jax.Array, groups: jax.Array, budgets: jax.Array, key: jax.Array,
                              sorted_indices: jax.Array, tie_tolerance: float = TIE_TOLERANCE) -> jax.Array:
    """(N,) bool mask of the top-b_g ``indices`` of each group with random tie-breaks.

    ``sorted_indices`` (G, M): each group's indices in decreasing order (-inf padded), from
    ``lagrangian.sorted_slot_values``. Arms above the b_g-th largest by more than the tolerance are
    taken; the remaining slots go uniformly at random to the arms within the tolerance of it.
    """
    arm_budget = budgets[groups]
    threshold = jnp.take_along_axis(sorted_indices, jnp.maximum(budgets - 1, 0)[:, None], axis=1)[:, 0][groups]
    sure = indices > threshold + tie_tolerance
    tie = ~sure & (jnp.abs(indices - threshold) <= tie_tolerance)
    score = jnp.where(sure, 3.0, jnp.where(tie, 1.0 + jax.random.uniform(key, indices.shape), 0.0))
    order = jnp.lexsort((-score, groups))
    sorted_groups = groups[order]
    starts = jnp.searchsorted(sorted_groups, jnp.arange(budgets.shape[0]))
    rank_sorted = jnp.arange(indices.shape[0]) - starts[sorted_groups]
    rank = jnp.zeros_like(rank_sorted).at[order].set(rank_sorted)
    return rank < arm_budget


def group_counts(mask: jax.Array, groups: jax.Array, num_groups: int) -> jax.Array:
    """(G,) number of selected arms per group (jittable)."""
    return jax.ops.segment_sum(mask.astype(jnp.int32), groups, num_segments=num_groups)


# --- public, validated ---------------------------------------------------------------------------

_water_filling = jax.jit(water_filling_core)
_mnw_greedy = jax.jit(mnw_greedy_core)
_rescale = jax.jit(rescale_equal_groups_core)
_exact_maximin = jax.jit(exact_maximin_core, static_argnums=3)
_exact_nash_welfare = jax.jit(exact_nash_welfare_core, static_argnums=3)


@partial(jax.jit, static_argnums=(4, 5))
def _select(indices, groups, budgets, key, num_groups, max_size, tie_tolerance):
    from structbandits.planning.lagrangian import member_table, sorted_slot_values

    table = sorted_slot_values(indices, member_table(groups, num_groups, max_size))
    return select_within_groups_core(indices, groups, budgets, key, table, tie_tolerance)


def _check_sizes(sizes, name: str = "sizes") -> np.ndarray:
    arr = check_finite(name, sizes)
    if arr.ndim != 1 or arr.size == 0 or np.any(arr < 1) or np.any(arr != np.round(arr)):
        raise ValidationError(f"{name}: expected a (G,) array of positive integers (no empty group), got {np.asarray(sizes)!r}")
    return arr.astype(np.int64)


def _check_curves(curves, num_groups: int) -> np.ndarray:
    arr = check_finite("curves", curves)
    if arr.ndim != 2 or arr.shape[0] != num_groups or arr.shape[1] < 1:
        raise ValidationError(f"curves: expected shape ({num_groups}, K) with K >= 1, got shape {arr.shape}")
    return arr


def _check_budget(budget, caps: np.ndarray) -> int:
    return check_integer("budget", budget, minimum=0, maximum=int(caps.sum()))


def water_filling(curves, sizes, budget: int) -> np.ndarray:
    """MMR allocation from group value curves.

    Parameters
    ----------
    curves : (G, K) L_g(b) for b = 0..K-1 (group totals).
    sizes : (G,) group sizes n_g (the normaliser, and the cap together with K-1).
    budget : B, at most Σ_g min(n_g, K-1).

    Returns
    -------
    (G,) int budgets summing to B.
    """
    size = _check_sizes(sizes)
    arr = _check_curves(curves, size.size)
    budget = _check_budget(budget, np.minimum(size, arr.shape[1] - 1))
    return np.asarray(_water_filling(jnp.asarray(arr), jnp.asarray(size), budget))


def mnw_greedy(curves, caps, budget: int) -> np.ndarray:
    """MNW greedy allocation; ``curves`` (G, K) positive, ``caps`` (G,) per-group maxima, budget B.

    Returns (G,) int budgets summing to B (curves are floored at 1e-300 before the log).
    """
    cap = _check_sizes(caps, "caps")
    arr = _check_curves(curves, cap.size)
    budget = _check_budget(budget, np.minimum(cap, arr.shape[1] - 1))
    return np.asarray(_mnw_greedy(jnp.asarray(arr), jnp.asarray(cap), budget))


def exact_maximin(curves, sizes, budget: int) -> np.ndarray:
    """Maximin-optimal integer split on any curves (the exact counterpart of ``water_filling``).

    Parameters
    ----------
    curves : (G, K) L_g(b) for b = 0..K-1 (group totals; any finite values).
    sizes : (G,) group sizes n_g (the normaliser, and the cap together with K-1).
    budget : B, at most Σ_g min(n_g, K-1).

    Returns
    -------
    (G,) int budgets summing to B that maximise min_g L_g(b_g) / n_g; among those, the largest
    total Σ_g L_g(b_g); remaining ties as in the module docstring.
    """
    size = _check_sizes(sizes)
    arr = _check_curves(curves, size.size)
    budget = _check_budget(budget, np.minimum(size, arr.shape[1] - 1))
    # One compilation per shape: the table spans every budget the shape allows.
    return np.asarray(_exact_maximin(jnp.asarray(arr), jnp.asarray(size), budget, size.size * (arr.shape[1] - 1)))


def exact_nash_welfare(curves, caps, budget: int) -> np.ndarray:
    """Integer split maximising Σ_g log L_g(b_g) on any curves (the exact counterpart of ``mnw_greedy``).

    ``curves`` (G, K) (floored at 1e-300 before the log, so a zero value counts as a very small
    one), ``caps`` (G,) per-group maxima, budget B <= Σ_g min(caps_g, K-1). Returns (G,) int
    budgets summing to B; ties as in the module docstring.
    """
    cap = _check_sizes(caps, "caps")
    arr = _check_curves(curves, cap.size)
    budget = _check_budget(budget, np.minimum(cap, arr.shape[1] - 1))
    return np.asarray(_exact_nash_welfare(jnp.asarray(arr), jnp.asarray(cap), budget, cap.size * (arr.shape[1] - 1)))


def rescale_equal_groups(equal_budgets, sizes, budget: int, key: jax.Array) -> np.ndarray:
    """Rescale budgets of equal-size (upsampled to M = max n_g) groups back to the true sizes.

    ``equal_budgets`` (G,) nonnegative, from ``mnw_greedy`` on the upsampled curves; ``sizes`` (G,);
    ``budget`` B <= Σ n_g; ``key`` for the leftover draws. Returns (G,) int budgets summing to B,
    each at most n_g.
    """
    size = _check_sizes(sizes)
    eq = check_finite("equal_budgets", check_shape("equal_budgets", equal_budgets, (size.size,)))
    if np.any(eq < 0):
        raise ValidationError(f"equal_budgets: expected values >= 0, got a minimum of {eq.min()}")
    budget = _check_budget(budget, size)
    return np.asarray(_rescale(jnp.asarray(eq, dtype=jnp.float64), jnp.asarray(size), float(size.max()), budget, key))


def _check_selection_inputs(indices, groups):
    idx = check_finite("indices", indices)
    if idx.ndim != 1:
        raise ValidationError(f"indices: expected shape (N,), got shape {idx.shape}")
    labels = check_shape("groups", groups, idx.shape)
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
        raise ValidationError("groups: expected integer labels >= 0")
    return idx, labels, int(labels.max()) + 1


def select_within_groups(indices, groups, budgets, key: jax.Array, tie_tolerance: float = TIE_TOLERANCE) -> np.ndarray:
    """Act on the top-b_g ``indices`` (N,) of every group ``groups`` (N,); ``budgets`` (G,) with
    b_g <= n_g. Ties within ``tie_tolerance`` are broken uniformly at random. Returns (N,) bool."""
    idx, labels, num_groups = _check_selection_inputs(indices, groups)
    sizes = np.bincount(labels, minlength=num_groups)
    b = check_shape("budgets", budgets, (num_groups,))
    if not np.issubdtype(b.dtype, np.integer) or np.any(b < 0) or np.any(b > sizes):
        raise ValidationError(f"budgets: expected integers in 0..n_g (sizes {sizes.tolist()}), got {b.tolist()}")
    tol = float(check_finite("tie_tolerance", tie_tolerance))
    return np.asarray(_select(jnp.asarray(idx), jnp.asarray(labels), jnp.asarray(b), key, num_groups,
                              int(sizes.max()), tol))


def top_index_allocation(indices, groups, budget: int, key: jax.Array,
                         tie_tolerance: float = TIE_TOLERANCE) -> tuple[np.ndarray, np.ndarray]:
    """Utilitarian (Opt) choice: the B largest ``indices`` overall, random tie-breaks.

    Returns the (N,) bool mask and the (G,) int budgets it implies per group.
    """
    idx, labels, num_groups = _check_selection_inputs(indices, groups)
    budget = check_integer("budget", budget, minimum=0, maximum=idx.size)
    mask = select_within_groups(idx, np.zeros_like(labels), np.array([budget]), key, tie_tolerance)
    return mask, np.bincount(labels[mask], minlength=num_groups)
