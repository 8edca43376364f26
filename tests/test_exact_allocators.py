"""Exact maximin / Nash-welfare allocators against brute-force enumeration of every integer split.

The curves are arbitrary (non-concave, non-monotone, negative for maximin, zeros for Nash), where
the greedy allocators of the paper (water filling, MNW greedy) are not optimal; the exact ones
must be. The policy-level check acts once with MMR-exact / MNW-exact on a tiny instance whose
WhittleToLagrange curves fool both greedy allocators.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from structbandits.agents.restless import RestlessContext, restless_policy
from structbandits.errors import ValidationError
from structbandits.planning.equity import exact_maximin, exact_nash_welfare, mnw_greedy, water_filling
from structbandits.planning.lagrangian import group_value_curves
from structbandits.planning.value_iteration import REFERENCE_GAMMA
from structbandits.planning.whittle import REFERENCE_SEARCH, whittle_indices


def splits(caps, budget):
    """Every integer split of ``budget`` with 0 <= b_g <= caps_g."""
    return [b for b in itertools.product(*[range(int(c) + 1) for c in caps]) if sum(b) == budget]


def maximin(curves, sizes, split):
    return min(curves[g, b] / sizes[g] for g, b in enumerate(split))


def total(curves, split):
    return sum(curves[g, b] for g, b in enumerate(split))


def nash(curves, split):
    return sum(np.log(max(curves[g, b], 1e-300)) for g, b in enumerate(split))


def maximin_optimal(curves, sizes, caps, budget):
    """(the optimal minimum group average, every split of ``budget`` attaining it), by enumeration."""
    candidates = splits(caps, budget)
    level = max(maximin(curves, sizes, b) for b in candidates)
    return level, [b for b in candidates if maximin(curves, sizes, b) == level]


def last_group_smallest(candidates):
    """The documented rule for remaining ties: smallest b of the last group, then the one before..."""
    return min(candidates, key=lambda b: b[::-1])


@st.composite
def problem(draw, kind):
    """(curves (G, K), sizes (G,), caps (G,), budget) with curves of ``kind``."""
    num_groups = draw(st.integers(2, 3))  # one group and K = 1: test_edge_budgets_and_shapes
    length = draw(st.integers(2, 5))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    sizes = rng.integers(1, 5, num_groups)
    shape = (num_groups, length)
    if kind == "integer":  # negative, non-monotone, many exact ties
        curves = rng.integers(-3, 4, shape).astype(float)
    elif kind == "real":  # negative, non-monotone, no ties
        curves = rng.normal(size=shape) * rng.uniform(0.1, 10.0)
    else:  # nonnegative with zeros, non-concave and non-monotone
        curves = rng.exponential(size=shape) * (rng.uniform(size=shape) > 0.3)
    caps = np.minimum(sizes, length - 1)
    budget = int(rng.integers(0, caps.sum() + 1))  # not hypothesis's: it favours the (trivial) ends
    return curves, sizes, caps, budget


def check_split(split, caps, budget):
    assert split.shape == caps.shape and np.issubdtype(split.dtype, np.integer)
    assert split.sum() == budget and np.all(split >= 0) and np.all(split <= caps)


@settings(max_examples=60, deadline=None)
@given(case=problem("integer"))
def test_maximin_is_the_brute_force_optimum_with_the_documented_tie_breaks(case):
    curves, sizes, caps, budget = case
    split = exact_maximin(curves, sizes, budget)
    check_split(split, caps, budget)
    _, fair = maximin_optimal(curves, sizes, caps, budget)
    most = max(total(curves, b) for b in fair)  # integer totals: exact
    assert tuple(split) == last_group_smallest([b for b in fair if total(curves, b) == most])


@settings(max_examples=60, deadline=None)
@given(case=problem("real"))
def test_maximin_on_real_curves_attains_the_optimum_and_then_the_largest_total(case):
    curves, sizes, caps, budget = case
    split = exact_maximin(curves, sizes, budget)
    check_split(split, caps, budget)
    level, fair = maximin_optimal(curves, sizes, caps, budget)
    assert maximin(curves, sizes, split) == level
    most = max(total(curves, b) for b in fair)
    assert total(curves, split) == pytest.approx(most, rel=1e-12, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(case=problem("nash"))
def test_nash_welfare_is_the_brute_force_optimum_with_zeros(case):
    curves, sizes, caps, budget = case
    split = exact_nash_welfare(curves, sizes, budget)  # the caps min(n_g, K-1) are applied inside
    check_split(split, caps, budget)
    best = max(nash(curves, b) for b in splits(caps, budget))
    assert nash(curves, split) == pytest.approx(best, rel=1e-12, abs=1e-9)


def test_remaining_ties_give_the_last_group_the_least():
    flat = np.ones((3, 3))  # every split ties, for both objectives
    caps = np.array([2, 2, 2])
    assert exact_maximin(flat, caps, 3).tolist() == [2, 1, 0]
    assert exact_nash_welfare(flat, caps, 3).tolist() == [2, 1, 0]
    assert exact_nash_welfare(flat, caps, 5).tolist() == [2, 2, 1]


def test_edge_budgets_and_shapes():
    rng = np.random.default_rng(0)
    curves = rng.normal(size=(3, 4))
    sizes = np.array([2, 5, 1])  # caps min(n_g, K-1) = 2, 3, 1
    for allocate in (exact_maximin, exact_nash_welfare):
        assert allocate(curves, sizes, 0).tolist() == [0, 0, 0]
        assert allocate(curves, sizes, 6).tolist() == [2, 3, 1]
        assert allocate(curves[:, :1], sizes, 0).tolist() == [0, 0, 0]  # K = 1: nothing to give
        assert allocate(curves[:1], sizes[:1], 1).tolist() == [1]  # one group takes it all


def test_validation():
    curves, sizes = np.ones((2, 3)), np.array([2, 2])
    for allocate, name in ((exact_maximin, "sizes"), (exact_nash_welfare, "caps")):
        with pytest.raises(ValidationError, match="budget"):
            allocate(curves, sizes, 5)  # capacity 4
        with pytest.raises(ValidationError, match="budget"):
            allocate(curves, sizes, -1)
        with pytest.raises(ValidationError, match="budget"):
            allocate(curves, sizes, 1.5)
        with pytest.raises(ValidationError, match="curves"):
            allocate(np.ones((3, 3)), sizes, 1)
        with pytest.raises(ValidationError, match="curves"):
            allocate(np.array([[1.0, np.nan, 1.0], [1.0, 1.0, 1.0]]), sizes, 1)
        with pytest.raises(ValidationError, match=name):
            allocate(curves, np.array([2, 0]), 1)
        with pytest.raises(ValidationError, match=name):
            allocate(curves, np.array([2.5, 2]), 1)


def test_greedy_allocators_are_not_optimal_on_non_concave_curves_but_the_exact_ones_are():
    # Water filling keeps feeding group 0, whose average drops when acted on (non-monotone):
    # it ends at (2, 0) with min(0.6, 2) = 0.6; (0, 2) gives min(1, 5) = 1.
    curves = np.array([[1.0, 0.5, 0.6], [2.0, 4.0, 5.0]])
    sizes = np.array([2, 2])
    assert water_filling(curves, sizes, 2).tolist() == [2, 0]
    assert exact_maximin(curves, sizes, 2).tolist() == [0, 2]
    # MNW greedy never sees group 0's late jump (convex): it takes (0, 2), product 2.5; (2, 0) gives 10.
    curves = np.array([[1.0, 1.0, 10.0], [1.0, 2.0, 2.5]])
    assert mnw_greedy(curves, sizes, 2).tolist() == [0, 2]
    assert exact_nash_welfare(curves, sizes, 2).tolist() == [2, 0]


# --- policies ------------------------------------------------------------------------------------


def tiny_instance():
    """Two groups of 3 two-state arms, B = 3: the seed's WhittleToLagrange curves fool both greedies."""
    sizes, budget, horizon = np.array([3, 3]), 3, 4
    rng = np.random.default_rng(202)
    groups = np.repeat(np.arange(2), sizes)
    transitions = rng.dirichlet(np.ones(2) * 0.5, size=(6, 2, 2))
    rewards = np.tile([0.0, 1.0], (6, 1))
    states = rng.integers(0, 2, 6)
    return sizes, budget, horizon, groups, transitions, rewards, states


