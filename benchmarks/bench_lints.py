"""Throughput of linear Thompson sampling: the vmapped JAX simulator against a plain NumPy loop.

What it measures
----------------
Both sides simulate LinTS (one Gaussian posterior per arm in information form, a rank-one Cholesky
update of the pulled arm, θ̃_a = mean_a + L_a⁻ᵀ z per arm) on the synthetic linear contextual bandit
(θ_a ~ N(0, I_d), contexts ~ Uniform[-1, 1]^d, rewards xᵀθ_a + N(0, σ²)), with a prior matching
the environment.

* JAX: ``batched_simulator(lin_ts(...), linear_contextual_bandit(...), horizon)`` on
  ``seed_keys(0, seeds)``, i.e. ``lax.scan`` over rounds, ``vmap`` over seeds, one ``jit``. The
  first call (compile + run) is timed separately from the best of 3 warm calls.
* NumPy: the same algorithm written below as a Python loop over seeds and rounds with SciPy
  triangular solves. It is slow, so it runs on fewer seeds (``--numpy-seeds``).

Throughput is reported in seed-rounds per second (seeds × horizon / seconds), so the two sides are
comparable despite different seed counts. The mean final cumulative expected regret of each side is
printed as a sanity check: same algorithm, same kind of problem, so same order of magnitude. The NumPy
side is a plain NumPy loop written for this benchmark, not a reference implementation.

Before / after (issue 22 item 3)
--------------------------------
The second table times the same JAX simulator with ``lin_ts`` as of commit ``round_cost.BEFORE``
(loaded from git: each round K ``vmap``-ped triangular solves and K Cholesky mean solves, one LAPACK
call per arm on CPU) and as now (``arm_draws``: the same normals through one substitution vectorised
over the arms), for K in --perf-arms, in µs per seed-round, with the lower bound and the ratios. The
two draw the same normals, so their actions and regrets agree (printed).

Lower bound per seed-round (``round_cost.lower_bound_us``, rates measured in the same run): bytes
8·K·(d² + 2d) (every arm's precision factor and information, the environment's θ for the regret),
flops 2Kd² + 4Kd (L⁻¹h, L⁻ᵀ(·), the K scores and the K means of the regret), K·d normals, and K + d
uniform-equivalent draws (the K keys split for the arms, the context). At small K the round is
dominated by per-operation overhead of the compiled loop, not by this arithmetic.

LinTS-NIG (unknown noise variance) before / after
------------------------------------------------
The third table does the same for ``lin_ts_nig`` (σ²_a ~ InvGamma(2, 1) per arm, θ_a | σ² ~ N(0, σ² I)):
before, ``inference/nig.py`` as of ``SAMPLING_BEFORE`` (``regression_nig_sample`` with one vmapped
``solve_triangular`` and one Cholesky mean solve per arm); after, all arms through
``conjugate.stacked_gaussian_draws`` from the same normals (same actions, printed); the two sides' warm calls
interleaved, the best of 5 each. Lower bound: LinTS's,
plus two numbers per arm (α, β) in the bytes and one gamma draw per arm (at least one normal and one
uniform each, Marsaglia-Tsang), and no per-arm key split: bytes 8·K·(d² + 2d + 2), flops 2Kd² + 4Kd,
K·d + K normals, K + d uniforms.

Run
---
    .venv/bin/python benchmarks/bench_lints.py [--seeds 100 --horizon 500 --arms 10 --features 5 --numpy-seeds 10]
    [--perf-arms 10 1000 --perf-seeds 20 --perf-horizon 100] [--nig-arms 10 100 1000]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from scipy.linalg import cho_solve, solve_triangular

import structbandits
from round_cost import (
    BEFORE,
    Work,
    before_after_header,
    before_after_row,
    describe,
    lower_bound_us,
    machine_rates,
    module_at,
    time_before_after,
)
from structbandits.agents import lin_ts, lin_ts_nig
from structbandits.envs import linear_contextual_bandit
from structbandits.experiments import Trajectory, batched_simulator, seed_keys

NOISE_SCALE = 1.0
T = TypeVar("T")
# The last commit before issue 22's stacked sampling reached LinTS-NIG and GLM-TS (inference/nig.py, agents/glm.py,
# agents/lin_ts_nig.py as they were): the "before" side of the LinTS-NIG table here and the GLM-TS one in bench_glm.py.
SAMPLING_BEFORE = "9c9557e79180057633dd19f68de424656a337ba2"


def cholesky_rank_one_update(chol: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor of ``chol @ chol.T + outer(x, x)`` in O(d²), updating ``chol`` in place."""
    x = x.copy()
    for k in range(x.shape[0]):
        r = np.hypot(chol[k, k], x[k])
        c, s = r / chol[k, k], x[k] / chol[k, k]
        chol[k, k] = r
        chol[k + 1:, k] = (chol[k + 1:, k] + s * x[k + 1:]) / c
        x[k + 1:] = c * x[k + 1:] - s * chol[k + 1:, k]
    return chol


