"""Whittle bisection terminates, keeps its results, and flags arms that are not indexable.

Oracles are plain NumPy: backward induction for Q_T, the action gap located on a fine charge grid
and refined by bisection in NumPy. Inputs that used to hang run in a subprocess with a timeout, so
a regression fails instead of hanging the suite.
"""

import json
import subprocess
import sys
import textwrap
import warnings

import jax
import numpy as np
import pytest

from structbandits.errors import ValidationError
from structbandits.planning.whittle import (
    REFERENCE_SEARCH,
    WhittleSearch,
    arm_whittle_bracket,
    check_indexability,
    whittle_index_table,
    whittle_indices,
)


def numpy_gap(p, r, state, charge, horizon, gamma):
    """Q_T(s, act) − Q_T(s, rest) of one arm by backward induction (the oracle)."""
    value = np.zeros(p.shape[0])
    for _ in range(horizon):
        q = r[:, None] - charge * np.arange(2)[None, :] + gamma * np.einsum("sat,t->sa", p, value)
        value = q.max(axis=1)
    return q[state, 1] - q[state, 0]


def numpy_index(p, r, state, horizon, gamma, points=2001):
    """The charge where acting stops being strictly better: grid, then bisection down to float spacing."""
    span = gamma * (horizon - 1) * np.ptp(r) + 1.0
    grid = np.linspace(-span, span, points)
    acts = np.array([numpy_gap(p, r, state, c, horizon, gamma) > 0 for c in grid])
    assert acts[0] and not acts[-1]
    last = np.flatnonzero(acts)[-1]
    lo, hi = grid[last], grid[last + 1]
    for _ in range(2000):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        lo, hi = (mid, hi) if numpy_gap(p, r, state, mid, horizon, gamma) > 0 else (lo, mid)
    return 0.5 * (lo + hi)


def numpy_clipped_bisection(p, r, state, horizon, gamma, lower, upper, tolerance, steps=10_000):
    """The reference's search written out: bisect [lower, upper] while wider than tolerance."""
    lo, hi = lower, upper
    for _ in range(steps):
        if hi - lo <= tolerance:
            break
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if numpy_gap(p, r, state, mid, horizon, gamma) > 0 else (lo, mid)
    return 0.5 * (lo + hi)


def numpy_monotone(p, r, state, horizon, gamma, points=4001):
    """True when acting, once clearly worse, is never clearly better again along a fine grid."""
    span = gamma * (horizon - 1) * np.ptp(r) + 1.0
    gaps = np.array([numpy_gap(p, r, state, c, horizon, gamma) for c in np.linspace(-span, span, points)])
    return not np.any(np.maximum.accumulate(gaps < -1e-12) & (gaps > 1e-12))


def two_state_arm(high_reward):
    """Rewards [0, r]; acting moves the arm towards the rewarding state 1."""
    p = np.array([[[0.9, 0.1], [0.2, 0.8]], [[0.7, 0.3], [0.1, 0.9]]])
    return p[None], np.array([[0.0, high_reward]])


def random_arms(seed, num_arms=4, num_states=3):
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.full(num_states, 0.7), size=(num_arms, num_states, 2))
    return p, rng.uniform(size=(num_arms, num_states))


# A three-state arm where, in state 0 with T = 4 rounds left (γ = 1), acting stops being optimal at
# λ ≈ −0.136 and is optimal again on about [−0.076, 0.028] (found by the NumPy grid).
NON_INDEXABLE = np.array([
    [[0.0069, 0.0951, 0.8981], [0.3006, 0.6687, 0.0307]],
    [[0.0171, 0.9808, 0.0021], [0.6166, 0.0085, 0.3749]],
    [[0.0798, 0.173, 0.7472], [0.017, 0.0572, 0.9258]],
])
NON_INDEXABLE_REWARDS = np.array([2e-4, 0.2607, 0.208])

HANGING = textwrap.dedent("""
    import json, warnings
    import numpy as np
    import structbandits
    structbandits.configure()
    from structbandits.planning.whittle import WhittleSearch, whittle_index_table
    p = np.array([[[0.9, 0.1], [0.2, 0.8]], [[0.7, 0.3], [0.1, 0.9]]])[None]
    out = {}
    # No cap in reach: only the midpoint-meets-an-end stop can end these.
    uncapped = WhittleSearch(tolerance=1e-15, max_bisections=10**9)
    out["ten"] = np.asarray(whittle_index_table(p, np.array([[0.0, 10.0]]), 20, 0.9999, uncapped)).tolist()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        d = whittle_index_table(p, np.array([[0.0, 1e9]]), 20, 0.9999, diagnostics=True)
    out["big"] = np.asarray(d.indices).tolist()
    out["big_converged"] = np.asarray(d.converged).tolist()
    out["big_warnings"] = [str(w.message) for w in caught]
    rel = WhittleSearch(relative_tolerance=1e-12, max_bisections=10**9)
    d = whittle_index_table(p, np.array([[0.0, 1e9]]), 20, 0.9999, rel, diagnostics=True)
    out["big_rel"] = np.asarray(d.indices).tolist()
    out["big_rel_converged"] = np.asarray(d.converged).tolist()
    print(json.dumps(out))
""")


