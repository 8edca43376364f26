"""The planner policies (Opt, MMR, MNW, MNW-EG) against a plain-NumPy re-derivation.

The oracle below rebuilds every step of a planner's decision with no package code: backward
induction for Q_T, Whittle indices by bisection in NumPy (the reference's clipped [-1, 1] search to
width 0.01, or a bracket holding every crossing for ``EXACT_SETTINGS``), the WhittleToLagrange
group curves F_g(λ_g(b)) of ``planning/lagrangian.py`` written out per group and budget, water
filling and MNW greedy as unit steps, and the top-b_g arms per group. The policies plan with
T = min(H − t, 20) rounds; the instances are chosen so that the decision at T differs from the
decisions at T − 1 and T + 1, both below the cap (H − t = 5) and at it (H − t = 30).

Only decisions the oracle finds well separated are compared: no index within the tie tolerance
(1e-4) at a group's cut, and no near-tie between the groups competing for a unit of budget.
"""

import itertools
from functools import lru_cache, partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from structbandits.agents.restless import EXACT_SETTINGS, PlannerSettings, RestlessContext, restless_policy

GAMMA = 0.9999
TIE = 1e-4
NO_ACTION_CHARGE = 1e6
CAP = 20
GROUPS = np.array([0, 0, 1, 1, 1, 1])  # sizes 2 and 4: MMR and MNW often disagree
EQUAL_GROUPS = np.array([0, 0, 0, 1, 1, 1])
MAX_BUDGET = 3
# (seed, Dirichlet concentration, reward scale): slowly mixing arms whose index ranking still moves
# near T = 20, found by scanning seeds with the oracle below.
POOL = [(6, 0.2, 0.2), (16, 0.2, 0.2), (123, 0.2, 0.2), (140, 0.2, 0.2), (45, 0.2, 0.2),
        (3, 0.3, 0.1), (4, 0.3, 0.1), (28, 0.3, 0.1)]
REMAINING = (5, 30)  # T = 5 below the cap, T = 20 at it
SETTINGS = {"reference": PlannerSettings(), "exact": EXACT_SETTINGS}


# --- the oracle ----------------------------------------------------------------------------------


def instance(seed, concentration, scale):
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.full(3, concentration), size=(6, 3, 2))
    r = np.sort(rng.uniform(size=(6, 3)), axis=1) * scale
    return p, r, rng.integers(0, 3, 6)


def np_q(p, r, charges, horizon):
    """Q_T (N, S, 2) of every arm at its own charge (N,), by backward induction."""
    value = np.zeros(r.shape)
    for _ in range(horizon):
        q = r[:, :, None] - charges[:, None, None] * np.arange(2) + GAMMA * np.einsum("nsat,nt->nsa", p, value)
        value = q.max(axis=-1)
    return q


def np_bisect(p, r, states, horizon, lo, hi, tolerance):
    """Per arm: shrink [lo, hi] around the charge where acting stops being strictly better."""
    arms = np.arange(len(states))
    while np.any(hi - lo > tolerance):
        mid = 0.5 * (lo + hi)
        if np.all((mid == lo) | (mid == hi)):
            break
        q = np_q(p, r, mid, horizon)
        acts = q[arms, states, 1] > q[arms, states, 0]
        lo, hi = np.where(acts, mid, lo), np.where(acts, hi, mid)
    return 0.5 * (lo + hi)


def np_indices(p, r, states, horizon, exact):
    if exact:  # every crossing lies within γ (T − 1)(max r − min r) of 0
        span = GAMMA * (horizon - 1) * np.ptp(r, axis=1) + 1.0
        return np_bisect(p, r, states, horizon, -span, span, 1e-12)
    return np_bisect(p, r, states, horizon, -np.ones(len(states)), np.ones(len(states)), 0.01)


def np_curves(p, r, states, groups, indices, horizon, nonnegative):
    """F_g(λ_g(b)) = Σ_{i∈g} V_i^λ(s_i) + λ b Σ_{t<T} γ^t at the WhittleToLagrange charges, (G, K)."""
    discounted = sum(GAMMA**t for t in range(horizon))
    curves = np.zeros((groups.max() + 1, MAX_BUDGET + 1))
    for g in range(curves.shape[0]):
        arms = np.flatnonzero(groups == g)
        w = np.sort(indices[arms])[::-1]
        for b in range(curves.shape[1]):
            if b == 0:
                charge = NO_ACTION_CHARGE
            else:
                charge = 0.5 * (w[b - 1] + w[b]) if b < len(arms) else w[-1]
                charge = max(charge, 0.0) if nonnegative else charge
            q = np_q(p[arms], r[arms], np.full(len(arms), charge), horizon)
            curves[g, b] = q[np.arange(len(arms)), states[arms]].max(axis=-1).sum() + charge * b * discounted
    return curves


