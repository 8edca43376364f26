"""Paper reproductions behind ``structbandits reproduce NAME``: one registry, one calling convention.

Each entry knows its full (paper) size and a quick size for CI. Its ``run`` writes everything to the
results folder and returns the summary table the command prints; ``run_reproduction`` then adds
``reproduction.json`` (name, size, wall time, library versions) and ``report.html``. A new reproduction is one
``register(Reproduction(...))`` call next to the code it runs; the CLI needs no change.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, NamedTuple

import pandas as pd

from structbandits.errors import ValidationError

__all__ = ["REPRODUCTIONS", "Reproduction", "ReproductionOutcome", "register", "run_reproduction"]


class ReproductionOutcome(NamedTuple):
    """What a reproduction hands back: the table to print and the measured wall time in seconds."""

    summary: pd.DataFrame
    wall_s: float


class Reproduction(NamedTuple):
    """A named reproduction.

    ``run(out, seeds, horizon, progress) -> summary`` writes its tidy results, summary and figures to
    ``out`` and returns the summary; ``quick_run`` (same signature), where given, is what ``--quick``
    runs instead (e.g. the ends of a grid only). With ``takes_response_db`` both also take a keyword
    ``response_db`` (the GAMBITTS message database: "synthetic", "llm" or a path). ``horizon`` is None
    for figures whose horizon is part of the design (it is then not configurable and
    ``default_horizon`` is None too).
    """

    name: str
    description: str
    run: Callable[[Path, int, int | None, bool], pd.DataFrame]
    default_seeds: int
    quick_seeds: int
    default_horizon: int | None = None
    quick_horizon: int | None = None
    quick_run: Callable[[Path, int, int | None, bool], pd.DataFrame] | None = None
    takes_response_db: bool = False


REPRODUCTIONS: dict[str, Reproduction] = {}


def register(reproduction: Reproduction) -> Reproduction:
    """Add ``reproduction`` to the registry (a name may be registered once)."""
    if reproduction.name in REPRODUCTIONS:
        raise ValueError(f"reproduction {reproduction.name!r} is registered twice")
    REPRODUCTIONS[reproduction.name] = reproduction
    return reproduction


def run_reproduction(name: str, out: str | Path, *, seeds: int | None = None, horizon: int | None = None,
                     quick: bool = False, progress: bool = True, response_db: str | Path | None = None) -> ReproductionOutcome:
    """Run the reproduction ``name`` into the folder ``out``.

    ``seeds`` and ``horizon`` default to the full size, or to the quick size with ``quick=True``.
    ``out`` must be a new or an empty folder (``pipeline.check_output_dir``), checked before anything runs.
    ``response_db`` ("synthetic", "llm" or a path; default the reproduction's own, the synthetic database)
    is for the GAMBITTS reproductions only.
    """
    from structbandits.experiments.pipeline import check_output_dir  # not at import: `structbandits list` reads
    from structbandits.runtime import ensure_configured              # REPRODUCTIONS without loading JAX

    ensure_configured()
    check_output_dir(out, "out")
    if name not in REPRODUCTIONS:
        raise ValidationError(f"name: expected one of {', '.join(REPRODUCTIONS)}, got {name!r}")
    entry = REPRODUCTIONS[name]
    if response_db is not None and not entry.takes_response_db:
        raise ValidationError(f"response_db: only the GAMBITTS reproductions take a response database; {name} does not")
    seeds = seeds if seeds is not None else (entry.quick_seeds if quick else entry.default_seeds)
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValidationError(f"seeds: expected an integer >= 1, got {seeds!r}")
    if entry.default_horizon is None:
        if horizon is not None:
            raise ValidationError(f"horizon: {name} fixes its horizon; expected no --horizon, got {horizon!r}")
    else:
        horizon = horizon if horizon is not None else (entry.quick_horizon if quick else entry.default_horizon)
        if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
            raise ValidationError(f"horizon: expected an integer >= 1, got {horizon!r}")
    from structbandits.experiments.report import render_report
    from structbandits.experiments.results import library_versions

    folder = Path(out)
    start = time.perf_counter()
    run = entry.quick_run if quick and entry.quick_run is not None else entry.run
    summary = run(folder, seeds, horizon, progress, **({} if response_db is None else {"response_db": response_db}))
    wall = time.perf_counter() - start
    folder.mkdir(parents=True, exist_ok=True)
    record = {"reproduction": name, "description": entry.description, "quick": quick, "seeds": seeds,
              "horizon": horizon, **({} if response_db is None else {"response_db": str(response_db)}),
              "wall_time_s": round(wall, 2), "versions": library_versions(),
              "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    (folder / "reproduction.json").write_text(json.dumps(record, indent=2) + "\n")
    render_report(folder)
    return ReproductionOutcome(summary, wall)


def _builtin_config(config: str) -> Callable[[Path, int, int | None, bool], pd.DataFrame]:
    """A built-in experiment config (``experiments/configs``) at the requested seeds and horizon."""
    def run(out: Path, seeds: int, horizon: int | None, progress: bool) -> pd.DataFrame:
        from structbandits.experiments.pipeline import run_config
        from structbandits.experiments.results import summarize

        results, _ = run_config(config, [f"seeds={seeds}", f"horizon={horizon}"], out, progress=progress)
        return summarize(results)

    return run


def _ermab(figure: str) -> Callable[[Path, int, int | None, bool], pd.DataFrame]:
    def run(out: Path, seeds: int, horizon: int | None, progress: bool) -> pd.DataFrame:
        from structbandits.experiments.restless import run_ermab_figure, summarise_restless

        return summarise_restless(run_ermab_figure(figure, seeds=seeds, out=out, progress=progress))

    return run


def _restless_learning(out: Path, seeds: int, horizon: int | None, progress: bool) -> pd.DataFrame:
    from structbandits.experiments.restless_learning import reproduce_restless_learning

    return reproduce_restless_learning(out, seeds, horizon, progress)


# ``reproduce --quick`` runs the ends of these experiments' grids (``experiments.gambitts.GRIDS``): every
# cell of a grid is the same code with another K, d or noise level, and each shape (K, d) or environment
# is a program of its own, so the whole grid compiled 16-20 programs (80-94 s cold on an idle 2-core
# machine) where the ends check the same path. The full runs are unchanged.
_QUICK_GAMBITTS_GRIDS = {
    "gambitts-arms": (3, 40),
    "gambitts-noise": (0, 4),
    "gambitts-nonlinear": (0, 4),
    "gambitts-dimension": (3, 20),
}


def _gambitts(name: str, grid: tuple | None = None) -> Callable[..., pd.DataFrame]:
    def run(out: Path, seeds: int, horizon: int | None, progress: bool, response_db=None) -> pd.DataFrame:
        from structbandits.experiments.gambitts import RESPONSE_DB, run_gambitts_experiment
        from structbandits.experiments.results import summarize

        return summarize(run_gambitts_experiment(name, runs=seeds, horizon=horizon, out=out, progress=progress,
                                                 grid=grid, response_db=RESPONSE_DB if response_db is None else response_db))

    return run


for _name, _config, _description in (
    ("mets-linear", "mets-linear", "meTS section 5, linear synthetic: meTS, meTS-factored, HierTS, LinTS, LinUCB "
     "(K=100, L=3, d=2; 50 seeds, 5000 rounds)"),
    ("mets-logistic", "mets-logistic", "meTS section 5, logistic synthetic: the GLM agents (50 seeds, 5000 rounds)"),
    ("mets-movielens", "mets-movielens-linear", "meTS on MovieLens-100K, linear rewards: GMM vs genre structure "
     "(50 seeds, 5000 rounds)"),
    ("mets-movielens-logistic", "mets-movielens-logistic", "meTS on MovieLens-100K, logistic rewards: GMM vs genre "
     "structure (50 seeds, 5000 rounds)"),
):
    register(Reproduction(_name, _description, _builtin_config(_config), default_seeds=50, quick_seeds=2,
                          default_horizon=5000, quick_horizon=30))
register(Reproduction("ermab-fig3", "Equitable RMAB, Fig. 3: per-group outcomes of every policy on the synthetic "
                      "domain (25 seeds, H=20)", _ermab("fig3"), default_seeds=25, quick_seeds=2))
register(Reproduction("ermab-fig4", "Equitable RMAB, Fig. 4: Gini and utility of every policy on the synthetic, "
                      "maternal and diabetes domains", _ermab("fig4"), default_seeds=25, quick_seeds=1))
register(Reproduction(
    "ermab-learning", "Equitable RMAB with unknown dynamics: Thompson-sampled and certainty-equivalent learners "
    "(Dirichlet posteriors) vs the known-model Opt/MMR/MNW-EG on the three domains; --horizon = learning rounds, "
    "a multiple of 20 (episodes restart every 20 rounds)",
    _restless_learning,
    default_seeds=5, quick_seeds=1, default_horizon=200, quick_horizon=40))
def _drift(out: Path, seeds: int, horizon: int | None, progress: bool) -> pd.DataFrame:
    from structbandits.experiments.nonstationary import reproduce_drift

    return reproduce_drift(out, seeds, horizon, progress)


register(Reproduction(
    "drift", "Users who change: LinTS without and with forgetting (exponential, stabilised, window) on change points, "
    "smooth drift, habituation and a stationary control (5 arms, d=5; 20 seeds, 2000 rounds)",
    _drift, default_seeds=20, quick_seeds=2, default_horizon=2000, quick_horizon=30))
for _name, _description in {
    "gambitts-illustrative": "GAMBITTS section 6.1: the 1-D mHealth case, po/fo-GAMBITTS vs standard TS "
                             "(250 runs, 1000 rounds)",
    "gambitts-misspecification": "GAMBITTS: the agent models the wrong style dimension",
    "gambitts-arms": "GAMBITTS: K in {3, 5, 15, 30, 40} prompts",
    "gambitts-noise": "GAMBITTS: the reference's five outcome-noise levels",
    "gambitts-simulator-draws": "GAMBITTS: offline generator draws per cell in {15, 50, 100, 500, all}",
    "gambitts-dimension": "GAMBITTS: agent style dimension in {3, 5, 10, 15, 20}",
    "gambitts-nonlinear": "GAMBITTS: MLP outcome model with ensemble agents",
    "gambitts-optional-prompting": "GAMBITTS appendix A: a contextual gate decides whether to send any message",
}.items():
    _quick_grid = _QUICK_GAMBITTS_GRIDS.get(_name)
    register(Reproduction(_name, _description, _gambitts(_name), default_seeds=250, quick_seeds=2,
                          default_horizon=1000, quick_horizon=30,
                          quick_run=None if _quick_grid is None else _gambitts(_name, _quick_grid),
                          takes_response_db=True))
