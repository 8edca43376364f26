"""The documentation site's structure (``mkdocs build --strict`` in CI checks links, anchors and API references).

Here, without mkdocs: every reproduction has a page with its figure, every subpackage an API page, the
figures stay small, and the notebook hook renders an executed copy only when it is the notebook's own.
Oracles: the reproduction registry, the package's folders and hand-made notebooks.
"""

import importlib.util
import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


class _Loader(yaml.SafeLoader):
    """mkdocs.yml as plain data (it has no tags today; any it gains read as None)."""


_Loader.add_multi_constructor("", lambda loader, suffix, node: None)
CONFIG = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=_Loader)


def _nav_pages(entries):
    for entry in entries:
        if isinstance(entry, str):
            yield entry
        elif isinstance(entry, dict):
            for value in entry.values():
                yield from ([value] if isinstance(value, str) else _nav_pages(value))


def test_every_reproduction_has_a_page_with_its_figure_in_the_nav():
    from structbandits.experiments.reproductions import REPRODUCTIONS

    nav = set(_nav_pages(CONFIG["nav"]))
    index = (DOCS / "reproductions" / "index.md").read_text()
    for name in REPRODUCTIONS:
        page = DOCS / "reproductions" / f"{name}.md"
        assert page.is_file() and f"reproductions/{name}.md" in nav, name
        assert f"({name}.md)" in index, name
        figures = re.findall(r"!\[[^]]*\]\(\.\./figures/([^)]+)\)", page.read_text())
        assert figures and all((DOCS / "figures" / figure).is_file() for figure in figures), name


def test_every_subpackage_has_an_api_page():
    packages = sorted(path.parent.name for path in (ROOT / "structbandits").glob("*/__init__.py")
                      if path.parent.name != "tools")  # tools: builders of shipped data, not library API
    nav = set(_nav_pages(CONFIG["nav"]))
    for name in packages:
        page = DOCS / "api" / f"{name}.md"
        assert page.is_file() and f"api/{name}.md" in nav, name
        assert f"::: structbandits.{name}" in page.read_text()


def test_the_figures_stay_small():
    sizes = {path.name: path.stat().st_size for path in (DOCS / "figures").glob("*")}
    assert sizes and sum(sizes.values()) < 1_000_000, sizes


def _hook():
    pytest.importorskip("mkdocs", reason="the docs extra is not installed (make docs-build installs it)")
    spec = importlib.util.spec_from_file_location("notebooks_hook", DOCS / "_hooks" / "notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _notebook(path, sources, executed=False, error=False):
    cells = [{"cell_type": "markdown", "metadata": {}, "source": "# t"}]
    for i, source in enumerate(sources):
        outputs = []
        if executed:
            outputs = [{"output_type": "error", "ename": "E", "evalue": "", "traceback": []} if error
                       else {"output_type": "stream", "name": "stdout", "text": "ok"}]
        cells.append({"cell_type": "code", "metadata": {}, "source": source, "outputs": outputs,
                      "execution_count": i + 1 if executed else None})
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    return path


def test_the_notebook_hook_renders_only_a_fresh_executed_copy(tmp_path, monkeypatch):
    hook = _hook()
    committed = _notebook(tmp_path / "a.ipynb", ["x = 1", "print(x)"])
    executed = tmp_path / "executed"
    executed.mkdir()
    monkeypatch.delenv(hook.EXECUTED_VARIABLE, raising=False)
    assert hook.executed_copy(committed) is None  # no folder
    monkeypatch.setenv(hook.EXECUTED_VARIABLE, str(executed))
    assert hook.executed_copy(committed) is None  # no copy
    copy = _notebook(executed / "a.ipynb", ["x = 1", "print(x)"], executed=True)
    assert hook.executed_copy(committed) == copy
    _notebook(executed / "a.ipynb", ["x = 2", "print(x)"], executed=True)
    assert hook.executed_copy(committed) is None  # another notebook's cells (stale)
    _notebook(executed / "a.ipynb", ["x = 1", "print(x)"], executed=False)
    assert hook.executed_copy(committed) is None  # not executed
    _notebook(executed / "a.ipynb", ["x = 1", "print(x)"], executed=True, error=True)
    assert hook.executed_copy(committed) is None  # stopped at an error


def test_the_notebooks_section_lists_every_notebook():
    hook = _hook()
    config = {"nav": [{"Home": "index.md"}, {"Notebooks": []}]}
    hook.on_config(config)
    listed = config["nav"][1]["Notebooks"]
    assert listed[0] == "notebooks/index.md"
    assert listed[1:] == [f"notebooks/{path.name}" for path in sorted((ROOT / "notebooks").glob("*.ipynb"))]