def acted_per_group(name, instance):
    sizes, budget, horizon, groups, transitions, rewards, states = instance
    policy = restless_policy(name, 6, sizes, budget)
    ctx = RestlessContext(jnp.asarray(states), jnp.asarray(0), jnp.asarray(horizon), jnp.asarray(budget),
                          jnp.asarray(transitions), jnp.asarray(rewards), jnp.asarray(groups))
    mask, _ = jax.jit(policy.act)(policy.init(jax.random.PRNGKey(0)), jax.random.PRNGKey(1), ctx)
    return tuple(np.bincount(groups[np.asarray(mask)], minlength=2))


def test_exact_policies_act_on_the_brute_force_optimal_split_of_their_curves():
    instance = tiny_instance()
    sizes, budget, horizon, groups, transitions, rewards, states = instance
    indices = whittle_indices(transitions, rewards, states, horizon, REFERENCE_GAMMA, REFERENCE_SEARCH)
    curves = np.asarray(group_value_curves(transitions, rewards, states, groups, indices, horizon, REFERENCE_GAMMA,
                                           max_budget=budget))
    candidates = splits(np.minimum(sizes, budget), budget)

    level = max(maximin(curves, sizes, b) for b in candidates)
    most = max(total(curves, b) for b in candidates if maximin(curves, sizes, b) >= level - 1e-9)
    exact = acted_per_group("MMR-exact", instance)
    assert maximin(curves, sizes, exact) == pytest.approx(level, abs=1e-9)
    assert total(curves, exact) == pytest.approx(most, abs=1e-9)
    assert maximin(curves, sizes, water_filling(curves, sizes, budget)) < level - 0.1  # the greedy falls short here

    best = max(nash(curves, b) for b in candidates)
    assert nash(curves, acted_per_group("MNW-exact", instance)) == pytest.approx(best, abs=1e-9)
    assert nash(curves, mnw_greedy(curves, sizes, budget)) < best - 1e-3


