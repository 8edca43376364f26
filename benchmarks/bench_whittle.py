"""Restless planning at scale: vmapped JAX against a per-arm NumPy loop (the reference's structure).

What it measures
----------------
1. Whittle indices of N = 100,000 maternal-health arms (group A 60%) in random states with H = 20
   rounds left, γ = 0.9999, with the reference's clipped search ([-1, 1], tolerance 0.01: 8 value
   iterations per arm) and with the exact bracketing search (tolerance 1e-7).
   * JAX: ``planning.whittle.whittle_indices``: one ``jit``, ``vmap`` over arms, bisection as a
     batched ``while_loop``. The first call (compile + run) is reported apart from the best of 3.
   * NumPy: the same bisection as a Python loop over arms, each arm's finite-horizon value
     iteration in NumPy (what the reference does, without numba). It runs on ``--loop-arms`` arms
     and is extrapolated linearly to N (the loop is embarrassingly per-arm); its indices are
     checked against JAX's on those arms.
2. One MNW-EG allocation for N = 10,000 maternal arms with B = 10% of N at t = 0 (T = 20):
   Whittle indices, dummy upsampling of every group to the largest size, WhittleToLagrange
   curves, MNW greedy, rescaling, within-group top-b selection.
   * JAX: one jitted ``act`` of ``restless_policy("MNW-EG", ...)`` (curves for b = 0..B of every
     group in one batched solve).
   * NumPy: the reference's algorithm as a per-arm loop: indices by per-arm bisection, then the
     greedy that recomputes the chosen group's Lagrangian value (one value iteration per distinct
     arm of the group, weighted by its multiplicity) after every unit of budget. The greedy runs
     ``--loop-greedy-steps`` of its B steps and the rest is extrapolated at the measured mean step
     time; the index phase is extrapolated from ``--loop-arms`` arms as in 1.

Ratios are NumPy (extrapolated) wall time over the JAX warm wall time, in this process.

Run
---
    .venv/bin/python benchmarks/bench_whittle.py [--arms 100000 --loop-arms 2000 --eg-arms 10000]
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

import structbandits
from structbandits.agents.restless import PlannerSettings, RestlessContext, restless_policy
from structbandits.envs.rmab.domains import maternal_domain
from structbandits.planning.whittle import REFERENCE_SEARCH, WhittleSearch, whittle_indices

GAMMA = 0.9999
HORIZON = 20


def numpy_q(p, r, charge, horizon, gamma=GAMMA):
    value = np.zeros(p.shape[0])
    cost = np.arange(p.shape[1])
    for _ in range(horizon):
        q = r[:, None] - charge * cost + gamma * (p @ value)
        value = q.max(axis=1)
    return q


def numpy_index(p, r, state, horizon, search: WhittleSearch):
    def acts(charge):
        q = numpy_q(p, r, charge, horizon)
        return q[state, 1] > q[state, 0]

    lo, hi = search.lower, search.upper
    if search.bracket:
        while acts(hi):
            lo, hi = hi, hi + 2 * (hi - lo)
        while not acts(lo):
            lo, hi = lo - 2 * (hi - lo), lo
    while hi - lo > search.tolerance:
        mid = 0.5 * (lo + hi)
        if acts(mid):
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def numpy_indices(p, r, states, horizon, search):
    return np.array([numpy_index(p[i], r[i], states[i], horizon, search) for i in range(p.shape[0])])


def best_of(fn, repeats=3):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return min(times), out


def bench_indices(num_arms, loop_arms):
    inst = maternal_domain("A", num_arms=num_arms)
    states = np.random.default_rng(0).integers(0, 3, num_arms)
    print(f"\n1. Whittle indices, N={num_arms:,} maternal arms, H={HORIZON}")
    rows = []
    for label, search in [("reference [-1,1], tol 0.01", REFERENCE_SEARCH), ("bracketing, tol 1e-7", WhittleSearch())]:
        run = lambda: whittle_indices(inst.transitions, inst.rewards, states, HORIZON, GAMMA, search, check=False)
        start = time.perf_counter()
        first = jax.block_until_ready(run())
        first_s = time.perf_counter() - start
        warm_s, indices = best_of(run)
        sub = np.random.default_rng(1).choice(num_arms, loop_arms, replace=False)
        start = time.perf_counter()
        loop = numpy_indices(inst.transitions[sub], inst.rewards[sub], states[sub], HORIZON, search)
        loop_s = (time.perf_counter() - start) * num_arms / loop_arms
        worst = np.abs(loop - np.asarray(indices)[sub]).max()
        print(f"   {label:28s} JAX first {first_s:7.2f} s, warm {warm_s:7.3f} s | NumPy loop "
              f"{loop_s:8.1f} s (extrapolated from {loop_arms:,} arms) | ratio {loop_s / warm_s:7.1f}x | "
              f"max |JAX - NumPy| {worst:.1e}")
        rows.append((label, first_s, warm_s, loop_s))
        del first
    return rows


def numpy_mnw_eg(inst, states, budget, horizon, rng, loop_arms, greedy_steps):
    """The reference's MNW-EG allocation as a per-arm loop; returns (extrapolated seconds, steps run)."""
    p, r, groups = inst.transitions, inst.rewards, inst.groups
    sizes = inst.group_sizes
    top = sizes.max()
    discounted = (1 - GAMMA**horizon) / (1 - GAMMA)
    sub = rng.choice(inst.num_arms, loop_arms, replace=False)
    start = time.perf_counter()
    numpy_indices(p[sub], r[sub], states[sub], horizon, REFERENCE_SEARCH)
    index_s = (time.perf_counter() - start) * inst.num_arms / loop_arms
    # The greedy needs every arm's index; take them from JAX (already timed above, per arm).
    indices = np.asarray(whittle_indices(p, r, states, horizon, GAMMA, REFERENCE_SEARCH, check=False))
    start = time.perf_counter()
    members, weights, sorted_idx = [], [], []
    for g in range(len(sizes)):
        arms = np.flatnonzero(groups == g)
        dummies = rng.choice(arms, top - arms.size, replace=True)
        uniq, counts = np.unique(np.concatenate([arms, dummies]), return_counts=True)
        members.append(uniq)
        weights.append(counts)
        sorted_idx.append(np.sort(indices[np.concatenate([arms, dummies])])[::-1])

    def charge(g, b):
        if b == 0:
            return 1e6
        w = sorted_idx[g]
        return w[b - 1] if b == top else 0.5 * (w[b - 1] + w[b])

    def value(g, b):
        lam = charge(g, b)
        total = sum(c * numpy_q(p[i], r[i], lam, horizon)[states[i]].max() for i, c in zip(members[g], weights[g]))
        return total + lam * b * discounted

    alloc = np.zeros(len(sizes), dtype=int)
    current = np.array([value(g, 0) for g in range(len(sizes))])
    following = np.array([value(g, 1) for g in range(len(sizes))])
    init_s = time.perf_counter() - start
    start = time.perf_counter()
    steps = min(greedy_steps, budget)
    for _ in range(steps):
        gains = np.where(alloc < top, np.log(following) - np.log(current), -np.inf)
        g = int(np.argmax(gains))
        alloc[g] += 1
        current[g] = following[g]
        following[g] = value(g, alloc[g] + 1)
    step_s = (time.perf_counter() - start) / steps
    return index_s + init_s + step_s * budget, steps


