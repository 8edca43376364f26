"""Running and summarising experiments: agents × environments × seeds, vmapped and scanned.

Belongs here: the runner, configs and their validation, results folders, summaries and plots.
Does not belong here: the agents, environments or posteriors themselves; this package only wires
them together and records what happened.
"""

from structbandits.experiments.decision_sensitivity import decision_sensitivity
from structbandits.experiments.config import (
    ExperimentConfig,
    apply_overrides,
    build_components,
    builtin_configs,
    load_config,
    resolve_config,
)
from structbandits.experiments.pipeline import run_config
from structbandits.experiments.plots import plot_cumulative_regret
from structbandits.experiments.report import render_report
from structbandits.experiments.results import save_results, summarize
from structbandits.experiments.runner import Trajectory, batched_simulator, run_experiment, seed_keys, simulate_seed
from structbandits.experiments.sweep import SweepResult, SweepSpec, load_sweep, run_sweep

__all__ = [
    "ExperimentConfig",
    "SweepResult",
    "SweepSpec",
    "Trajectory",
    "apply_overrides",
    "batched_simulator",
    "build_components",
    "decision_sensitivity",
    "builtin_configs",
    "load_config",
    "load_sweep",
    "plot_cumulative_regret",
    "render_report",
    "resolve_config",
    "run_config",
    "run_experiment",
    "run_sweep",
    "save_results",
    "seed_keys",
    "simulate_seed",
    "summarize",
]