def greedy(score, caps, budget):
    """Unit steps to the open group of best score (lowest group on ties); also the smallest lead of
    the best over the runner-up."""
    alloc, lead = np.zeros(len(caps), dtype=int), np.inf
    for _ in range(budget):
        open_groups = np.flatnonzero(alloc < caps)
        scores = np.array([score(g, alloc[g]) for g in open_groups])
        order = np.argsort(-scores, kind="stable")
        if len(order) > 1:
            lead = min(lead, scores[order[0]] - scores[order[1]])
        alloc[open_groups[order[0]]] += 1
    return alloc, lead


def np_water_filling(curves, sizes, budget):
    return greedy(lambda g, b: -curves[g, b] / sizes[g], np.minimum(sizes, MAX_BUDGET), budget)


def np_mnw_greedy(curves, sizes, budget):
    logs = np.log(np.maximum(curves, 1e-300))
    return greedy(lambda g, b: logs[g, min(b + 1, MAX_BUDGET)] - logs[g, b], np.minimum(sizes, MAX_BUDGET), budget)


def np_top_per_group(indices, groups, budgets):
    """Top-b_g arms per group, and the clearance of the cut: (b_g-th) − TIE − ((b_g+1)-th)."""
    mask, clearance = np.zeros(len(indices), dtype=bool), np.inf
    for g, b in enumerate(budgets):
        arms = np.flatnonzero(groups == g)
        order = arms[np.argsort(-indices[arms], kind="stable")]
        mask[order[:b]] = True
        if 0 < b < len(arms):
            clearance = min(clearance, indices[order[b - 1]] - TIE - indices[order[b]])
    return mask, clearance


@lru_cache(maxsize=None)
def plan(name, exact, case, budget, horizon, groups=tuple(GROUPS)):
    """The oracle's decision: mask, per-group budgets, curves, and whether it is well separated."""
    p, r, states = instance(*case)
    groups = np.array(groups)
    indices = np_indices(p, r, states, horizon, exact)
    sizes = np.bincount(groups)
    if name == "Opt":
        mask, clearance = np_top_per_group(indices, np.zeros_like(groups), [budget])
        return dict(mask=mask, budgets=np.bincount(groups[mask], minlength=len(sizes)), curves=None,
                    separated=clearance > 1e-6, allocation_separated=clearance > 1e-6)
    curves = np_curves(p, r, states, groups, indices, horizon, nonnegative=exact)
    budgets, lead = (np_water_filling if name == "MMR" else np_mnw_greedy)(curves, sizes, budget)
    mask, clearance = np_top_per_group(indices, groups, budgets)
    # Exact indices carry the package's 1e-7 search tolerance into the curves: ask for more room.
    allocation_separated = lead > (1e-5 if exact else 1e-9)
    return dict(mask=mask, budgets=budgets, curves=curves, separated=allocation_separated and clearance > 1e-6,
                allocation_separated=allocation_separated)


# --- the policies --------------------------------------------------------------------------------

_ACTS = {}


def policy_mask(name, settings, case, budget, remaining, groups=GROUPS, key=0):
    sizes = tuple(int(n) for n in np.bincount(groups))
    if (name, settings, sizes) not in _ACTS:
        policy = restless_policy(name, len(groups), sizes, MAX_BUDGET, SETTINGS[settings])
        _ACTS[name, settings, sizes] = partial(jax.jit(policy.act), policy.init(jax.random.PRNGKey(0)))
    p, r, states = instance(*case)
    horizon_total = 40
    ctx = RestlessContext(jnp.asarray(states), jnp.asarray(horizon_total - remaining), jnp.asarray(remaining),
                          jnp.asarray(budget), jnp.asarray(p), jnp.asarray(r), jnp.asarray(groups))
    mask, _ = _ACTS[name, settings, sizes](jax.random.PRNGKey(key), ctx)
    return np.asarray(mask)


def cases():
    return [(case, budget, remaining) for case in POOL for budget in (1, 2, 3) for remaining in REMAINING]


