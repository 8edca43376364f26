"""Per-round planning cost of the learning restless agents at N = 10,000 arms.

What it measures
----------------
One round of planning (``act``) for N = 10,000 maternal-health arms (group A 60%), B = 10% of N,
H = 20 rounds left, random states, the posterior after 20 rounds of random transitions per arm:

* known-model MMR and MNW-EG (``agents.restless.restless_policy``): the baseline, planning on the
  true transitions;
* TS-<planner>: a Dirichlet posterior draw of all N × S × 2 rows (partially pooled: a group-mean
  draw, then each arm's draw), then the same planner on the draw
  (``agents.bayes_restless.bayes_restless_policy``);
* TS-MMR/arm (independent per-arm posteriors) and CE-MMR (plan on the posterior mean);
* the posterior draw alone: ``inference.dirichlet.dirichlet_sample`` on (N, S, 2, S) against a
  per-row NumPy loop (``numpy.random.Generator.dirichlet``, one call per row), the loop run on
  ``--loop-arms`` arms and extrapolated linearly to N (stated as such in the output).

Times are JAX warm wall times (best of ``--repeats``, default 3, after one compile-and-run call reported apart), all in
this process; the ratio column is time / known-model time of the same planner (the price of
sampling), or NumPy / JAX for the draw.

Run
---
    .venv/bin/python benchmarks/bench_bayes_rmab.py [--arms 10000 --budget-fraction 0.1 --loop-arms 1000 --repeats 3 --draw-only]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

import structbandits
from structbandits.agents.bayes_restless import TransitionCounts, bayes_restless_policy
from structbandits.agents.restless import RestlessContext, restless_policy
from structbandits.envs.rmab.domains import maternal_domain
from structbandits.inference.dirichlet import dirichlet_sample
from structbandits.models.restless import support_concentration

HORIZON = 20


def timed(fn, repeats=3):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return first, min(times)


def main():
    structbandits.configure()  # float64 and one LAPACK thread, as the CLI runs
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arms", type=int, default=10_000)
    parser.add_argument("--budget-fraction", type=float, default=0.1)
    parser.add_argument("--loop-arms", type=int, default=1_000)
    parser.add_argument("--repeats", type=int, default=3, help="warm calls timed (the best is reported)")
    parser.add_argument("--draw-only", action="store_true", help="time the posterior draw alone (no planning)")
    args = parser.parse_args()
    inst = maternal_domain("A", num_arms=args.arms)
    budget = int(args.arms * args.budget_fraction)
    rng = np.random.default_rng(0)
    states = jnp.asarray(rng.integers(0, 3, args.arms))
    ctx = RestlessContext(states, jnp.asarray(0), jnp.asarray(HORIZON), jnp.asarray(budget),
                          jnp.asarray(inst.transitions), jnp.asarray(inst.rewards), jnp.asarray(inst.groups))
    prior = support_concentration(inst.transitions)
    # A posterior after 20 random transitions per arm (the true dynamics, random actions).
    counts = np.zeros(inst.transitions.shape)
    for _ in range(HORIZON):
        s, a = rng.integers(0, 3, args.arms), rng.integers(0, 2, args.arms)
        nxt = (rng.random(args.arms)[:, None] > np.cumsum(inst.transitions[np.arange(args.arms), s, a], 1)[:, :-1]).sum(1)
        counts[np.arange(args.arms), s, a, nxt] += 1
    counts = jnp.asarray(counts)
    key = jax.random.PRNGKey(0)
    print(f"Per-round planning, N={args.arms:,} maternal arms (S=3), B={budget:,}, H={HORIZON}, "
          f"backend {jax.default_backend()}")
    rows = []
    baseline = {}
    for label, planner, kwargs in [] if args.draw_only else [
        ("MMR (known model)", "MMR", None),
        ("TS-MMR (partial pooling)", "MMR", dict(pooling="partial", arm_concentration=10.0)),
        ("TS-MMR/arm (no pooling)", "MMR", dict(pooling="arm")),
        ("CE-MMR (partial pooling)", "MMR", dict(sampling="mean", pooling="partial", arm_concentration=10.0)),
        ("MNW-EG (known model)", "MNW-EG", None),
        ("TS-MNW-EG (partial pooling)", "MNW-EG", dict(pooling="partial", arm_concentration=10.0)),
    ]:
        if kwargs is None:
            policy = restless_policy(planner, args.arms, inst.group_sizes, budget)
            agent_state = policy.init(key)
        else:
            policy = bayes_restless_policy(planner, prior, inst.groups, max_budget=budget, **kwargs)
            agent_state = TransitionCounts(counts, policy.params)
        act = jax.jit(policy.act)
        first, warm = timed(lambda: act(agent_state, key, ctx)[0], args.repeats)
        baseline.setdefault(planner, warm)
        ratio = warm / baseline[planner]
        rows.append((label, first, warm, ratio))
        print(f"   {label:30s} first {first:7.2f} s, warm {warm:7.3f} s | {ratio:5.2f}x the known-model {planner}")
    concentration = jnp.asarray(prior + counts)
    draw = jax.jit(lambda k: dirichlet_sample(k, concentration))
    first, warm = timed(lambda: draw(key), args.repeats)
    sub = rng.choice(args.arms, args.loop_arms, replace=False)
    rows_np = np.asarray(concentration)[sub].reshape(-1, inst.num_states)
    start = time.perf_counter()
    for row in rows_np:
        rng.dirichlet(row)
    loop = (time.perf_counter() - start) * args.arms / args.loop_arms
    print(f"   posterior draw alone           first {first:7.2f} s, warm {warm:7.3f} s | NumPy per-row loop "
          f"{loop:7.2f} s (extrapolated from {args.loop_arms:,} arms) | ratio {loop / warm:6.1f}x")


if __name__ == "__main__":
    main()
