"""mkdocs hook: the notebooks of ``notebooks/`` as pages of the site (rendered by mkdocs-jupyter).

The notebooks are committed without outputs and take minutes to execute, so the site does not execute
them. It renders, for each ``notebooks/NAME.ipynb``, an executed copy ``$STRUCTBANDITS_EXECUTED_NOTEBOOKS/
NAME.ipynb`` where one exists and is fresh (the same cells as the committed notebook, every code cell
executed, no error output) — CI's notebook tests write those copies, so the CI-built site shows the
plots at no extra cost — and otherwise the committed notebook, code and text without outputs.

The "Notebooks" section of the navigation lists whatever notebooks exist, so adding one needs no edit here.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

log = logging.getLogger("mkdocs.hooks.notebooks")
ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
EXECUTED_VARIABLE = "STRUCTBANDITS_EXECUTED_NOTEBOOKS"
SECTION = "Notebooks"


def _cells(path: Path) -> list[tuple[str, str]]:
    return [(cell["cell_type"], "".join(cell["source"])) for cell in json.loads(path.read_text())["cells"]]


def executed_copy(notebook: Path) -> Path | None:
    """The fresh executed copy of ``notebook``, or None (no folder, no copy, or a copy of other cells, not
    executed, or with an error)."""
    folder = os.environ.get(EXECUTED_VARIABLE)
    if not folder or not (Path(folder) / notebook.name).is_file():
        return None
    copy = Path(folder) / notebook.name
    cells = json.loads(copy.read_text())["cells"]
    code = [cell for cell in cells if cell["cell_type"] == "code"]
    if _cells(copy) != _cells(notebook):
        log.info("%s: the executed copy %s has other cells than the notebook; rendering without outputs",
                 notebook.name, copy)
        return None
    if any(cell.get("execution_count") is None for cell in code) or any(
            output.get("output_type") == "error" for cell in code for output in cell.get("outputs", [])):
        log.info("%s: the executed copy %s did not run to the end; rendering without outputs", notebook.name, copy)
        return None
    return copy


def on_config(config):
    """Fill the navigation's "Notebooks" section: its overview page, then every notebook, in name order."""
    for entry in config["nav"] or []:
        if isinstance(entry, dict) and SECTION in entry:
            entry[SECTION] = ["notebooks/index.md"] + [f"notebooks/{path.name}"
                                                        for path in sorted(NOTEBOOKS.glob("*.ipynb"))]
    return config


_staging: list[Path] = []


@event_priority(100)  # before mkdocs-jupyter's on_files, which turns .ipynb files into pages
def on_files(files, config):
    """Add ``notebooks/NAME.ipynb`` pages. mkdocs-jupyter reads a page's source at ``src_dir/src_uri``, so
    the chosen copies are staged in a temporary ``notebooks/`` folder (removed after the build)."""
    staging = Path(tempfile.mkdtemp(prefix="structbandits-docs-"))
    _staging.append(staging)
    (staging / "notebooks").mkdir()
    rendered = []
    for notebook in sorted(NOTEBOOKS.glob("*.ipynb")):
        source = executed_copy(notebook) or notebook
        rendered.append(f"{notebook.stem} ({'with' if source != notebook else 'without'} outputs)")
        shutil.copyfile(source, staging / "notebooks" / notebook.name)
        files.append(File(f"notebooks/{notebook.name}", src_dir=str(staging), dest_dir=config["site_dir"],
                          use_directory_urls=config["use_directory_urls"]))
    log.info("notebooks: %s", ", ".join(rendered))
    return files


def on_post_build(config):
    while _staging:
        shutil.rmtree(_staging.pop(), ignore_errors=True)