def test_inputs_that_used_to_hang_return_the_oracle_index():
    """Planted bug caught: dropping the midpoint stop (the uncapped search never ends: timeout)."""
    done = subprocess.run([sys.executable, "-c", HANGING], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    for state in (0, 1):
        # Near the crossing the sign of the gap is rounding noise of Q (~1e-13 relative): compare
        # to that, not to the float spacing.
        for key, arm, rel in [("ten", two_state_arm(10.0), 1e-12), ("big", two_state_arm(1e9), 1e-12),
                              ("big_rel", two_state_arm(1e9), 3e-12)]:
            assert out[key][0][state] == pytest.approx(numpy_index(arm[0][0], arm[1][0], state, 20, 0.9999), rel=rel)
    assert 8 < out["ten"][0][0] < 16  # float spacing 1.8e-15 there: above the tolerance 1e-15
    assert out["big_converged"] == [[False, False]]  # float spacing ~1.2e-7 > 1e-7
    assert any("stopped above the tolerance at (arm, state) [(0, 0), (0, 1)]" in w for w in out["big_warnings"])
    assert out["big_rel_converged"] == [[True, True]]


def test_results_of_terminating_searches_match_the_numpy_oracle():
    """Planted bugs caught: a cap or a stop that ends bisection early; a changed reference search."""
    p, r = random_arms(3)
    for horizon, gamma in [(1, 0.9999), (3, 1.0), (6, 0.95)]:
        exact = np.asarray(whittle_index_table(p, r, horizon, gamma))
        clipped = np.asarray(whittle_index_table(p, r, horizon, gamma, REFERENCE_SEARCH))
        for i in range(p.shape[0]):
            for s in range(p.shape[1]):
                assert exact[i, s] == pytest.approx(numpy_index(p[i], r[i], s, horizon, gamma), abs=1e-7)
                # Grid values −1 + (k + ½)/128 are exact in binary: the reference search, bit for bit.
                assert clipped[i, s] == numpy_clipped_bisection(p[i], r[i], s, horizon, gamma, -1.0, 1.0, 0.01)


def test_bisection_cap_and_relative_tolerance_set_where_it_stops():
    """Planted bugs caught: ignoring max_bisections; ignoring relative_tolerance."""
    p, r = random_arms(8, num_arms=1)
    capped = WhittleSearch(bracket=False, max_bisections=3)
    with pytest.warns(RuntimeWarning, match=r"stopped above the tolerance at arms \[\(0,\)\]"):
        d = whittle_indices(p, r, np.array([1]), 4, 1.0, capped, diagnostics=True)
    expected = numpy_clipped_bisection(p[0], r[0], 1, 4, 1.0, -1.0, 1.0, 1e-7, steps=3)
    assert float(d.indices[0]) == expected and not d.converged[0]

    scaled = 1e4 * r
    for search in (WhittleSearch(), WhittleSearch(relative_tolerance=1e-3)):
        lo, hi = (float(v) for v in jax.jit(arm_whittle_bracket, static_argnums=5)(
            p[0], scaled[0], 1, 5, 0.9999, search))
        allowance = search.tolerance + search.relative_tolerance * max(abs(lo), abs(hi))
        # Bisection stops at the first width within the allowance: the width before was over it.
        assert allowance / 2 * (1 - 1e-9) <= hi - lo <= allowance
        assert numpy_gap(p[0], scaled[0], 1, lo, 5, 0.9999) > 0 >= numpy_gap(p[0], scaled[0], 1, hi, 5, 0.9999)


def test_non_indexable_arm_is_flagged_and_named():
    """Planted bug caught: a flag that never fires (or always fires) on the grid check."""
    bad = NON_INDEXABLE / NON_INDEXABLE.sum(-1, keepdims=True)
    good_p, good_r = random_arms(5, num_arms=3)
    p = np.concatenate([good_p[:1], bad[None], good_p[1:]])
    r = np.concatenate([good_r[:1], NON_INDEXABLE_REWARDS[None], good_r[1:]])
    horizon, gamma = 4, 1.0
    oracle = np.array([[numpy_monotone(p[i], r[i], s, horizon, gamma) for s in range(3)] for i in range(4)])
    assert not oracle[1, 0] and oracle.sum() == 11  # the oracle sees exactly the planted violation
    assert not check_indexability(p, r, horizon, gamma)[1]  # the package's grid check agrees on the arm
    with pytest.warns(RuntimeWarning, match=r"not indexable at \(arm, state\) \[\(1, 0\)\]"):
        table = whittle_index_table(p, r, horizon, gamma, diagnostics=True)
    np.testing.assert_array_equal(table.indexable, oracle)
    with pytest.warns(RuntimeWarning, match=r"not indexable at arms \[\(1,\)\]"):
        per_arm = whittle_indices(p, r, np.array([2, 0, 1, 0]), horizon, gamma, diagnostics=True)
    np.testing.assert_array_equal(per_arm.indexable, [True, False, True, True])
    # By default the check runs and warns but returns the indices alone; check=False says nothing.
    with pytest.warns(RuntimeWarning, match=r"not indexable at \(arm, state\) \[\(1, 0\)\]"):
        checked = np.asarray(whittle_index_table(p, r, horizon, gamma))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plain = np.asarray(whittle_index_table(p, r, horizon, gamma, check=False))
    np.testing.assert_array_equal(plain, table.indices)
    np.testing.assert_array_equal(checked, table.indices)
    assert table.converged.all()


def test_search_validation():
    p, r = two_state_arm(1.0)
    for bad, match in [(WhittleSearch(max_bisections=0), "search.max_bisections"),
                       (WhittleSearch(relative_tolerance=-1e-3), "search.relative_tolerance"),
                       (WhittleSearch(relative_tolerance=float("nan")), "search.relative_tolerance")]:
        with pytest.raises(ValidationError, match=match):
            whittle_indices(p, r, np.array([0]), 3, search=bad)
