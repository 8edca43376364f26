"""The Lagrangian relaxation bound of a group of arms for a per-round budget b.

Relaxing "act on at most b arms in every round" to a single action charge λ >= 0 gives, for arms
i in state s_i with T rounds left,

    F(λ) = Σ_i V_i^λ(s_i) + λ · b · Σ_{t<T} γ^t,         L(b) = min_{λ >= 0} F(λ) >= V*(b),

an upper bound on the group's optimal value V*(b) that is nondecreasing and concave in b. Two ways
to get it here:

* ``lagrangian_bound_lp``: the exact minimum, as the linear program over per-arm occupancy
  measures (scipy's HiGHS). Its dual variable of the budget row is the minimising λ. With
  ``per_round=True`` the LP keeps one budget row per round (one charge per round), a tighter bound.
* WhittleToLagrange (the reference's shortcut, ``group_value_curves``): λ_g(b) is the midpoint of
  the b-th and (b+1)-th largest Whittle indices in the group (the b-th when b = n_g, 1e6 when
  b = 0), and L_g(b) ≈ F(λ_g(b)). Since F(λ) >= min F for any λ >= 0, the shortcut never
  undershoots the LP bound; it is the cheap curve the equitable allocators use.

``group_value_curves`` computes L_g(b) for every group and b = 0..K-1 in one batched solve: N arms
times K charges, ``vmap``-ped value iteration.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

from structbandits.errors import ValidationError, check_finite, check_integer, check_shape
from structbandits.planning.value_iteration import (
    REFERENCE_GAMMA,
    arm_q,
    check_arms,
    check_gamma,
    check_states,
    discounted_horizon,
)

__all__ = [
    "LagrangianLP",
    "NO_ACTION_CHARGE",
    "group_value_curves",
    "lagrangian_bound_lp",
    "lagrangian_dual_value",
]

NO_ACTION_CHARGE = 1e6
"""The charge the reference uses for b = 0 (large enough that no arm acts)."""


# --- jittable cores (used by the policies) -------------------------------------------------------


def member_table(groups: jax.Array, num_groups: int, max_size: int) -> jax.Array:
    """(G, M) arm ids of each group in increasing order, padded with -1 (jittable)."""
    num_arms = groups.shape[0]
    order = jnp.argsort(groups, stable=True)
    sorted_groups = groups[order]
    starts = jnp.searchsorted(sorted_groups, jnp.arange(num_groups))
    rank = jnp.arange(num_arms) - starts[sorted_groups]
    return jnp.full((num_groups, max_size), -1, dtype=order.dtype).at[sorted_groups, rank].set(order, mode="drop")


def sorted_slot_values(values: jax.Array, slots: jax.Array) -> jax.Array:
    """Values of the arms in each row of ``slots`` (G, M; -1 = empty) sorted in decreasing order,
    empty slots last as -inf."""
    table = jnp.where(slots >= 0, values[jnp.maximum(slots, 0)], -jnp.inf)
    return -jnp.sort(-table, axis=1)


def whittle_to_lagrange_charges(sorted_indices: jax.Array, counts: jax.Array, num_budgets: int,
                                nonnegative: bool = False) -> jax.Array:
    """λ_g(b) for b = 0..num_budgets-1 from each group's indices in decreasing order (G, M).

    λ(0) = 1e6; λ(b) = (W_(b) + W_(b+1)) / 2 for 0 < b < n_g; λ(b) = W_(n_g) for b >= n_g.
    ``counts`` (G,) are the n_g. With ``nonnegative`` the charges are clipped at 0, so that every
    F(λ_g(b)) is a valid upper bound (the reference does not clip: a negative index, e.g. the
    clipped search's −0.0039 for "acting does not help", gives a slightly negative charge).
    Returns (G, num_budgets).
    """
    max_size = sorted_indices.shape[1]
    b = jnp.arange(num_budgets)
    upper = sorted_indices[:, jnp.clip(b - 1, 0, max_size - 1)]
    lower = sorted_indices[:, jnp.clip(b, 0, max_size - 1)]
    last = jnp.take_along_axis(sorted_indices, jnp.maximum(counts - 1, 0)[:, None], axis=1)
    charges = jnp.where(b[None, :] < counts[:, None], 0.5 * (upper + lower), last)
    if nonnegative:
        charges = jnp.maximum(charges, 0.0)
    return jnp.where(b[None, :] == 0, NO_ACTION_CHARGE, charges)


def lagrangian_curves(transitions, rewards, states, groups, weights, charges, horizon, gamma) -> jax.Array:
    """F_g(λ_g(b)) = Σ_{i∈g} w_i V_i^{λ_g(b)}(s_i) + λ_g(b) · b · Σγ^t for charges (G, K) (jittable).

    ``weights`` (N,) count each arm (1, or its multiplicity in an upsampled group). Returns (G, K).
    """
    arm_charges = charges[groups]

    def one_arm(p, r, s, cs):
        return jax.vmap(lambda c: arm_q(p, r, c, horizon, gamma)[s].max())(cs)

    values = jax.vmap(one_arm)(transitions, rewards, states, arm_charges)
    totals = jax.ops.segment_sum(weights[:, None] * values, groups, num_segments=charges.shape[0])
    budgets = jnp.arange(charges.shape[1], dtype=charges.dtype)
    return totals + charges * budgets[None, :] * discounted_horizon(horizon, gamma)


# --- public, validated ---------------------------------------------------------------------------


def _check_groups(groups, num_arms: int) -> tuple[np.ndarray, int]:
    labels = check_shape("groups", groups, (num_arms,))
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
        raise ValidationError(f"groups: expected integer labels >= 0, got {labels.dtype} values")
    num_groups = int(labels.max()) + 1
    if np.any(np.bincount(labels, minlength=num_groups) == 0):
        raise ValidationError("groups: expected labels 0..G-1 with every group non-empty")
    return labels, num_groups


def group_value_curves(transitions, rewards, states, groups, indices, horizon: int,
                       gamma: float = REFERENCE_GAMMA, max_budget: int | None = None,
                       nonnegative_charges: bool = False) -> jax.Array:
    """WhittleToLagrange group value curves L_g(b), b = 0..K-1, in one batched solve.

    Parameters
    ----------
    transitions, rewards : (N, S, A, S), (N, S).
    states : (N,) current states.
    groups : (N,) labels 0..G-1.
    indices : (N,) Whittle indices of the arms in their states (``whittle_indices``).
    horizon : T rounds left; gamma : discount.
    max_budget : largest b (default the largest group size); K = max_budget + 1.
    nonnegative_charges : clip λ_g(b) at 0 (see ``whittle_to_lagrange_charges``); False is the
        reference's shortcut.

    Returns
    -------
    (G, K) curves; entries with b > n_g repeat the charge λ_g(n_g) (no allocator goes there).
    """
    probs, rew = check_arms(transitions, rewards)
    num_arms = probs.shape[0]
    st = check_states("states", states, *probs.shape[:2])
    labels, num_groups = _check_groups(groups, num_arms)
    idx = check_finite("indices", check_shape("indices", indices, (num_arms,)))
    horizon = check_integer("horizon", horizon, minimum=1)
    sizes = np.bincount(labels, minlength=num_groups)
    max_size = int(sizes.max())
    max_budget = max_size if max_budget is None else check_integer("max_budget", max_budget, minimum=0)
    return _curves(jnp.asarray(probs), jnp.asarray(rew), jnp.asarray(st), jnp.asarray(labels), jnp.asarray(idx),
                   horizon, check_gamma(gamma), num_groups, max_size, max_budget + 1, bool(nonnegative_charges))


@jax.jit
def _dual_values(transitions, rewards, states, charge, horizon, gamma):
    return jax.vmap(lambda p, r, s: arm_q(p, r, charge, horizon, gamma)[s].max())(transitions, rewards, states)


def _curves_impl(transitions, rewards, states, groups, indices, horizon, gamma, num_groups, max_size, num_budgets,
                 nonnegative):
    slots = member_table(groups, num_groups, max_size)
    counts = jnp.bincount(groups, length=num_groups)
    charges = whittle_to_lagrange_charges(sorted_slot_values(indices, slots), counts, num_budgets, nonnegative)
    weights = jnp.ones(groups.shape[0], dtype=rewards.dtype)
    return lagrangian_curves(transitions, rewards, states, groups, weights, charges, horizon, gamma)


_curves = jax.jit(_curves_impl, static_argnums=(7, 8, 9, 10))


def lagrangian_dual_value(transitions, rewards, states, charge: float, budget: float, horizon: int,
                          gamma: float = REFERENCE_GAMMA) -> float:
    """F(λ) = Σ_i V_i^λ(s_i) + λ · b · Σ_{t<T} γ^t for one charge λ (an upper bound on V*(b) when λ >= 0)."""
    probs, rew = check_arms(transitions, rewards)
    st = check_states("states", states, *probs.shape[:2])
    charge = float(check_finite("charge", charge))
    budget = float(check_finite("budget", budget))
    horizon = check_integer("horizon", horizon, minimum=1)
    gamma = check_gamma(gamma)
    values = _dual_values(jnp.asarray(probs), jnp.asarray(rew), jnp.asarray(st), charge, horizon, gamma)
    return float(values.sum()) + charge * budget * float(discounted_horizon(horizon, gamma))


class LagrangianLP(NamedTuple):
    """Solution of the relaxed LP.

    Attributes
    ----------
    value : the bound L(b).
    charges : the budget rows' dual values: (1,) the minimising λ of F, or (T,) one charge per
        round with ``per_round=True`` (round t's charge in undiscounted units is charges[t] / γ^t).
    active : (N, T, S) expected fraction of arm i acting in state s at round t under the LP policy.
    """

    value: float
    charges: np.ndarray
    active: np.ndarray


def lagrangian_bound_lp(transitions, rewards, states, budget: float, horizon: int,
                        gamma: float = REFERENCE_GAMMA, *, per_round: bool = False) -> LagrangianLP:
    """The Lagrangian bound as a linear program over occupancy measures (scipy HiGHS).

    Variables x[i, t, s, a] >= 0: the probability that arm i is in s at round t and takes a.
    Flow: Σ_a x[i,0,s,a] = 1{s = s_i};  Σ_a x[i,t,s',a] = Σ_{s,a} P_i[s,a,s'] x[i,t-1,s,a].
    Budget: Σ_t γ^t Σ_{i,s,a} a·x[i,t,s,a] <= b Σ_t γ^t  (or Σ_{i,s,a} a·x[i,t,s,a] <= b for every t).
    Objective: max Σ_{i,t,s,a} γ^t r_i(s) x[i,t,s,a]. By LP duality the aggregate form equals
    min_{λ>=0} F(λ) (see the module docstring).

    Shapes as in ``group_value_curves``; meant for groups of up to a few hundred arms.
    """
    from scipy.optimize import linprog  # here, not at module level: scipy.optimize takes ~0.5 s to import

    probs, rew = check_arms(transitions, rewards)
    num_arms, num_states, num_actions, _ = probs.shape
    st = check_states("states", states, num_arms, num_states)
    budget = float(check_finite("budget", budget))
    if budget < 0:
        raise ValidationError(f"budget: expected a budget >= 0, got {budget}")
    horizon = check_integer("horizon", horizon, minimum=1)
    gamma = check_gamma(gamma)
    shape = (num_arms, horizon, num_states, num_actions)
    num_vars = int(np.prod(shape))
    var = np.arange(num_vars).reshape(shape)
    row = np.arange(num_arms * horizon * num_states).reshape(num_arms, horizon, num_states)
    # Σ_a x[i,t,s,a] on row (i,t,s) ...
    rows = [np.broadcast_to(row[..., None], shape).ravel()]
    cols = [var.ravel()]
    vals = [np.ones(num_vars)]
    # ... minus the inflow from round t-1 into (i,t,s').
    if horizon > 1:
        inflow_rows = np.broadcast_to(row[:, 1:, None, None, :], (num_arms, horizon - 1, num_states, num_actions, num_states))
        inflow_cols = np.broadcast_to(var[:, :-1, :, :, None], inflow_rows.shape)
        inflow_vals = np.broadcast_to(-probs[:, None], inflow_rows.shape)
        rows.append(inflow_rows.ravel())
        cols.append(inflow_cols.ravel())
        vals.append(inflow_vals.ravel())
    a_eq = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                         shape=(row.size, num_vars))
    b_eq = np.zeros(row.shape)
    b_eq[np.arange(num_arms), 0, st] = 1.0
    discount = gamma ** np.arange(horizon)
    cost = np.broadcast_to(np.arange(num_actions, dtype=float), shape)
    if per_round:
        round_of = np.broadcast_to(np.arange(horizon)[None, :, None, None], shape)
        a_ub = sp.csr_matrix((cost.ravel(), (round_of.ravel(), var.ravel())), shape=(horizon, num_vars))
        b_ub = np.full(horizon, budget)
    else:
        weighted = (cost * discount[None, :, None, None]).ravel()
        a_ub = sp.csr_matrix((weighted, (np.zeros(num_vars, dtype=int), var.ravel())), shape=(1, num_vars))
        b_ub = np.array([budget * discount.sum()])
    objective = -(rew[:, None, :, None] * discount[None, :, None, None] * np.ones(shape)).ravel()
    result = linprog(objective, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=b_eq.ravel(), bounds=(0, None),
                     method="highs")
    if result.status != 0:
        raise RuntimeError(f"lagrangian_bound_lp: HiGHS failed: {result.message}")
    x = result.x.reshape(shape)
    return LagrangianLP(float(-result.fun), -np.asarray(result.ineqlin.marginals), x[..., 1:].sum(-1))
