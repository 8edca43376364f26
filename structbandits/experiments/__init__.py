"""Running and summarising experiments: agents × environments × seeds, vmapped and scanned.

Belongs here: the runner, configs and their validation, results folders, summaries and plots.
Does not belong here: the agents, environments or posteriors themselves; this package only wires
them together and records what happened.

The names below are imported on first use (PEP 562), so importing the package (``structbandits list``
reading the built-in configs, reproductions and sweeps) does not load JAX.
"""

import sys
import types
from typing import TYPE_CHECKING, Any

from structbandits.lazy_exports import lazy_exports

_EXPORTS = {
    "decision_sensitivity": "decision_sensitivity",
    "ExperimentConfig": "config", "apply_overrides": "config", "build_components": "config",
    "builtin_configs": "config", "load_config": "config", "resolve_config": "config",
    "run_config": "pipeline", "plot_cumulative_regret": "plots", "render_report": "report",
    "save_results": "results", "summarize": "results",
    "Trajectory": "runner", "batched_simulator": "runner", "run_experiment": "runner", "seed_keys": "runner",
    "simulate_seed": "runner",
    "SweepResult": "sweep", "SweepSpec": "sweep", "load_sweep": "sweep", "run_sweep": "sweep",
}
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

if TYPE_CHECKING:  # what static tools see; at run time ``__getattr__`` imports each on first use
    from structbandits.experiments.config import (
        ExperimentConfig,
        apply_overrides,
        build_components,
        builtin_configs,
        load_config,
        resolve_config,
    )
    from structbandits.experiments.decision_sensitivity import decision_sensitivity
    from structbandits.experiments.pipeline import run_config
    from structbandits.experiments.plots import plot_cumulative_regret
    from structbandits.experiments.report import render_report
    from structbandits.experiments.results import save_results, summarize
    from structbandits.experiments.runner import Trajectory, batched_simulator, run_experiment, seed_keys, simulate_seed
    from structbandits.experiments.sweep import SweepResult, SweepSpec, load_sweep, run_sweep


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


class _Package(types.ModuleType):
    """``decision_sensitivity`` is both a submodule and the function it exports. Importing the submodule
    binds the module to the package's attribute; this keeps the function there instead, as the eager
    ``from ... import decision_sensitivity`` did (the submodule stays reachable through ``sys.modules``)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and _EXPORTS.get(name) == name and hasattr(value, name):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
