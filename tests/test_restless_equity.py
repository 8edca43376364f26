"""Equitable allocators against brute force: given curves, and exact group values on tiny instances."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from structbandits.errors import ValidationError
from structbandits.planning.equity import (
    mnw_greedy,
    rescale_equal_groups,
    select_within_groups,
    select_within_groups_core,
    top_index_allocation,
    water_filling,
)
from structbandits.planning.lagrangian import group_value_curves, lagrangian_bound_lp
from structbandits.planning.metrics import gini_index, pareto_front, smallest_sufficient_budget
from structbandits.planning.whittle import whittle_indices


def splits(caps, budget):
    """Every integer split of ``budget`` with 0 <= b_g <= caps_g."""
    return [b for b in itertools.product(*[range(c + 1) for c in caps]) if sum(b) == budget]


@st.composite
def curve_problem(draw, concave=False):
    num_groups = draw(st.integers(2, 4))
    length = draw(st.integers(2, 6))
    seed = draw(st.integers(0, 10_000))
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 7, num_groups)
    steps = rng.exponential(size=(num_groups, length - 1)) * (rng.uniform(size=(num_groups, length - 1)) > 0.2)
    if concave:
        steps = -np.sort(-steps, axis=1)
    curves = np.concatenate([rng.uniform(0.1, 2.0, (num_groups, 1)), steps], axis=1).cumsum(axis=1)
    caps = np.minimum(sizes, length - 1)
    budget = draw(st.integers(0, int(caps.sum())))
    return curves, sizes, caps, budget


@settings(max_examples=20, deadline=None)
@given(problem=curve_problem())
def test_water_filling_is_maximin_optimal(problem):
    curves, sizes, caps, budget = problem
    alloc = water_filling(curves, sizes, budget)
    assert alloc.sum() == budget and np.all(alloc <= caps) and np.all(alloc >= 0)
    objective = lambda b: min(curves[g, b[g]] / sizes[g] for g in range(len(sizes)))
    best = max(objective(b) for b in splits(caps, budget))
    assert objective(alloc) == pytest.approx(best, rel=1e-12)


@settings(max_examples=20, deadline=None)
@given(problem=curve_problem(concave=True))
def test_mnw_greedy_maximises_the_product_of_concave_curves(problem):
    curves, _, caps, budget = problem
    alloc = mnw_greedy(curves, caps, budget)
    assert alloc.sum() == budget and np.all(alloc <= caps)
    objective = lambda b: sum(np.log(curves[g, b[g]]) for g in range(len(caps)))
    best = max(objective(b) for b in splits(caps, budget))
    assert objective(alloc) == pytest.approx(best, rel=1e-9, abs=1e-12)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), num_groups=st.integers(1, 4))
def test_every_allocator_spends_the_budget_within_group_sizes(seed, num_groups):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 8, num_groups)
    budget = int(rng.integers(0, sizes.sum() + 1))
    curves = rng.normal(size=(num_groups, 8)) * 3  # arbitrary, not even monotone
    for alloc in (water_filling(curves, sizes, budget), mnw_greedy(np.abs(curves), sizes, budget),
                  rescale_equal_groups(rng.uniform(0, sizes.max(), num_groups), sizes, budget,
                                       jax.random.PRNGKey(seed))):
        assert alloc.dtype.kind == "i" and alloc.sum() == budget
        assert np.all(alloc >= 0) and np.all(alloc <= sizes)
    groups = rng.permutation(np.repeat(np.arange(num_groups), sizes))
    indices = np.round(rng.normal(size=groups.size), 1)  # rounding makes ties
    mask, per_group = top_index_allocation(indices, groups, budget, jax.random.PRNGKey(seed))
    assert mask.sum() == budget and per_group.sum() == budget
    assert indices[mask].min(initial=np.inf) >= indices[~mask].max(initial=-np.inf) - 1e-4


def test_equal_groups_rescaling_follows_the_sizes():
    # Equal budgets for groups of sizes 40 and 120 (upsampled to 120) scale by 1/3 and 1, then to B.
    alloc = rescale_equal_groups(np.array([10.0, 10.0]), np.array([40, 120]), 20, jax.random.PRNGKey(0))
    assert alloc.tolist() == [5, 15]
    # Overflow of a small group is spread over the others.
    alloc = rescale_equal_groups(np.array([10.0, 1.0, 1.0]), np.array([2, 10, 10]), 8, jax.random.PRNGKey(0))
    assert alloc[0] == 2 and alloc.sum() == 8 and abs(alloc[1] - alloc[2]) <= 1
    # Leftover units go with probability ∝ the fractional parts: 1.5/1.5 split -> each 50%.
    keys = jax.random.split(jax.random.PRNGKey(1), 400)
    firsts = [rescale_equal_groups(np.array([1.5, 1.5]), np.array([5, 5]), 3, k)[0] for k in keys[:200]]
    assert set(firsts) == {1, 2} and 0.35 < np.mean(np.array(firsts) == 2) < 0.65


def test_within_group_selection_takes_the_top_and_breaks_ties_uniformly():
    indices = np.array([0.9, 0.5, 0.5, 0.5, 0.1, 0.7, 0.7, 0.2])
    groups = np.array([0, 0, 0, 0, 0, 1, 1, 1])
    mask = select_within_groups(indices, groups, np.array([2, 1]), jax.random.PRNGKey(0))
    assert mask[0] and mask[[1, 2, 3]].sum() == 1 and not mask[4]
    assert mask[[5, 6]].sum() == 1 and not mask[7]
    table = jnp.array([[0.9, 0.5, 0.5, 0.5, 0.1], [0.7, 0.7, 0.2, -jnp.inf, -jnp.inf]])
    pick = jax.jit(jax.vmap(lambda k: select_within_groups_core(jnp.asarray(indices), jnp.asarray(groups),
                                                                jnp.array([2, 1]), k, table)))
    chosen = np.asarray(pick(jax.random.split(jax.random.PRNGKey(2), 3000)))
    np.testing.assert_allclose(chosen[:, [1, 2, 3]].mean(0), 1 / 3, atol=0.04)
    np.testing.assert_allclose(chosen[:, [5, 6]].mean(0), 0.5, atol=0.04)
    with pytest.raises(ValidationError, match="budgets: expected integers in 0..n_g"):
        select_within_groups(indices, groups, np.array([6, 0]), jax.random.PRNGKey(0))


# --- exact group values on tiny instances --------------------------------------------------------


def exact_group_value(p, r, start, budget, horizon, gamma):
    """Optimal value of a group acting on at most ``budget`` arms per round: DP over the joint state."""
    n, num_states = r.shape
    joint = list(itertools.product(range(num_states), repeat=n))
    reward = np.array([sum(r[i, x[i]] for i in range(n)) for x in joint])
    moves = []
    for action in itertools.product((0, 1), repeat=n):
        if sum(action) <= budget:
            m = np.ones((1, 1))
            for i in range(n):
                m = np.kron(m, p[i, :, action[i], :])
            moves.append(m)
    value = np.zeros(len(joint))
    for _ in range(horizon):
        value = reward + gamma * np.max([m @ value for m in moves], axis=0)
    return value[joint.index(tuple(start))]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_allocators_on_lagrangian_curves_are_within_the_gap_of_the_exact_optimum(seed):
    rng = np.random.default_rng(seed)
    sizes = np.asarray([[2, 3], [2, 2, 2], [1, 3, 2]][seed])
    groups = np.repeat(np.arange(sizes.size), sizes)
    n = groups.size
    up = np.sort(rng.uniform(0.05, 0.95, (n, 2, 2)), axis=2)  # acting raises P(good state)
    p = np.stack([1 - up, up], axis=-1)
    r = np.column_stack([rng.uniform(0.1, 0.3, n), np.ones(n)])
    start = rng.integers(0, 2, n)
    horizon, gamma = 4, 0.95
    members = [np.flatnonzero(groups == g) for g in range(sizes.size)]
    exact = [[exact_group_value(p[m], r[m], start[m], b, horizon, gamma) for b in range(sizes[g] + 1)]
             for g, m in enumerate(members)]
    lp = [[lagrangian_bound_lp(p[m], r[m], start[m], b, horizon, gamma).value for b in range(sizes[g] + 1)]
          for g, m in enumerate(members)]
    width = sizes.max() + 1
    pad = lambda rows: np.array([row + [row[-1]] * (width - len(row)) for row in rows])
    exact_c, lp_c = pad(exact), pad(lp)
    indices = whittle_indices(p, r, start, horizon, gamma)
    shortcut = np.asarray(group_value_curves(p, r, start, groups, indices, horizon, gamma, nonnegative_charges=True))
    assert np.all(exact_c <= lp_c + 1e-9) and np.all(lp_c <= shortcut + 1e-9)  # V* <= LP <= WhittleToLagrange
    gap = lp_c - exact_c
    for budget in range(1, n):
        candidates = splits(sizes, budget)
        maximin = lambda c, b: min(c[g, b[g]] / sizes[g] for g in range(sizes.size))
        nash = lambda c, b: sum(np.log(c[g, b[g]]) for g in range(sizes.size))
        mmr = water_filling(lp_c, sizes, budget)
        assert maximin(lp_c, mmr) == pytest.approx(max(maximin(lp_c, b) for b in candidates), rel=1e-9)
        best_exact = max(maximin(exact_c, b) for b in candidates)
        assert maximin(exact_c, mmr) >= best_exact - (gap / sizes[:, None]).max() - 1e-9
        mnw = mnw_greedy(lp_c, sizes, budget)
        assert nash(lp_c, mnw) == pytest.approx(max(nash(lp_c, b) for b in candidates), rel=1e-9)
        best_exact = max(nash(exact_c, b) for b in candidates)
        loss = sum(np.log(lp_c[g, mnw[g]]) - np.log(exact_c[g, mnw[g]]) for g in range(sizes.size))
        assert nash(exact_c, mnw) >= best_exact - loss - 1e-9


# --- metrics -------------------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(values=st.lists(st.floats(0, 1e3, allow_nan=False), min_size=1, max_size=8), scale=st.floats(0.01, 100))
def test_gini_is_in_the_unit_interval_and_scale_invariant(values, scale):
    g = gini_index(values)
    assert 0.0 <= g <= 1.0
    assert g <= (len(values) - 1) / len(values) + 1e-12
    assert gini_index(np.asarray(values) * scale) == pytest.approx(g, abs=1e-9)
    assert gini_index(np.full(len(values), 3.0)) == 0.0


def test_gini_known_values_and_validation():
    assert gini_index([0.0, 0.0, 1.0]) == pytest.approx(2 / 3)
    assert gini_index([1.0, 3.0]) == pytest.approx(2 * 2 / (2 * 4 * 2))
    np.testing.assert_allclose(gini_index([[1.0, 1.0], [0.0, 0.0]]), [0.0, 0.0])
    with pytest.raises(ValidationError, match="values: expected nonnegative outcomes"):
        gini_index([1.0, -1.0])


def test_pareto_front_and_capacity_planning():
    pts = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [0.4, 0.4]])
    assert pareto_front(pts).tolist() == [True, True, True, False]
    assert smallest_sufficient_budget([30, 0, 10, 20], [0.7, 0.2, 0.4, 0.6], 0.55) == 20
    assert smallest_sufficient_budget([0, 10], [0.2, 0.4], 0.9) is None
