"""Per-round cost of the logistic agents (meTS-GLM, HierTS-GLM, GLM-TS): per-arm refit vs whole-history refit.

What it measures
----------------
The environment is the ``mets-logistic`` experiment's (read from its built-in config: K = 100 arms,
L = 3 effects, d = 2, b ~ U[-1, 2], a pool of 100 contexts per seed, Bernoulli-logit rewards). Each
agent runs through the experiment runner's own program (``batched_simulator``: ``lax.scan`` over
rounds, ``vmap`` over seeds, one ``jit``) with ``history_size`` = the horizon, as the registry builds
them, in two versions measured side by side in this process:

- ``history`` (``refit="history"``, the code before issue 22, kept bit for bit): each update takes
  exactly 3 damped Newton steps over the whole shared buffer of ``history_size`` rows, other arms
  masked out, each step evaluating the derivatives once and the objective at 5 step sizes, then the
  pseudo-observations once: 19 passes over ``history_size`` rows per round, whatever the arm's data.
- ``per_arm`` (``refit="per_arm"``, the default): each arm's own rows deduplicated with counts, read in
  chunks of 64 up to the arm's high-water mark; a Newton that stops once the decrement is below
  √ε ≈ 1.5e-8 posterior sds (cap 20 steps), one pass per accepted step.

µs per seed-round = best warm wall time / (seeds × rounds); the first call (compile + run) is
reported apart. Part 1 is meTS-GLM at several horizons (history_size = horizon): the history path's
per-round cost grows with the horizon (a run is O(horizon²)), the per-arm path's does not. Part 2 is
the issue's target: the four agents of ``mets-logistic`` at its horizon (5000) with a reduced number
of seeds; the full experiment (50 seeds × 5000 rounds × 4 agents) is extrapolated from it, linearly
in seeds (said so in the output; the runner processes 25 seeds per batch, here fewer). As a floor,
linear meTS (``mets``, a closed-form rank-one update) on the same environment shows what the act,
the environment and the runner cost with no logistic refit at all. The final mean cumulative
expected regret of both paths is printed: same seeds, same posterior up to the Newton tolerance, so
they agree up to seed noise. There is no reference implementation to compare with here (the meTS
paper's code is a Python loop that refits with scikit-learn; not shipped).

Arithmetic lower bound (flops per seed-round)
---------------------------------------------
One logistic row evaluation (logit, sigmoid, softplus, gradient and Hessian terms) is about
4d + d² + 2 transcendentals ≈ 20 flops + 2 transcendentals for d = 2; call it ~60 flop-equivalents.

- per-arm refit: r_a distinct rows of the pulled arm (r_a <= P = 100 contexts in the pool, however
  many rounds), 1 slot-search pass (r_a·d compares) and p ≈ 3–4 Newton evaluations: ≈ 60 · r_a · p
  ≈ 24,000 flops at r_a = 100, p = 4; plus the meTS update of one arm, O((L·d)² + d³) ≈ 50.
- act + environment (the same for both paths and for linear meTS): one hierarchical draw, L·d + K·d
  = 206 normals, K·d² + (L·d)² ≈ 450 flops; the runner's K rewards (K sigmoids, K uniforms) and a
  context per arm from the pool (K indices): ~400 random numbers, each ~20 flops in threefry ≈ 8,000.
- so the per-arm path needs ≈ 3e4 flops per seed-round whatever the horizon: ~3 µs of arithmetic at
  an assumed 10 GFLOP/s, below which no implementation of this algorithm goes; what is measured above
  it is the compiled loops' overhead (nested while loops under vmap) and the act/environment part,
  which linear meTS's row shows.
- history refit: 19 passes × T rows × 60 ≈ 1.1e3 · T flops per round (the buffer has T = horizon
  rows from the first round on, masked): 5.7e6 at T = 5000, ~0.6 ms at 10 GFLOP/s; a run of T rounds
  ≈ 1.1e3 · T² flops, quadratic in the horizon.

GLM-TS sampling before / after (part 3, issue 22 item 3)
-------------------------------------------------------
GLM-TS's act drew each arm's Laplace posterior with ``jax.vmap(gaussian_sample)`` over ``split(key, K)``: K
triangular solves and K Cholesky mean solves a round (one LAPACK call per arm on CPU). It now draws all arms
through ``thompson.arm_draws`` (``conjugate.stacked_gaussian_draws``, a substitution vectorised over the arms)
from the same normals, so its actions are unchanged (printed). Part 3 times GLM-TS (``refit="per_arm"``)
before (``agents/glm.py`` as of ``bench_lints.SAMPLING_BEFORE``, loaded from git) and after, in this process, on
the logistic mixed-effect bandit with K in --sampling-arms, L = 3, d = --sampling-features, a pool of 100
contexts, over --sampling-horizon rounds (history_size = that horizon) and --seeds seeds. The refit of the pulled
arm is the same code on both sides, so the difference is the act's sampling; the two sides' warm calls are
interleaved (--repeats each, the best reported).

Run
---
    .venv/bin/python benchmarks/bench_glm.py [--horizons 500 2000 5000 --seeds 5 --repeats 2]
    .venv/bin/python benchmarks/bench_glm.py --part sampling [--sampling-arms 10 100 1000 --sampling-features 5]

On an accelerator it runs unchanged (JAX picks the device); the header prints the backend.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

import structbandits
from bench_lints import SAMPLING_BEFORE
from round_cost import before_after_header, before_after_row, module_at, time_before_after
from structbandits.agents import glm_ts, hier_ts_glm, mets, mets_glm
from structbandits.agents.protocol import Policy
from structbandits.envs import Environment, mixed_effect_bandit
from structbandits.experiments.config import load_config
from structbandits.experiments.runner import batched_simulator, seed_keys
from structbandits.models import marginal_action_prior

PRIOR = ("mixing", "effect_mean", "effect_cov", "action_cov")
AGENTS = ("mets-glm", "mets-glm-factored", "hierts-glm", "glmts")
FULL_SEEDS = 50


def experiment_env() -> tuple[Environment, int]:
    """The mets-logistic experiment's environment (from its built-in config) and its horizon."""
    raw = load_config("mets-logistic")
    table = {key: value for key, value in raw["envs"]["mixed_effect"].items() if key != "kind"}
    return mixed_effect_bandit(**table), int(raw["horizon"])


