"""From a config to a results folder: load, override, validate, build, simulate, save."""

from __future__ import annotations

import itertools
import re
import time
from datetime import datetime
from pathlib import Path

import pandas as pd

from structbandits.experiments.config import apply_overrides, build_components, load_config, resolve_config
from structbandits.experiments.results import save_results
from structbandits.experiments.runner import run_experiment
from structbandits.runtime import ensure_configured

__all__ = ["default_output_dir", "remove_if_empty", "run_config"]


def default_output_dir(name: str) -> Path:
    """A new, empty folder ``results/<name>-<YYYYmmdd-HHMMSS>`` under the current directory, created here.

    Creating it is what claims it (``mkdir`` fails on an existing folder): when the name is taken, by
    an earlier run or by one started in the same second, ``-2``, ``-3``, ... is appended, so two runs
    never write into one folder. Path separators in ``name`` become ``-``.
    """
    safe_name = re.sub(r"[/\\]", "-", name)
    stem = f"{safe_name}-{datetime.now():%Y%m%d-%H%M%S}"
    root = Path("results")
    root.mkdir(parents=True, exist_ok=True)
    for attempt in itertools.count(1):
        folder = root / (stem if attempt == 1 else f"{stem}-{attempt}")
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        return folder
    raise AssertionError("unreachable")  # pragma: no cover


def remove_if_empty(folder: Path) -> None:
    """Undo ``default_output_dir`` for a run that wrote nothing: remove ``folder`` and then its parent
    (``results``) where they are empty; a non-empty folder is kept."""
    for path in (folder, folder.parent):
        try:
            path.rmdir()  # fails on a non-empty folder
        except OSError:
            return


def run_config(
    name_or_path: str | Path,
    overrides: list[str] | None = None,
    out_dir: str | Path | None = None,
    *,
    progress: bool = True,
) -> tuple[pd.DataFrame, Path]:
    """Run a built-in or TOML config with ``key=value`` overrides; returns (results, results folder).

    Everything is validated before the first simulation, so a bad key fails fast with a
    ``ValidationError`` naming it.
    """
    ensure_configured()
    config = resolve_config(apply_overrides(load_config(name_or_path), overrides or []))
    envs, agents = build_components(config)
    out = Path(out_dir) if out_dir is not None else default_output_dir(config.name)
    start = time.perf_counter()
    try:
        results = run_experiment(agents, envs, horizon=config.horizon, num_seeds=config.seeds, seed=config.seed,
                                 seed_batch=config.seed_batch, progress=progress)
    except BaseException:
        if out_dir is None:
            remove_if_empty(out)
        raise
    wall_time = time.perf_counter() - start
    save_results(results, out, config=config.to_dict(), wall_time_s=round(wall_time, 2), title=config.name)
    return results, out.resolve()
