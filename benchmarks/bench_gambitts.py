"""Cost of the GAMBITTS agents: per-round time of each agent, and the section 6.1 experiment end to end.

What it measures
----------------
* Per-round cost: each agent (foGAMBITTS, poGAMBITTS, ens-poGAMBITTS, ens-foGAMBITTS, StdTS,
  StdTS:Contextual, optional prompting) on the mHealth simulator (``--env``, K = 5 prompts),
  ``batched_simulator`` on ``--seeds`` seeds × ``--horizon`` rounds. The first call (compile + run) is
  timed separately from the best of ``--repeats`` warm calls; the per-round cost is the warm time
  divided by seeds × horizon (one agent decision, its propensity estimate with M = 100 draws, the
  update and the simulator's step).
* ``--full``: the seed's section 6.1 experiment as shipped (``gambitts-illustrative``: foGAMBITTS,
  poGAMBITTS, StdTS, StdTS:Contextual; ``--runs`` runs (250) × horizon 1000) through
  ``run_gambitts_experiment``, wall time including compilation, and the final pseudo-regrets.

The machine's load average is printed: on a shared 2-core machine other jobs inflate the times.

Run
---
    .venv/bin/python benchmarks/bench_gambitts.py [--seeds 50 --horizon 200 --repeats 2 --env linear-3d]
    .venv/bin/python benchmarks/bench_gambitts.py --full [--runs 250]
"""

from __future__ import annotations

import argparse
import os
import time

import jax

import structbandits
from structbandits.envs.mhealth import mhealth_bandit
from structbandits.experiments.gambitts import (
    ens_fo_agent,
    ens_po_agent,
    fo_agent,
    optional_prompting_agent,
    po_agent,
    run_gambitts_experiment,
    stdts_agent,
)
from structbandits.experiments.results import summarize
from structbandits.experiments.runner import batched_simulator, seed_keys

AGENTS = {
    "poGAMBITTS": po_agent,
    "foGAMBITTS": fo_agent,
    "ens-poGAMBITTS": ens_po_agent,
    "ens-foGAMBITTS": ens_fo_agent,
    "StdTS": stdts_agent,
    "StdTS:Contextual": lambda env: stdts_agent(env, contextual=True),
}


def per_round(env_name: str, seeds: int, horizon: int, repeats: int) -> None:
    env = mhealth_bandit(env_name, 5)
    optional_env = mhealth_bandit(env_name, 5, no_message_outcome=float(env.model.params["expected_outcomes"].mean()))
    jobs = [(name, factory(env), env) for name, factory in AGENTS.items()]
    jobs.append(("optional prompting (po)", optional_prompting_agent(optional_env), optional_env))
    keys = seed_keys(0, seeds)
    print(f"env {env_name}, K = 5, {seeds} seeds x {horizon} rounds, load {os.getloadavg()[0]:.2f}")
    print(f"{'agent':<26}{'compile+run s':>14}{'warm s':>9}{'us/round':>10}{'final regret':>14}")
    for name, policy, environment in jobs:
        simulate = batched_simulator(policy, environment, horizon)
        start = time.perf_counter()
        trajectory = jax.block_until_ready(simulate(keys))
        first = time.perf_counter() - start
        warm = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            jax.block_until_ready(simulate(keys))
            warm = min(warm, time.perf_counter() - start)
        regret = float(trajectory.expected_regret.sum(axis=1).mean())
        print(f"{name:<26}{first:>14.1f}{warm:>9.2f}{warm / (seeds * horizon) * 1e6:>10.1f}{regret:>14.2f}")


def full(runs: int) -> None:
    print(f"gambitts-illustrative, {runs} runs x 1000 rounds, load {os.getloadavg()[0]:.2f}")
    start = time.perf_counter()
    results = run_gambitts_experiment("gambitts-illustrative", runs=runs, horizon=1000, progress=False)
    wall = time.perf_counter() - start
    print(f"wall time {wall:.1f} s (compilation included), load {os.getloadavg()[0]:.2f}")
    print(summarize(results)[["agent", "final_cumulative_regret", "final_cumulative_regret_se"]].to_string(index=False))


def main() -> None:
    structbandits.configure()  # float64 and one LAPACK thread, as the CLI runs
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="linear-3d", choices=["linear-1d", "linear-3d", "mlp-3d", "linear-full"])
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--horizon", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--full", action="store_true", help="run the section 6.1 experiment at full size")
    parser.add_argument("--runs", type=int, default=250)
    args = parser.parse_args()
    if args.full:
        full(args.runs)
    else:
        per_round(args.env, args.seeds, args.horizon, args.repeats)


if __name__ == "__main__":
    main()