def build(agent: str, env: Environment, horizon: int, refit: str) -> Policy:
    """The experiment's agent given the environment's prior, as the registry builds it, with ``refit``."""
    params = env.model.params
    prior = [params[name] for name in PRIOR]
    if agent in ("mets-glm", "mets-glm-factored"):
        return mets_glm(*prior, history_size=horizon, factored=agent.endswith("factored"), refit=refit)
    if agent == "hierts-glm":
        return hier_ts_glm(*prior[1:], num_actions=env.num_actions, history_size=horizon, refit=refit)
    mean, cov = marginal_action_prior(*(jnp.asarray(p) for p in prior))
    return glm_ts(mean, cov, history_size=horizon, refit=refit)


def measure(policy: Policy, env: Environment, horizon: int, seeds: int, repeats: int) -> dict[str, float]:
    """First call (compile + run) seconds, best warm µs per seed-round, mean final regret."""
    simulate = batched_simulator(policy, env, horizon)
    keys = seed_keys(0, seeds)

    def call() -> tuple[float, float]:
        start = time.perf_counter()
        trajectory = jax.block_until_ready(simulate(keys))
        return time.perf_counter() - start, float(np.asarray(trajectory.expected_regret).sum(axis=1).mean())

    first, regret = call()
    warm = min(call()[0] for _ in range(repeats))
    return {"first_s": first, "us": 1e6 * warm / (seeds * horizon), "regret": regret}


def refit_report(policy: Policy, env: Environment, horizon: int, seeds: int) -> str:
    """Failed refits and dropped rows of the per-arm path (the final states; a second program)."""
    states, _ = batched_simulator(policy, env, horizon)(seed_keys(0, seeds), return_state=True)
    failed = np.asarray(states.failed_refits)
    rows = np.asarray(states.arm_rows.filled)
    return (f"failed refits {failed.sum()} of {failed.size * horizon}, dropped rows {int(np.sum(states.arm_rows.dropped))}, "
            f"distinct rows per arm: mean {rows.mean():.0f}, max {rows.max()}")


def row(label: str, old: dict[str, float], new: dict[str, float]) -> str:
    return (f"{label:>18}{old['us']:>11.1f}{new['us']:>11.1f}{old['us'] / new['us']:>8.1f}x"
            f"{old['first_s']:>9.1f}{new['first_s']:>9.1f}{old['regret']:>10.2f}{new['regret']:>10.2f}")


HEADER = (f"{'':>18}{'history':>11}{'per_arm':>11}{'ratio':>9}{'first s':>9}{'first s':>9}{'regret':>10}{'regret':>10}\n"
          f"{'':>18}{'µs':>11}{'µs':>11}{'':>9}{'history':>9}{'per_arm':>9}{'history':>10}{'per_arm':>10}")


def sampling_before_after(arms_list: list[int], features: int, horizon: int, seeds: int, repeats: int) -> None:
    """Part 3: GLM-TS µs per seed-round with per-arm solves (before) and stacked draws (after)."""
    before = module_at(SAMPLING_BEFORE, "structbandits/agents/glm.py", "glm_before")
    print(f"\npart 3: GLM-TS sampling, per-arm solves (before, {SAMPLING_BEFORE[:7]}) against stacked draws (after); "
          f"L=3, d={features}, {seeds} seeds, {horizon} rounds, load average {os.getloadavg()[0]:.1f}")
    if before is None:
        print(f"  before: not measured (no git history here to load agents/glm.py at {SAMPLING_BEFORE[:7]})")
    print(before_after_header(bound=False))
    keys = seed_keys(0, seeds)
    for arms in arms_list:
        env = mixed_effect_bandit(arms, 3, features, rewards="logistic")
        prior = marginal_action_prior(*(jnp.asarray(env.model.params[name]) for name in PRIOR))
        policies = {name: None if build_glm_ts is None else build_glm_ts(*prior, history_size=horizon)
                    for name, build_glm_ts in (("before", None if before is None else before.glm_ts), ("after", glm_ts))}
        print(f"{arms:>6}" + before_after_row(time_before_after(policies, env, horizon, keys, repeats)), flush=True)


