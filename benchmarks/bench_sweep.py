"""A prior-sensitivity sweep compiles once: 5 × 5 meTS prior grid (σ_ψ × σ0) against one cell alone.

The setting is the meTS paper's synthetic linear bandit (``mets-linear``: K = 100 arms, L = 3 effects,
d = 2, true Σ_Ψ = 3 I, Σ0 = I, σ = 1) with the agent's prior scales misspecified over a grid:
``agents.mets.effect_scale`` × ``agents.mets.action_scale``, 50 seeds × 1000 rounds per cell.

Three runs in this one process, each after ``jax.clear_caches()`` (so each compiles from scratch;
the persistent compilation cache is off):

1. one cell alone through ``run_sweep`` (compile + 50 seeds);
2. the 25-cell grid through ``run_sweep``: the cells differ only in value keys, so they form one
   program group, vmapped over cells × seeds in memory-bounded chunks;
3. (``--baseline``, on by default) the same 25 cells the way sweeps ran before hyperparameters were
   data: each cell its own freshly built policy, so its own compiled program (``run_experiment``
   per cell).

JAX's monitoring events count the compiled simulation programs (and all backend compiles, eager
operations included) and their backend seconds, so compile time is reported apart from the rest. Target of issue 20: run 2 ≤ 3 × run 1.

    .venv/bin/python benchmarks/bench_sweep.py                # full size (about 3-4 minutes idle)
    .venv/bin/python benchmarks/bench_sweep.py --seeds 5 --horizon 200 --no-baseline   # a quick look
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import structbandits

GRID = {"agents.mets.effect_scale": [0.5, 1.0, 1.7320508075688772, 3.0, 6.0],
        "agents.mets.action_scale": [0.25, 0.5, 1.0, 2.0, 4.0]}

BASE = """name = "bench-sweep"
horizon = {horizon}
seeds = {seeds}
seed = 0

[envs.mixed_effect]
kind = "mixed_effect"
num_actions = 100
num_effects = 3
num_features = 2
effect_scale = 1.7320508075688772
action_scale = 1.0
noise_scale = 1.0

[agents.mets]
kind = "mets"
"""


class CompileCounter:
    """Backend compiles from JAX's monitoring events: all of them (eager operations included) and those
    of the simulation program (``_simulate_batch``), with their backend seconds (tracing and lowering are
    left out: nested traces would count twice)."""

    def __init__(self):
        from jax import monitoring

        self.programs, self.simulations, self.seconds = 0, 0, 0.0
        monitoring.register_event_duration_secs_listener(self._on_duration)

    def _on_duration(self, name, seconds, fun_name="", **_):
        if name == "/jax/core/compile/backend_compile_duration":
            self.seconds += seconds
            self.programs += 1
            self.simulations += "_simulate_batch" in str(fun_name)

    def snapshot(self) -> tuple[int, int, float]:
        return self.programs, self.simulations, self.seconds


def measure(label: str, counter: CompileCounter, fn) -> dict:
    import jax

    from structbandits.experiments import sweep as sweep_module

    jax.clear_caches()
    sweep_module._COMPONENTS.clear()
    programs, simulations, seconds = counter.snapshot()
    start = time.perf_counter()
    fn()
    wall = time.perf_counter() - start
    row = {"run": label, "wall_s": wall, "compile_s": counter.seconds - seconds,
           "simulation_programs": counter.simulations - simulations, "programs": counter.programs - programs}
    print(f"{label:<36} wall {wall:6.1f} s  backend compile {row['compile_s']:5.1f} s  "
          f"simulation programs {row['simulation_programs']:3d}  (all programs {row['programs']:3d})", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--horizon", type=int, default=1000)
    parser.add_argument("--no-baseline", action="store_true", help="skip the one-program-per-cell run")
    args = parser.parse_args()
    structbandits.configure(compilation_cache=None)

    from structbandits.experiments import load_sweep, run_sweep
    from structbandits.experiments.config import apply_overrides, build_components, resolve_config
    from structbandits.experiments.runner import run_experiment

    counter = CompileCounter()
    work = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    config = work / "base.toml"
    config.write_text(BASE.format(horizon=args.horizon, seeds=args.seeds))
    grid = [f"{key}={','.join(map(str, values))}" for key, values in GRID.items()]
    one_cell = [f"{key}={values[2]}" for key, values in GRID.items()]
    print(f"meTS K=100 L=3 d=2, {args.seeds} seeds x {args.horizon} rounds per cell; grid 5 x 5 "
          f"({', '.join(GRID)})")

    single = measure("one cell (sweep of 1)", counter,
                     lambda: run_sweep(load_sweep(config, grid=one_cell), work / "one", progress=False))
    grid_row = measure("25 cells (one program group)", counter,
                       lambda: run_sweep(load_sweep(config, grid=grid), work / "grid", progress=False))
    rows = [single, grid_row]
    if not args.no_baseline:
        def per_cell_programs():
            spec = load_sweep(config, grid=grid)
            for values in spec.cells():
                cell = resolve_config(apply_overrides(spec.base, spec.overrides(values)))
                envs, agents = build_components(cell)
                run_experiment(agents, envs, horizon=cell.horizon, num_seeds=cell.seeds, seed=cell.seed,
                               progress=False)

        rows.append(measure("25 cells, one program each (before)", counter, per_cell_programs))
    print(f"\n25-cell grid / one cell: {grid_row['wall_s'] / single['wall_s']:.2f}x wall "
          f"({grid_row['simulation_programs']} vs {single['simulation_programs']} simulation programs); target <= 3x")
    if not args.no_baseline:
        print(f"one program per cell / one program group: {rows[2]['wall_s'] / grid_row['wall_s']:.2f}x wall")


if __name__ == "__main__":
    main()
