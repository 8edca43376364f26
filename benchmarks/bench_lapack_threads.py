"""One BLAS thread against OpenBLAS's default for the LAPACK kernels behind JAX's CPU linear algebra.

What it measures (both settings in this process, alternating, so the machine's load hits both):

* a vmapped ``solve_triangular`` (``--seeds`` × p × p, 100 right-hand sides, the shape of a
  Thompson draw of p coefficients for every seed) and a vmapped Cholesky factorisation, for several p;
* poGAMBITTS on the 20-style mHealth simulator with d ∈ {3, 10} styles, ``--seeds`` seeds ×
  ``--horizon`` rounds, M = 100 propensity draws (the ``gambitts-dimension`` experiment's agent).

Times are the best of ``--repeats`` warm calls; the ratio default / one thread is printed per row.

Run
---
    .venv/bin/python benchmarks/bench_lapack_threads.py [--seeds 50 --horizon 200 --repeats 3]
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import solve_triangular

import structbandits
from structbandits.envs.mhealth import mhealth_bandit
from structbandits.experiments.gambitts import clustered_styles, po_agent
from structbandits.experiments.runner import batched_simulator, seed_keys
from structbandits.lapack_threads import limit_lapack_threads


def best_time(fn, args, repeats: int) -> float:
    jax.block_until_ready(fn(*args))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - start)
    return best


def compare(label: str, fn, args, repeats: int, default_threads: int) -> None:
    times = {}
    for threads in (default_threads, 1, default_threads, 1):  # alternate: load drifts hit both
        limit_lapack_threads(threads)
        times[threads] = min(times.get(threads, float("inf")), best_time(fn, args, repeats))
    limit_lapack_threads(1)
    ratio = times[default_threads] / times[1]
    print(f"{label:<44}{times[default_threads] * 1e3:>12.2f}{times[1] * 1e3:>12.2f}{ratio:>9.1f}x", flush=True)


def main() -> None:
    structbandits.configure()  # float64 and one LAPACK thread, as the CLI runs
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--horizon", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    default_threads = os.cpu_count() or 1
    print(f"{args.seeds} seeds; OpenBLAS default {default_threads} threads vs 1; load {os.getloadavg()[0]:.2f}")
    print(f"{'case':<44}{'default ms':>12}{'1 thread ms':>12}{'ratio':>10}")
    rng = np.random.default_rng(0)
    for p in (4, 8, 11, 16, 21):
        a = rng.normal(size=(args.seeds, p, p))
        precision = jnp.asarray(a @ a.transpose(0, 2, 1) + p * np.eye(p))
        chol = jnp.linalg.cholesky(precision)
        rhs = jnp.asarray(rng.normal(size=(args.seeds, p, 100)))
        solve = jax.jit(jax.vmap(lambda c, z: solve_triangular(c, z, lower=True, trans="T")))
        compare(f"solve_triangular {args.seeds} x {p}x{p}, 100 rhs", solve, (chol, rhs), args.repeats, default_threads)
        compare(f"cholesky {args.seeds} x {p}x{p}", jax.jit(jnp.linalg.cholesky), (precision,), args.repeats,
                default_threads)
    env = mhealth_bandit("linear-full", 5)
    keys = seed_keys(0, args.seeds)
    for d in (3, 10):
        simulate = batched_simulator(po_agent(env, clustered_styles(env, d), propensity_draws=100), env, args.horizon)
        compare(f"poGAMBITTS d={d}, {args.seeds} x {args.horizon} rounds", simulate, (keys,), args.repeats,
                default_threads)


if __name__ == "__main__":
    main()