def bench_mnw_eg(num_arms, loop_arms, greedy_steps):
    inst = maternal_domain("A", num_arms=num_arms)
    budget = num_arms // 10
    states = np.random.default_rng(0).integers(0, 3, num_arms)
    print(f"\n2. One MNW-EG allocation, N={num_arms:,} maternal arms (sizes {inst.group_sizes.tolist()}), "
          f"B={budget}, T={HORIZON}")
    policy = restless_policy("MNW-EG", num_arms, inst.group_sizes, budget, PlannerSettings())
    act = jax.jit(policy.act)
    ctx = RestlessContext(jnp.asarray(states), jnp.asarray(0), jnp.asarray(HORIZON), jnp.asarray(budget),
                          jnp.asarray(inst.transitions), jnp.asarray(inst.rewards), jnp.asarray(inst.groups))
    run = lambda: act(policy.init(jax.random.PRNGKey(0)), jax.random.PRNGKey(0), ctx)[0]
    start = time.perf_counter()
    mask = jax.block_until_ready(run())
    first_s = time.perf_counter() - start
    warm_s, mask = best_of(run)
    per_group = np.bincount(inst.groups[np.asarray(mask)], minlength=inst.num_groups)
    loop_s, steps = numpy_mnw_eg(inst, states, budget, HORIZON, np.random.default_rng(2), loop_arms, greedy_steps)
    print(f"   JAX first {first_s:7.2f} s, warm {warm_s:7.3f} s (budgets per group {per_group.tolist()}) | NumPy loop "
          f"{loop_s:8.1f} s (indices extrapolated from {loop_arms:,} arms, greedy from {steps} of {budget} steps) | "
          f"ratio {loop_s / warm_s:7.1f}x")
    return first_s, warm_s, loop_s


def main():
    structbandits.configure()  # float64 and one LAPACK thread, as the CLI runs
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arms", type=int, default=100_000)
    parser.add_argument("--loop-arms", type=int, default=1_000)
    parser.add_argument("--eg-arms", type=int, default=10_000)
    parser.add_argument("--loop-greedy-steps", type=int, default=10)
    args = parser.parse_args()
    print(f"jax {jax.__version__}, {jax.devices()[0].platform}, {os.cpu_count()} CPUs visible, float64")
    bench_indices(args.arms, args.loop_arms)
    bench_mnw_eg(args.eg_arms, args.loop_arms, args.loop_greedy_steps)


if __name__ == "__main__":
    main()
