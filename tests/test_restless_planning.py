"""Value iteration, Whittle indices and the Lagrangian bound against independent oracles."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from structbandits.envs.rmab.domains import maternal_domain, synthetic_domain
from structbandits.errors import ValidationError
from structbandits.planning.lagrangian import (
    group_value_curves,
    lagrangian_bound_lp,
    lagrangian_dual_value,
)
from structbandits.planning.value_iteration import arm_values, q_values, stage_q_values
from structbandits.planning.whittle import (
    REFERENCE_SEARCH,
    WhittleSearch,
    check_indexability,
    whittle_index_table,
    whittle_indices,
)

EXACT = WhittleSearch(tolerance=1e-9)


def numpy_q(p, r, charge, horizon, gamma):
    """Backward induction written out for one arm (the oracle)."""
    value = np.zeros(p.shape[0])
    for _ in range(horizon):
        q = r[:, None] - charge * np.arange(p.shape[1])[None, :] + gamma * np.einsum("sat,t->sa", p, value)
        value = q.max(axis=1)
    return q


def random_arms(seed, num_arms=5, num_states=3, concentration=1.0):
    rng = np.random.default_rng(seed)
    return (rng.dirichlet(np.full(num_states, concentration), size=(num_arms, num_states, 2)),
            rng.uniform(size=(num_arms, num_states)), rng.integers(0, num_states, num_arms))


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), horizon=st.integers(1, 6), gamma=st.sampled_from([0.9, 0.9999, 1.0]))
def test_value_iteration_matches_backward_induction(seed, horizon, gamma):
    p, r, s = random_arms(seed)
    charges = np.random.default_rng(seed).normal(size=(5, 4))
    q = np.asarray(q_values(p, r, charges, horizon, gamma))
    v = np.asarray(arm_values(p, r, s, charges, horizon, gamma))
    for i in range(5):
        for k in range(4):
            expected = numpy_q(p[i], r[i], charges[i, k], horizon, gamma)
            np.testing.assert_allclose(q[i, k], expected, rtol=1e-12, atol=1e-12)
            assert v[i, k] == pytest.approx(expected[s[i]].max(), abs=1e-12)
    stages = np.asarray(stage_q_values(p, r, charges[0], horizon, gamma))
    np.testing.assert_allclose(stages[1, 2, horizon - 1], numpy_q(p[1], r[1], charges[0, 2], horizon, gamma), atol=1e-12)


def synthetic_groups():
    inst = synthetic_domain()
    first = [int(np.argmax(inst.groups == g)) for g in range(5)]
    return inst.transitions[first], inst.rewards[first]


def test_whittle_indices_reproduce_the_reference_runs():
    """Numbers from running the reference code (notes, section 8a): clipped [-1, 1] vs wide search."""
    p, r = synthetic_groups()
    clipped = np.asarray(whittle_index_table(p, r, 20, 0.9999, REFERENCE_SEARCH))
    exact = np.asarray(whittle_index_table(p, r, 20, 0.9999, EXACT))
    np.testing.assert_allclose(clipped[:, 0], [0.99609375, 0.94921875, 0.84765625, -0.00390625, -0.00390625])
    np.testing.assert_allclose(clipped[:3, 1], [0.63671875, 0.84765625, 0.84765625])
    np.testing.assert_allclose(exact[:3], [[1.3427, 0.6399], [0.9473, 0.85], [0.85, 0.85]], atol=1e-4)  # the wide run had tolerance 1e-4
    np.testing.assert_allclose(exact[3:], 0.0, atol=1e-8)
    # With one round left the reward does not depend on the action: the index is 0 everywhere.
    np.testing.assert_allclose(whittle_index_table(p, r, 1, 0.9999, EXACT), 0.0, atol=1e-8)
    np.testing.assert_allclose(whittle_index_table(p, r, 1, 0.9999, REFERENCE_SEARCH), -0.00390625)


def test_clipped_search_lives_on_the_reference_grid_and_bracketing_does_not_clip():
    mat = maternal_domain("A", num_arms=50)
    states = np.ones(50, dtype=int)
    clipped = np.asarray(whittle_indices(mat.transitions, mat.rewards, states, 20, 0.9999, REFERENCE_SEARCH))
    grid = (clipped + 1) * 128 - 0.5
    np.testing.assert_allclose(grid, np.round(grid), atol=1e-9)
    assert clipped.max() == 0.99609375
    exact = np.asarray(whittle_indices(mat.transitions, mat.rewards, states, 20, 0.9999, EXACT))
    assert exact.max() > 2.0  # group A arms in state 1 have true indices well above 1 (~2.7)
    inside = exact < 0.99
    np.testing.assert_allclose(clipped[inside], exact[inside], atol=0.0040)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), horizon=st.integers(1, 6), scale=st.sampled_from([0.1, 1.0, 30.0]))
def test_acting_and_resting_agree_at_the_index(seed, horizon, scale):
    p, r, s = random_arms(seed, num_arms=6)
    r = scale * r
    index = np.asarray(whittle_indices(p, r, s, horizon, 1.0, EXACT))
    q = np.asarray(q_values(p, r, index, horizon, 1.0))
    gap = q[np.arange(6), s, 1] - q[np.arange(6), s, 0]
    # Q1 − Q0 is continuous in the charge with slope in [−T, T]: within T · tolerance of a root.
    np.testing.assert_allclose(gap, 0.0, atol=horizon * 1e-9 + 1e-12)
    lo = np.asarray(q_values(p, r, index - 1e-6, horizon, 1.0))
    assert np.all(lo[np.arange(6), s, 1] > lo[np.arange(6), s, 0] - 1e-12)


def numpy_indexable(p, r, horizon, gamma, grid):
    """Per arm: along the grid, acting (strictly better) never switches back on once off."""
    verdict = []
    for i in range(p.shape[0]):
        ok = True
        for k in range(1, horizon + 1):
            acting = np.array([np.diff(numpy_q(p[i], r[i], c, k, gamma), axis=1)[:, 0] > 1e-9 for c in grid])
            ok &= not np.any(~acting[:-1] & acting[1:])
        verdict.append(ok)
    return np.array(verdict)


NON_INDEXABLE = np.array([
    [[0.0069, 0.0951, 0.8981], [0.3006, 0.6687, 0.0307]],
    [[0.0171, 0.9808, 0.0021], [0.6166, 0.0085, 0.3749]],
    [[0.0798, 0.173, 0.7472], [0.017, 0.0572, 0.9258]],
])


def test_indexability_check_against_brute_force():
    p = NON_INDEXABLE / NON_INDEXABLE.sum(-1, keepdims=True)
    r = np.array([2e-4, 0.2607, 0.208])
    grid = np.linspace(-2, 2, 161)
    arms_p = np.concatenate([p[None], random_arms(7, num_arms=5, concentration=0.3)[0]])
    arms_r = np.concatenate([r[None], random_arms(7, num_arms=5, concentration=0.3)[1] ** 3])
    expected = numpy_indexable(arms_p, arms_r, 4, 1.0, grid)
    assert not expected[0]  # the oracle itself sees the violation
    np.testing.assert_array_equal(check_indexability(arms_p, arms_r, 4, 1.0, charges=grid), expected)
    p_syn, r_syn = synthetic_groups()
    assert check_indexability(p_syn, r_syn, 20).all()
    with pytest.raises(ValidationError, match="charges: expected an increasing"):
        check_indexability(p_syn, r_syn, 3, charges=[1.0, 0.0])


def test_lp_bound_is_the_minimum_of_the_dual_and_its_dual_variable_attains_it():
    p, r, s = random_arms(11, num_arms=5)
    horizon, gamma = 5, 0.95
    grid = np.linspace(0, 3, 601)
    for budget in (0, 1, 2, 4):
        lp = lagrangian_bound_lp(p, r, s, budget, horizon, gamma)
        charge = float(lp.charges[0])
        assert charge >= -1e-9
        assert lagrangian_dual_value(p, r, s, charge, budget, horizon, gamma) == pytest.approx(lp.value, abs=1e-7)
        dual = [lagrangian_dual_value(p, r, s, c, budget, horizon, gamma) for c in grid]
        assert min(dual) >= lp.value - 1e-7  # weak duality at every charge
        assert min(dual) == pytest.approx(lp.value, abs=5e-3 * budget + 1e-9)  # grid spacing 0.005
        per_round = lagrangian_bound_lp(p, r, s, budget, horizon, gamma, per_round=True)
        assert per_round.value <= lp.value + 1e-7  # one charge per round is a tighter relaxation
        assert np.all(per_round.active.sum(axis=(0, 2)) <= budget + 1e-7)


@pytest.mark.parametrize("domain", ["synthetic", "maternal"])
def test_whittle_to_lagrange_shortcut_against_the_lp(domain):
    inst = synthetic_domain() if domain == "synthetic" else maternal_domain("B", num_arms=100)
    states = np.random.default_rng(0).integers(0, inst.num_states, inst.num_arms)
    horizon = 10
    indices = whittle_indices(inst.transitions, inst.rewards, states, horizon)
    curves = np.asarray(group_value_curves(inst.transitions, inst.rewards, states, inst.groups, indices, horizon,
                                           nonnegative_charges=True))
    gaps = []
    for g, size in enumerate(inst.group_sizes):
        arms = inst.groups == g
        for budget in sorted({0, 1, 2, size // 2, size}):
            lp = lagrangian_bound_lp(inst.transitions[arms], inst.rewards[arms], states[arms], budget, horizon).value
            assert curves[g, budget] >= lp - 1e-7  # F(λ) >= min F for every λ >= 0
            gaps.append((curves[g, budget] - lp) / lp)
            if budget == 0:
                assert curves[g, 0] == pytest.approx(lp, rel=1e-10)  # both are the passive value
    assert np.median(gaps) < 1e-3 and max(gaps) < 0.12


def test_curves_are_the_dual_at_the_whittle_to_lagrange_charges():
    p, r, s = random_arms(5, num_arms=6)
    groups = np.array([0, 0, 0, 1, 1, 1])
    indices = np.asarray(whittle_indices(p, r, s, 4))
    curves = np.asarray(group_value_curves(p, r, s, groups, indices, 4))
    for g in range(2):
        w = np.sort(indices[groups == g])[::-1]
        charges = [1e6, (w[0] + w[1]) / 2, (w[1] + w[2]) / 2, w[2]]
        for b, c in enumerate(charges):
            expected = lagrangian_dual_value(p[groups == g], r[groups == g], s[groups == g], c, b, 4)
            assert curves[g, b] == pytest.approx(expected, rel=1e-10)