def main() -> None:
    structbandits.configure()  # float64 and one LAPACK thread, as the CLI runs
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--horizons", type=int, nargs="+", default=[500, 2000, 5000], help="part 1 horizons")
    parser.add_argument("--seeds", type=int, default=5, help="seeds vmapped in one batch")
    parser.add_argument("--repeats", type=int, default=2, help="warm calls; the best is reported")
    parser.add_argument("--agents", nargs="+", default=list(AGENTS), choices=AGENTS, help="part 2 agents")
    parser.add_argument("--target-horizon", type=int, default=0, help="part 2 horizon (0: the experiment's, 5000)")
    parser.add_argument("--part", choices=["all", "refit", "sampling"], default="all",
                        help="parts 1-2 (refit), part 3 (GLM-TS sampling) or all")
    parser.add_argument("--sampling-arms", type=int, nargs="+", default=[10, 100, 1000], help="part 3 K")
    parser.add_argument("--sampling-features", type=int, default=5, help="part 3 d")
    parser.add_argument("--sampling-horizon", type=int, default=100, help="part 3 rounds (and history_size)")
    args = parser.parse_args()
    if args.part in ("all", "refit"):
        refit_parts(args)
    if args.part in ("all", "sampling"):
        sampling_before_after(args.sampling_arms, args.sampling_features, args.sampling_horizon, args.seeds,
                              args.repeats)


def refit_parts(args: argparse.Namespace) -> None:
    """Parts 1 and 2: per-arm refit against whole-history refit."""
    env, full_horizon = experiment_env()
    full_horizon = args.target_horizon or full_horizon
    seeds = args.seeds
    print(f"logistic agents, mets-logistic environment (K={env.num_actions}, pool of 100 contexts), {seeds} seeds, "
          f"history_size = horizon")
    print(f"machine: {os.cpu_count()} CPU cores, JAX {jax.__version__} on {jax.default_backend()} "
          f"({jax.devices()[0].device_kind}), x64 {jax.config.jax_enable_x64}")
    print("µs: per seed-round (best of warm calls); ratio: history / per_arm; regret: mean final cumulative expected\n")

    floor: Callable[[int], dict[str, float]] = lambda horizon: measure(
        mets(*(env.model.params[name] for name in PRIOR), 1.0), env, horizon, seeds, args.repeats)
    print("part 1: meTS-GLM, per-round cost against the horizon")
    print(HEADER)
    results: dict[tuple[str, int], tuple[dict[str, float], dict[str, float]]] = {}
    for horizon in args.horizons:
        old, new = (measure(build("mets-glm", env, horizon, refit), env, horizon, seeds, args.repeats)
                    for refit in ("history", "per_arm"))
        results["mets-glm", horizon] = old, new
        print(row(f"T = {horizon}", old, new), flush=True)
    base = floor(min(args.horizons))
    print(f"{'linear meTS floor':>18}{'':>11}{base['us']:>11.1f}   (no logistic refit: act + environment + runner)")
    low, high = min(args.horizons), max(args.horizons)
    if low < high:
        growth = [results["mets-glm", high][i]["us"] / results["mets-glm", low][i]["us"] for i in (0, 1)]
        print(f"  T {low} -> {high} ({high / low:.0f}x): history {growth[0]:.1f}x per round, per_arm {growth[1]:.2f}x")

    print(f"\npart 2: the mets-logistic agents at T = {full_horizon}, {seeds} seeds (target: >= 5x faster)")
    print(HEADER)
    totals = [0.0, 0.0]
    for agent in args.agents:
        if (agent, full_horizon) in results:
            old, new = results[agent, full_horizon]
        else:
            old, new = (measure(build(agent, env, full_horizon, refit), env, full_horizon, seeds, args.repeats)
                        for refit in ("history", "per_arm"))
        totals[0] += old["us"]
        totals[1] += new["us"]
        print(row(agent, old, new), flush=True)
        print(f"{'':>18}per_arm: {refit_report(build(agent, env, full_horizon, 'per_arm'), env, full_horizon, seeds)}")
    ratio = totals[0] / totals[1]
    full = FULL_SEEDS * full_horizon * 1e-6
    print(f"\nall {len(args.agents)} agents: history {totals[0]:.0f} µs, per_arm {totals[1]:.0f} µs per seed-round: "
          f"{ratio:.1f}x, {'met' if ratio >= 5 else 'NOT met'} (measured at {seeds} seeds in this process)")
    print(f"extrapolated to the full experiment ({FULL_SEEDS} seeds x {full_horizon} rounds, linear in seeds, "
          f"compile excluded): history {totals[0] * full / 60:.1f} min, per_arm {totals[1] * full / 60:.1f} min")


if __name__ == "__main__":
    main()