def numpy_lints_regret(seed: int, horizon: int, arms: int, features: int, noise_scale: float) -> float:
    """Final cumulative expected regret of one LinTS simulation with prior N(0, I) per arm."""
    rng = np.random.default_rng(seed)
    theta = rng.standard_normal((arms, features))
    chol = np.broadcast_to(np.eye(features), (arms, features, features)).copy()  # precision = I
    info = np.zeros((arms, features))
    noise_var = noise_scale**2
    regret = 0.0
    for _ in range(horizon):
        context = rng.uniform(-1.0, 1.0, features)
        draws = np.empty((arms, features))
        for a in range(arms):
            mean = cho_solve((chol[a], True), info[a])
            draws[a] = mean + solve_triangular(chol[a], rng.standard_normal(features), lower=True, trans="T")
        action = int(np.argmax(draws @ context))
        means = theta @ context
        reward = means[action] + noise_scale * rng.standard_normal()
        cholesky_rank_one_update(chol[action], context / noise_scale)
        info[action] += context * (reward / noise_var)
        regret += means.max() - means[action]
    return regret


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    """``fn()`` and its wall-clock seconds."""
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def before_after(arms_list: list[int], features: int, seeds: int, horizon: int) -> None:
    """Issue 22 item 3: LinTS µs per seed-round before and after, against the lower bound."""
    before = module_at(BEFORE, "structbandits/agents/thompson.py", "thompson_before")
    rates = machine_rates()
    keys = seed_keys(0, seeds)
    print(f"\nLinTS before / after (issue 22): d={features}, {seeds} seeds, {horizon} rounds, load average "
          f"{os.getloadavg()[0]:.1f}; {describe(rates)}")
    if before is None:
        print(f"  before: not measured (no git history here to load agents/thompson.py at {BEFORE[:7]})")
    print(before_after_header())
    for arms in arms_list:
        env = linear_contextual_bandit(arms, features, noise_scale=NOISE_SCALE)
        work = Work(bytes=8 * arms * (features**2 + 2 * features), flops=2 * arms * features**2 + 4 * arms * features,
                    normals=arms * features, uniforms=arms + features)
        bound = lower_bound_us(work, rates)
        policies = {name: None if build is None else build(jnp.zeros(features), jnp.eye(features), NOISE_SCALE,
                                                           num_actions=arms)
                    for name, build in (("before", None if before is None else before.lin_ts), ("after", lin_ts))}
        print(f"{arms:>6}" + before_after_row(time_before_after(policies, env, horizon, keys, repeats=3), bound),
              flush=True)


def lin_ts_nig_before():
    """``lin_ts_nig`` drawing through ``regression_nig_sample`` as of ``SAMPLING_BEFORE``; None without git history."""
    nig = module_at(SAMPLING_BEFORE, "structbandits/inference/nig.py", "nig_before")
    agent = module_at(SAMPLING_BEFORE, "structbandits/agents/lin_ts_nig.py", "lin_ts_nig_before")
    if nig is None or agent is None:
        return None
    agent.regression_nig_sample = nig.regression_nig_sample  # the agent's one call into the sampler
    return agent.lin_ts_nig


def nig_before_after(arms_list: list[int], features: int, seeds: int, horizon: int) -> None:
    """LinTS-NIG µs per seed-round before and after the stacked draws, against the lower bound."""
    before = lin_ts_nig_before()
    rates = machine_rates()
    keys = seed_keys(0, seeds)
    print(f"\nLinTS-NIG before / after (issue 22): d={features}, σ² per arm ~ InvGamma(2, 1), {seeds} seeds, "
          f"{horizon} rounds, load average {os.getloadavg()[0]:.1f}; {describe(rates)}")
    if before is None:
        print(f"  before: not measured (no git history here to load inference/nig.py at {SAMPLING_BEFORE[:7]})")
    print(before_after_header())
    for arms in arms_list:
        env = linear_contextual_bandit(arms, features, noise_scale=NOISE_SCALE)
        work = Work(bytes=8 * arms * (features**2 + 2 * features + 2),
                    flops=2 * arms * features**2 + 4 * arms * features,
                    normals=arms * features + arms, uniforms=arms + features)
        bound = lower_bound_us(work, rates)
        policies = {name: None if build is None else build(jnp.zeros(features), jnp.eye(features), 2.0, 1.0,
                                                           num_actions=arms)
                    for name, build in (("before", before), ("after", lin_ts_nig))}
        print(f"{arms:>6}" + before_after_row(time_before_after(policies, env, horizon, keys), bound), flush=True)


