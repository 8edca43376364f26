"""From a config to a results folder: load, override, validate, build, simulate, save."""

from __future__ import annotations

import itertools
import re
import time
from datetime import datetime
from pathlib import Path

import pandas as pd

from structbandits.errors import ValidationError
from structbandits.experiments.config import apply_overrides, build_components, load_config, resolve_config
from structbandits.experiments.results import save_results
from structbandits.experiments.runner import run_experiment
from structbandits.runtime import ensure_configured

__all__ = ["check_output_dir", "default_output_dir", "remove_if_empty", "run_config"]


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


def check_output_dir(out: str | Path | None, argument: str = "out_dir", *, sweep: bool = False,
                     resume: bool = False) -> None:
    """Refuse a results folder that would overwrite something, before anything runs: an existing file,
    or a folder that is not empty (with ``resume``, a sweep folder is continued). ``argument`` names it
    in the error (``--out`` on the command line). The default folder, ``results/NAME-TIMESTAMP``, is
    created new by ``default_output_dir`` and needs no check; ``None`` passes."""
    if out is None:
        return
    out = Path(out)
    if out.is_dir():
        entries = {entry.name for entry in out.iterdir()}
        if sweep and resume and ("sweep.json" in entries or entries <= {"cells"}):
            return  # a sweep to continue (or one killed before it wrote its manifest)
        if sweep and resume:
            raise ValidationError(f"{argument}: {out} holds no sweep to resume (no sweep.json); expected a sweep "
                                  "folder, a new folder or an empty one")
        if sweep and "sweep.json" in entries:
            raise ValidationError(f"{argument}: {out} already holds a sweep; pass --resume to continue it or "
                                  "choose another folder")
        if entries:
            raise ValidationError(f"{argument}: {out} already exists and is not empty; expected a new or empty "
                                  "folder (choose another or remove it)")
        return
    if out.exists() or out.is_symlink():
        raise ValidationError(f"{argument}: {out} is an existing file; expected a new or empty folder")
    parent = next((folder for folder in out.parents if folder.exists()), None)
    if parent is not None and not parent.is_dir():
        raise ValidationError(f"{argument}: {out} is inside {parent}, which is a file; expected a folder path")


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
    ``ValidationError`` naming it; so is ``out_dir``, which must be new or empty (``check_output_dir``).
    """
    ensure_configured()
    check_output_dir(out_dir, "out_dir")
    config = resolve_config(apply_overrides(load_config(name_or_path), overrides or []))
    envs, agents = build_components(config)
    out = Path(out_dir) if out_dir is not None else default_output_dir(config.name)
    start = time.perf_counter()
    try:
        results = run_experiment(agents, envs, horizon=config.horizon, num_seeds=config.seeds, seed=config.seed,
                                 seed_batch=config.seed_batch, progress=progress, contexts=None)
    except BaseException:
        if out_dir is None:
            remove_if_empty(out)
        raise
    wall_time = time.perf_counter() - start
    save_results(results, out, config=config.to_dict(), wall_time_s=round(wall_time, 2), title=config.name)
    return results, out.resolve()