# --- the fig-4 reproduction ----------------------------------------------------------------------


def test_fig4_runs_the_exact_policies_beside_the_paper_figure(tmp_path, monkeypatch):
    import pandas as pd

    from structbandits.experiments import restless, restless_plots

    paper = {"NoAct", "Random", "Opt", "MMR", "MNW", "MNW-EG"}
    cells = restless.ermab_settings("fig4")
    assert all(set(s.policies) == paper | {"MMR-exact", "MNW-exact"} for s in cells if s.domain != "diabetes")
    assert all(not {"MMR-exact", "MNW-exact"} & set(s.policies) for s in cells if s.domain == "diabetes")
    assert all(set(s.policies) == paper for s in restless.ermab_settings("fig3"))

    def fake_grid(settings_list, **_):  # two groups per (setting, budget, policy), no simulation
        rows = [{"domain": s.domain, "setting": s.setting, "budget": b, "policy": p, "seed": 0, "group": g,
                 "group_mean": 1.0 + g, "utility": 1.5, "gini": 0.1, "wall_s": 0.0}
                for s in settings_list for b in s.budgets for p in s.policies for g in (0, 1)]
        return pd.DataFrame(rows)

    plotted = {}
    monkeypatch.setattr(restless, "run_restless_grid", fake_grid)
    monkeypatch.setattr(restless_plots, "plot_ermab_fig4",
                        lambda frame, path, budget_fraction: plotted.setdefault(path.name, frame))
    restless.run_ermab_figure("fig4", seeds=1, out=tmp_path, progress=False)
    summary = pd.read_csv(tmp_path / "fig4_summary.csv")
    assert {"MMR-exact", "MNW-exact"} <= set(summary["policy"])
    assert set(plotted) == {"fig4_budget10pct.png", "fig4_budget20pct.png", "fig4_exact_budget10pct.png",
                            "fig4_exact_budget20pct.png"}
    assert set(plotted["fig4_budget10pct.png"]["policy"]) == paper | {"HR-RR", "HR-Rand"}  # the paper's figure
    exact = plotted["fig4_exact_budget20pct.png"]
    assert set(exact["policy"]) == {"MMR", "MMR-exact", "MNW", "MNW-exact", "MNW-EG"}
    assert set(exact["domain"]) == {"synthetic", "maternal"}