def main() -> None:
    structbandits.configure()  # float64 and one LAPACK thread, as the CLI runs
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=100, help="seeds for the JAX simulator")
    parser.add_argument("--horizon", type=int, default=500, help="rounds per simulation")
    parser.add_argument("--arms", type=int, default=10, help="number of arms K")
    parser.add_argument("--features", type=int, default=5, help="context dimension d")
    parser.add_argument("--numpy-seeds", type=int, default=10, help="seeds for the (slow) plain NumPy loop")
    parser.add_argument("--perf-arms", type=int, nargs="*", default=[10, 1000], help="K for the before/after table")
    parser.add_argument("--perf-seeds", type=int, default=20, help="seeds for the before/after table")
    parser.add_argument("--perf-horizon", type=int, default=100, help="rounds for the before/after table")
    parser.add_argument("--nig-arms", type=int, nargs="*", default=[10, 100, 1000], help="K for the LinTS-NIG table")
    parser.add_argument("--only-before-after", action="store_true", help="skip the JAX / NumPy throughput table")
    args = parser.parse_args()

    if not args.only_before_after:
        throughput(args)
    if args.perf_arms:
        before_after(args.perf_arms, args.features, args.perf_seeds, args.perf_horizon)
    if args.nig_arms:
        nig_before_after(args.nig_arms, args.features, args.perf_seeds, args.perf_horizon)


def throughput(args: argparse.Namespace) -> None:
    """The JAX simulator against the plain NumPy loop at one K."""
    env = linear_contextual_bandit(args.arms, args.features, noise_scale=NOISE_SCALE)
    policy = lin_ts(jnp.zeros(args.features), jnp.eye(args.features), NOISE_SCALE, num_actions=args.arms)
    simulate = batched_simulator(policy, env, args.horizon)
    keys = seed_keys(0, args.seeds)

    def jax_call() -> Trajectory:
        return jax.block_until_ready(simulate(keys))

    trajectory, jax_first = timed(jax_call)
    jax_warm = min(timed(jax_call)[1] for _ in range(3))
    jax_regret = float(np.asarray(trajectory.expected_regret).sum(axis=1).mean())

    numpy_regrets, numpy_time = timed(lambda: [
        numpy_lints_regret(seed, args.horizon, args.arms, args.features, NOISE_SCALE)
        for seed in range(args.numpy_seeds)])

    jax_work, numpy_work = args.seeds * args.horizon, args.numpy_seeds * args.horizon
    rows = [
        ("JAX compile + first call", args.seeds, jax_first, jax_work / jax_first),
        ("JAX warm (best of 3)", args.seeds, jax_warm, jax_work / jax_warm),
        ("plain NumPy loop", args.numpy_seeds, numpy_time, numpy_work / numpy_time),
    ]
    print(f"LinTS: K={args.arms} arms, d={args.features} features, horizon {args.horizon}, σ={NOISE_SCALE}")
    print(f"machine: {os.cpu_count()} CPU cores, JAX backend {jax.default_backend()} "
          f"({jax.devices()[0].device_kind}), x64 {jax.config.jax_enable_x64}")
    print()
    print(f"{'implementation':<26}{'seeds':>7}{'seconds':>11}{'seed-rounds/s':>16}{'µs/seed-round':>15}")
    for name, num_seeds, secs, throughput in rows:
        print(f"{name:<26}{num_seeds:>7}{secs:>11.3f}{throughput:>16,.0f}{1e6 / throughput:>15.2f}")
    print()
    print(f"speed-up (JAX warm / NumPy throughput): {rows[1][3] / rows[2][3]:,.1f}x")
    print(f"mean final cumulative expected regret: JAX {jax_regret:.2f} ({args.seeds} seeds), "
          f"NumPy {np.mean(numpy_regrets):.2f} ({args.numpy_seeds} seeds)")


if __name__ == "__main__":
    main()