# --- tests ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("settings", ["reference", "exact"])
@pytest.mark.parametrize("name", ["Opt", "MMR", "MNW"])
def test_planner_decisions_match_the_numpy_oracle_at_horizon_min_remaining_20(name, settings):
    """Planted bugs caught (tried): planning over ctx.remaining − 1 rounds; MMR and MNW allocators
    swapped. Also caught by construction: a cap of 19 or 21, or no cap (T + 1 at H − t = 30)."""
    exact = settings == "exact"
    other = {"MMR": "MNW", "MNW": "MMR"}.get(name)
    compared = 0
    pinned = set()  # (remaining, ±1) where the decision at T ± 1 differs from the one at T
    other_differs = False
    for case, budget, remaining in cases():
        horizon = min(remaining, CAP)
        expected = plan(name, exact, case, budget, horizon)
        if not expected["allocation_separated"]:
            continue
        mask = policy_mask(name, settings, case, budget, remaining)
        assert mask.sum() == budget
        counts = np.bincount(GROUPS[mask], minlength=2)
        np.testing.assert_array_equal(counts, expected["budgets"], err_msg=f"{case} B={budget} H-t={remaining}")
        if other is not None:
            rival = plan(other, exact, case, budget, horizon)
            other_differs |= rival["allocation_separated"] and not np.array_equal(rival["budgets"], counts)
        if not expected["separated"]:
            continue
        np.testing.assert_array_equal(mask, expected["mask"], err_msg=f"{case} B={budget} H-t={remaining}")
        compared += 1
        for step in (-1, 1):
            shifted = plan(name, exact, case, budget, horizon + step)
            if shifted["separated"] and not np.array_equal(shifted["mask"], mask):
                pinned.add((remaining, step))
    assert compared >= 10
    assert pinned == {(5, -1), (5, 1), (30, -1), (30, 1)}  # every off-by-one in T changes some decision
    assert other is None or other_differs  # a swapped allocator changes some per-group budgets


@pytest.mark.parametrize("name", ["MMR", "MNW"])
def test_allocations_are_optimal_where_the_allocator_claims_it(name):
    """Water filling is maximin-optimal on nondecreasing curves, MNW greedy Nash-optimal on
    positive, nondecreasing, concave ones: the policy's per-group counts against all integer splits.
    (EXACT_SETTINGS: charges clipped at 0 keep the curves valid bounds, mostly nondecreasing.)"""
    sizes = np.bincount(GROUPS)
    caps = np.minimum(sizes, MAX_BUDGET)
    checked = 0
    for case, budget, remaining in cases():
        expected = plan(name, True, case, budget, min(remaining, CAP))
        curves = expected["curves"]
        nondecreasing = all(np.all(np.diff(curves[g, :caps[g] + 1]) >= 0) for g in range(2))
        concave = all(np.all(np.diff(curves[g, :caps[g] + 1], 2) <= 0) for g in range(2))
        if not expected["allocation_separated"] or not nondecreasing or (
                name == "MNW" and not (concave and np.all(curves > 0))):
            continue
        counts = np.bincount(GROUPS[policy_mask(name, "exact", case, budget, remaining)], minlength=2)
        splits = [np.array(b) for b in itertools.product(*(range(c + 1) for c in caps)) if sum(b) == budget]
        if name == "MMR":
            welfare = lambda b: min(curves[g, b[g]] / sizes[g] for g in range(2))  # noqa: E731
        else:
            welfare = lambda b: sum(np.log(curves[g, b[g]]) for g in range(2))  # noqa: E731
        assert welfare(counts) >= max(welfare(b) for b in splits) - 1e-12, (case, budget, remaining)
        checked += 1
    assert checked >= 5


def test_mnw_eg_with_equal_groups_is_mnw_without_randomness():
    """Equal group sizes need no dummy copies, so MNW-EG is MNW greedy for every key."""
    equal = tuple(EQUAL_GROUPS)
    compared = 0
    for case, budget, remaining in cases()[::3]:
        expected = plan("MNW", False, case, budget, min(remaining, CAP), groups=equal)
        if not expected["separated"]:
            continue
        for key in (0, 1):
            mask = policy_mask("MNW-EG", "reference", case, budget, remaining, groups=EQUAL_GROUPS, key=key)
            np.testing.assert_array_equal(mask, expected["mask"], err_msg=f"{case} B={budget} H-t={remaining}")
        compared += 1
    assert compared >= 3
