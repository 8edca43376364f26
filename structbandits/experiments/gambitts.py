"""The GAMBITTS experiments of the seed's section 6 and appendix E, at configurable size.

Each built-in experiment is a set of mHealth environments (``envs.mhealth``) and agent factories
(env → Policy), run by the generic runner (``experiments.runner.run_experiment``); nothing here
needs its own loop. ``gambitts_experiment(name)`` builds one; ``run_gambitts_experiment`` runs it
and optionally saves a results folder (``experiments.results.save_results``).

=============================  =========================================================================
name                           what varies (defaults: K = 5 prompts, noise level 0, horizon 1000, 250 runs)
=============================  =========================================================================
gambitts-illustrative          1-D optimism model (section 6.1): po-, ens-po- and foGAMBITTS, StdTS, StdTS:Contextual
gambitts-misspecification      1-D optimism model; po/ens-po/fo agents on another style (section 6.2): encouragement
                               (r = −0.96 with optimism in the seed's Table 1 and the synthetic database),
                               severity (0.79), clarity (0.18), formality (−0.10); the description states
                               the correlations of the database it runs on (``style_correlations``)
gambitts-arms                  3-D model, K in {3, 5, 15, 30, 40} (section 6.3)
gambitts-noise                 3-D model, the five reference noise levels (appendix E.1)
gambitts-nonlinear             MLP outcome model, five noise levels (appendix E.2)
gambitts-simulator-draws       3-D model; po / ens-po agents with {15, 50, 100, 500, all} generator draws per
                               cell from a 1000-row database (appendix E.3)
gambitts-dimension             20-style linear model; agents on d in {3, 5, 10, 15, 20} styles, one per
                               correlation cluster (appendix E.4)
=============================  =========================================================================

Agents get the reference's priors and hyperparameters (``agents.gambitts``, ``agents.ens_gambitts``,
``agents.standard_ts``); ensembles perturb with the environment's noise sd. The agent factories
(``fo_agent``, ``po_agent``, ``ens_po_agent``, ``ens_fo_agent``, ``stdts_agent``,
``optional_prompting_agent``) are the pieces a config registry can name.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform

from structbandits.agents.ens_gambitts import ens_fo_gambitts, ens_po_gambitts
from structbandits.agents.gambitts import fo_gambitts, optional_prompting, po_gambitts
from structbandits.agents.protocol import Policy
from structbandits.agents.standard_ts import standard_ts
from structbandits.envs.mhealth import mhealth_bandit, style_index
from structbandits.envs.protocol import Environment
from structbandits.errors import ValidationError, check_integer
from structbandits.experiments.results import save_results
from structbandits.experiments.runner import run_experiment
from structbandits.runtime import ensure_configured

__all__ = [
    "EXPERIMENTS",
    "GRIDS",
    "GambittsExperiment",
    "RESPONSE_DB",
    "clustered_styles",
    "ens_fo_agent",
    "ens_po_agent",
    "fo_agent",
    "gambitts_experiment",
    "optional_prompting_agent",
    "po_agent",
    "run_gambitts_experiment",
    "stdts_agent",
    "style_correlations",
]

AgentFactory = Callable[[Environment], Policy]


def _params(env: Environment) -> dict:
    style_index(env, [])  # validates that env is an mHealth environment
    return env.model.params


def _styles(env: Environment, styles: Sequence[str] | None) -> tuple[int, ...]:
    return style_index(env, _params(env)["reward_styles"] if styles is None else styles)


def _prompts(env: Environment) -> int:
    return _params(env)["num_prompts"]


def fo_agent(env: Environment, styles: Sequence[str] | None = None, propensity_draws: int = 100, **options) -> Policy:
    """foGAMBITTS on ``styles`` (default: the environment's reward styles, i.e. well specified)."""
    return fo_gambitts(_prompts(env), _params(env)["num_cells"], _styles(env, styles),
                       propensity_draws=propensity_draws, **options)


def po_agent(env: Environment, styles: Sequence[str] | None = None, num_draws: int | None = None,
             propensity_draws: int = 100, **options) -> Policy:
    """poGAMBITTS with the environment's database rows as generator draws (``num_draws`` per cell)."""
    p = _params(env)
    return po_gambitts(p["treatment_draws"], _styles(env, styles), treatment_counts=p["treatment_counts"],
                       num_draws=num_draws, propensity_draws=propensity_draws, **options)


def ens_po_agent(env: Environment, styles: Sequence[str] | None = None, num_draws: int | None = None,
                 propensity_draws: int = 100, **options) -> Policy:
    """ens-poGAMBITTS, perturbation sd = the environment's noise sd."""
    p = _params(env)
    options.setdefault("perturbation_scale", p["noise_scale"])
    return ens_po_gambitts(p["treatment_draws"], _styles(env, styles), treatment_counts=p["treatment_counts"],
                           num_draws=num_draws, propensity_draws=propensity_draws, **options)


def ens_fo_agent(env: Environment, styles: Sequence[str] | None = None, propensity_draws: int = 100,
                 **options) -> Policy:
    """ens-foGAMBITTS, perturbation sd = the environment's noise sd."""
    p = _params(env)
    options.setdefault("perturbation_scale", p["noise_scale"])
    return ens_fo_gambitts(_prompts(env), p["num_cells"], _styles(env, styles), propensity_draws=propensity_draws,
                           **options)


def stdts_agent(env: Environment, contextual: bool = False, propensity_draws: int = 100, **options) -> Policy:
    """Standard NIG Thompson sampling over the environment's actions (per context cell if ``contextual``)."""
    cells = _params(env)["num_cells"] if contextual else None
    return standard_ts(env.num_actions, num_cells=cells, propensity_draws=propensity_draws, **options)


def optional_prompting_agent(env: Environment, prompter: str = "po", propensity_draws: int = 100) -> Policy:
    """A contextual NIG gate (send / don't send) in front of a "po" or "fo" GAMBITTS prompter."""
    p = _params(env)
    if not p["optional_prompting"]:
        raise ValidationError("env: optional prompting needs an environment built with no_message_outcome")
    factories = {"po": po_agent, "fo": fo_agent}
    if prompter not in factories:
        raise ValidationError(f"prompter: expected one of {sorted(factories)}, got {prompter!r}")
    gate = standard_ts(2, num_cells=p["num_cells"], propensity_draws=propensity_draws)
    return optional_prompting(gate, factories[prompter](env, propensity_draws=propensity_draws))


def _offered_rows(env: Environment) -> np.ndarray:
    """(rows, S) the database rows of the environment's offered prompts, every context cell."""
    p = _params(env)
    draws = np.asarray(p["treatment_draws"])
    return draws[np.arange(draws.shape[2]) < np.asarray(p["treatment_counts"])[..., None]]


def style_correlations(env: Environment, reference: str = "optimism") -> dict[str, float]:
    """Pearson correlation of every style with ``reference`` over the offered prompts' database rows
    (what section 6.2's misspecified agents see: on the synthetic database the seed's Table 1)."""
    styles = list(_params(env)["styles"])
    if reference not in styles:
        raise ValidationError(f"reference: expected one of the environment's styles {styles}, got {reference!r}")
    correlation = np.corrcoef(_offered_rows(env).T)[styles.index(reference)]
    return {style: float(r) for style, r in zip(styles, correlation) if style != reference}


def clustered_styles(env: Environment, num_styles: int, seed: int = 0) -> tuple[str, ...]:
    """``num_styles`` styles, one drawn at random from each of as many clusters of the database's styles.

    Clusters: average-linkage hierarchical clustering on 1 − |correlation| of the offered prompts'
    database rows (the reference used k-means on the correlations; this is deterministic given ``seed``).
    """
    p = _params(env)
    k = check_integer("num_styles", num_styles, minimum=1, maximum=len(p["styles"]))
    distance = 1.0 - np.abs(np.corrcoef(_offered_rows(env).T))
    np.fill_diagonal(distance, 0.0)
    labels = fcluster(linkage(squareform(distance, checks=False), "average"), k, criterion="maxclust")
    rng = np.random.default_rng(seed)
    chosen = [p["styles"][rng.choice(np.flatnonzero(labels == label))] for label in np.unique(labels)]
    return tuple(sorted(chosen, key=p["styles"].index))


class GambittsExperiment(NamedTuple):
    """A built-in experiment: ``envs`` name → Environment, ``agents`` name → factory(env) → Policy."""

    name: str
    description: str
    envs: dict[str, Environment]
    agents: dict[str, AgentFactory]


def _core_agents(propensity_draws: int, ensemble: bool = True) -> dict[str, AgentFactory]:
    agents: dict[str, AgentFactory] = {
        "poGAMBITTS": lambda env: po_agent(env, propensity_draws=propensity_draws),
        "foGAMBITTS": lambda env: fo_agent(env, propensity_draws=propensity_draws),
        "StdTS": lambda env: stdts_agent(env, propensity_draws=propensity_draws),
    }
    if ensemble:
        agents["ens-poGAMBITTS"] = lambda env: ens_po_agent(env, propensity_draws=propensity_draws)
    return agents


def _illustrative(m: int, values=None, bandit=mhealth_bandit):
    env = bandit("linear-1d", 5)
    agents = _core_agents(m)  # the authors' 1-D runs: po, ens-po and fo on the true style, both baselines
    agents["StdTS:Contextual"] = lambda env: stdts_agent(env, contextual=True, propensity_draws=m)
    return "1-D optimism outcome model (seed section 6.1)", {"linear-1d": env}, agents


_MISSPECIFIED_STYLES = ("encouragement", "severity", "clarity", "formality")


def _misspecification(m: int, values=None, bandit=mhealth_bandit):
    env = bandit("linear-1d", 5)
    agents: dict[str, AgentFactory] = {"StdTS": lambda env: stdts_agent(env, propensity_draws=m)}
    correlations = style_correlations(env)
    stated = ", ".join(f"{style} {correlations[style]:+.2f}" for style in _MISSPECIFIED_STYLES)
    for style in ("optimism",) + _MISSPECIFIED_STYLES:  # as the authors' 1-D runs
        agents[f"poGAMBITTS:{style}"] = lambda env, s=style: po_agent(env, [s], propensity_draws=m)
        agents[f"ens-poGAMBITTS:{style}"] = lambda env, s=style: ens_po_agent(env, [s], propensity_draws=m)
        agents[f"foGAMBITTS:{style}"] = lambda env, s=style: fo_agent(env, [s], propensity_draws=m)
    return (f"1-D optimism outcome, agents on another style (seed section 6.2); correlation with optimism in "
            f"this database's offered messages: {stated}"), {"linear-1d": env}, agents


def _arms(m: int, values=(3, 5, 15, 30, 40), bandit=mhealth_bandit):
    envs = {f"linear-3d-K{k}": bandit("linear-3d", k) for k in values}
    return "3-D outcome model, K prompts (seed section 6.3)", envs, _core_agents(m)


def _noise(m: int, values=range(5), bandit=mhealth_bandit):
    envs = {f"linear-3d-sd{level}": bandit("linear-3d", 5, noise_level=level) for level in values}
    return "3-D outcome model, reference noise levels (seed appendix E.1)", envs, _core_agents(m)


def _nonlinear(m: int, values=range(5), bandit=mhealth_bandit):
    envs = {f"mlp-3d-sd{level}": bandit("mlp-3d", 5, noise_level=level) for level in values}
    return "MLP outcome model, reference noise levels (seed appendix E.2)", envs, _core_agents(m)


def _simulator_draws(m: int, values=None, bandit=mhealth_bandit):
    # 1000 offline draws per cell: more than the shipped LLM database holds, so the synthetic one.
    env = mhealth_bandit("linear-3d", 5, response_db="synthetic", samples_per_cell=1000)
    agents: dict[str, AgentFactory] = {"StdTS": lambda env: stdts_agent(env, propensity_draws=m)}
    for n in (15, 50, 100, 500, None):
        label = "all" if n is None else str(n)
        agents[f"poGAMBITTS:n={label}"] = lambda env, n=n: po_agent(env, num_draws=n, propensity_draws=m)
        agents[f"ens-poGAMBITTS:n={label}"] = lambda env, n=n: ens_po_agent(env, num_draws=n, propensity_draws=m)
    return "3-D outcome model, generator draws per cell available offline (seed appendix E.3)", {"linear-3d": env}, agents


def _dimension(m: int, values=(3, 5, 10, 15, 20), bandit=mhealth_bandit):
    env = bandit("linear-full", 5)
    agents: dict[str, AgentFactory] = {"StdTS": lambda env: stdts_agent(env, propensity_draws=m)}
    for d in values:
        styles = clustered_styles(env, d)
        agents[f"poGAMBITTS:d={d}"] = lambda env, s=styles: po_agent(env, s, propensity_draws=m)
        agents[f"foGAMBITTS:d={d}"] = lambda env, s=styles: fo_agent(env, s, propensity_draws=m)
        agents[f"ens-poGAMBITTS:d={d}"] = lambda env, s=styles: ens_po_agent(env, s, propensity_draws=m)
    return "20-style linear outcome model, agents on d styles (seed appendix E.4)", {"linear-full": env}, agents


def _optional_prompting(m: int, values=None, bandit=mhealth_bandit):
    best_per_cell = bandit("linear-3d", 5).model.params["expected_outcomes"].max(axis=0)
    levels = {"between": float(np.median(best_per_cell)), "below": float(best_per_cell.min()) - 1.0}
    envs = {f"linear-3d-nomsg-{label}": bandit("linear-3d", 5, no_message_outcome=value)
            for label, value in levels.items()}
    agents: dict[str, AgentFactory] = {
        "optional:poGAMBITTS": lambda env: optional_prompting_agent(env, "po", propensity_draws=m),
        "optional:foGAMBITTS": lambda env: optional_prompting_agent(env, "fo", propensity_draws=m),
        "StdTS": lambda env: stdts_agent(env, propensity_draws=m),
        "StdTS:Contextual": lambda env: stdts_agent(env, contextual=True, propensity_draws=m),
    }
    return ("3-D outcome model with a send-nothing action (seed appendix A): its outcome lies between the "
            "cells' best prompts, or below every cell's best"), envs, agents


EXPERIMENTS: dict[str, Callable[..., tuple]] = {
    "gambitts-illustrative": _illustrative,
    "gambitts-misspecification": _misspecification,
    "gambitts-arms": _arms,
    "gambitts-noise": _noise,
    "gambitts-nonlinear": _nonlinear,
    "gambitts-simulator-draws": _simulator_draws,
    "gambitts-dimension": _dimension,
    "gambitts-optional-prompting": _optional_prompting,
}


# The varying values of the experiments with a grid, in order (a subset of them goes to ``grid``).
GRIDS: dict[str, tuple] = {
    "gambitts-arms": (3, 5, 15, 30, 40),
    "gambitts-noise": (0, 1, 2, 3, 4),
    "gambitts-nonlinear": (0, 1, 2, 3, 4),
    "gambitts-dimension": (3, 5, 10, 15, 20),
}


# The response database the experiments run on by default: the paper-calibrated synthetic one (the seed's
# Table 1 style correlations, e.g. encouragement -0.96 and severity 0.79 with optimism), 1000 messages per
# (prompt, context) cell as the seed's simulator draws from. "llm" is the shipped SmolLM2 database (2 per
# cell; see docs/gambitts.md for what it can and cannot test). gambitts-simulator-draws always uses the
# synthetic database: its design needs 1000 draws per cell.
RESPONSE_DB = "synthetic"
SYNTHETIC_SAMPLES_PER_CELL = 1000


def _bandit_factory(response_db) -> Callable[..., Environment]:
    if isinstance(response_db, str) and response_db == "synthetic":
        return partial(mhealth_bandit, response_db="synthetic", samples_per_cell=SYNTHETIC_SAMPLES_PER_CELL)
    if isinstance(response_db, (str, Path)) and str(response_db) != "":
        return partial(mhealth_bandit, response_db=response_db if str(response_db) == "llm" else str(response_db))
    raise ValidationError(f"response_db: expected \"synthetic\", \"llm\" or the path of a response database, "
                          f"got {response_db!r}")


def gambitts_experiment(name: str, *, propensity_draws: int = 100, agents: Sequence[str] | None = None,
                        grid: Sequence | None = None, response_db: str | Path = RESPONSE_DB) -> GambittsExperiment:
    """Build the environments and agent factories of a built-in experiment (``EXPERIMENTS``).

    ``agents`` keeps only the named agents (default all); ``propensity_draws`` is every agent's M;
    ``grid`` keeps only these values of the experiment's grid (``GRIDS[name]``: K, noise level or d;
    default all); ``response_db`` is the messages' database: "synthetic" (default, ``RESPONSE_DB``:
    paper-calibrated, 1000 per cell), "llm" (the shipped SmolLM2 messages) or a path
    (``data.mhealth.load_response_db``).
    """
    if name not in EXPERIMENTS:
        raise ValidationError(f"name: expected one of {sorted(EXPERIMENTS)}, got {name!r}")
    m = check_integer("propensity_draws", propensity_draws, minimum=0)
    bandit = _bandit_factory(response_db)
    if name == "gambitts-simulator-draws" and not (isinstance(response_db, str) and response_db == "synthetic"):
        raise ValidationError(f"response_db: gambitts-simulator-draws needs 1000 messages per cell (the synthetic "
                              f"database), got {response_db!r}")
    if grid is None:
        description, envs, factories = EXPERIMENTS[name](m, bandit=bandit)
    else:
        if name not in GRIDS:
            raise ValidationError(f"grid: {name} has no grid; the experiments with one are {sorted(GRIDS)}")
        grid = tuple(grid)
        unknown = [value for value in grid if value not in GRIDS[name]]
        if not grid or unknown:
            raise ValidationError(f"grid: expected a non-empty subset of {list(GRIDS[name])} for {name}, got {list(grid)}")
        description, envs, factories = EXPERIMENTS[name](m, tuple(sorted(set(grid), key=GRIDS[name].index)),
                                                         bandit=bandit)
    if agents is not None:
        unknown = sorted(set(agents) - set(factories))
        if unknown:
            raise ValidationError(f"agents: {name} has no agent(s) {unknown}; it has {sorted(factories)}")
        factories = {a: factories[a] for a in agents}
    return GambittsExperiment(name, description, envs, factories)


def run_gambitts_experiment(
    name: str,
    runs: int = 250,
    horizon: int = 1000,
    out: str | Path | None = None,
    progress: bool = True,
    *,
    seed: int = 0,
    seed_batch: int | None = None,
    propensity_draws: int = 100,
    agents: Sequence[str] | None = None,
    grid: Sequence | None = None,
    response_db: str | Path = RESPONSE_DB,
) -> pd.DataFrame:
    """Run a built-in GAMBITTS experiment with the generic runner; save a results folder to ``out`` if given.

    ``agents``, ``grid`` and ``response_db`` as in ``gambitts_experiment``. Returns the tidy results (``run_experiment``'s
    columns; ``cumulative_regret`` is the pseudo-regret).
    """
    ensure_configured()
    experiment = gambitts_experiment(name, propensity_draws=propensity_draws, agents=agents, grid=grid,
                                     response_db=response_db)
    start = time.perf_counter()
    results = run_experiment(experiment.agents, experiment.envs, horizon=horizon, num_seeds=runs, seed=seed,
                             seed_batch=seed_batch, progress=progress)
    wall = time.perf_counter() - start
    if out is not None:
        config = {"name": name, "description": experiment.description, "horizon": horizon, "seeds": runs,
                  "seed": seed, "propensity_draws": propensity_draws, "grid": None if grid is None else list(grid),
                  "response_db": str(response_db),
                  "agents": list(experiment.agents),
                  "envs": list(experiment.envs)}
        save_results(results, out, config=config, wall_time_s=round(wall, 2), title=name)
    return results
