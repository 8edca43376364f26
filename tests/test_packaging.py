"""Packaging: the license file matches pyproject, the package is typed, the version lives in one place, the extras
are declared and pinned, and the built wheel installs into a clean environment and runs the demo."""

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
import tomllib
from pathlib import Path

import pytest

import structbandits

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_license_file_matches_pyproject():
    project = PYPROJECT["project"]
    assert project["license"] == "MIT"
    assert project["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")


def test_the_package_ships_py_typed():
    assert (ROOT / "structbandits" / "py.typed").is_file()
    assert "py.typed" in PYPROJECT["tool"]["setuptools"]["package-data"]["structbandits"]


def test_the_version_is_written_once():
    assert "version" not in PYPROJECT["project"] and "version" in PYPROJECT["project"]["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "structbandits.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+([a-z0-9.+-]*)", structbandits.__version__)
    assert importlib.metadata.version("structbandits") == structbandits.__version__
    literal = re.compile(r"""['"]%s['"]""" % re.escape(structbandits.__version__))
    others = [path for path in [*ROOT.glob("structbandits/**/*.py"), ROOT / "pyproject.toml"]
              if path.name != "__init__.py" and literal.search(path.read_text())]
    assert others == []


def test_the_license_is_the_mit_text_with_a_year_and_a_holder():
    text = (ROOT / "LICENSE").read_text()
    assert re.search(r"^Copyright \(c\) (19|20)\d\d \S.+$", text, re.MULTILINE)
    # The MIT grant and disclaimer, word for word (https://opensource.org/license/mit).
    assert " ".join(text.split()).endswith(
        "Permission is hereby granted, free of charge, to any person obtaining a copy of this software and "
        "associated documentation files (the \"Software\"), to deal in the Software without restriction, including "
        "without limitation the rights to use, copy, modify, merge, publish, distribute, sublicense, and/or sell "
        "copies of the Software, and to permit persons to whom the Software is furnished to do so, subject to the "
        "following conditions: The above copyright notice and this permission notice shall be included in all "
        "copies or substantial portions of the Software. THE SOFTWARE IS PROVIDED \"AS IS\", WITHOUT WARRANTY OF "
        "ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR "
        "A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR "
        "ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, "
        "OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.")


def test_the_extras_are_declared():
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert {"cuda", "serve", "llm", "text", "dask", "docs", "test"} <= set(extras)
    assert extras["cuda"] == ["jax[cuda12]"]  # jax's own extra: the jaxlib and CUDA plugin of the resolved jax
    assert any(req.startswith("mkdocs-material") for req in extras["docs"])
    pinned = {line.split("==")[0].lower() for line in (ROOT / "constraints.txt").read_text().splitlines()
              if "==" in line}
    names = {re.split(r"[\[<>=~! ]", req)[0].lower() for extra in ("docs", "test") for req in extras[extra]}
    assert names <= pinned, names - pinned


# --- The built wheel in a clean environment (issue 27 item 2). Offline: the wheel is built from a copy of the
# source with this environment's setuptools, installed with --no-deps into a fresh venv whose only other
# packages are this environment's installed dependencies (a .pth line after its own site-packages).

WHEEL_SCRIPT = """
import json, sys, structbandits, structbandits.cli
from importlib import metadata, resources
files = metadata.files("structbandits")
print(json.dumps({"file": structbandits.__file__, "prefix": sys.prefix, "version": metadata.version("structbandits"),
                  "py_typed": resources.files("structbandits").joinpath("py.typed").is_file(),
                  "license": any(str(f).endswith("LICENSE") for f in files),
                  "configs": sorted(p.name for p in
                                    resources.files("structbandits.experiments").joinpath("configs").iterdir())}))
"""


@pytest.mark.slow
def test_the_built_wheel_runs_the_demo_in_a_fresh_venv(tmp_path):
    start = time.perf_counter()
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "structbandits", source / "structbandits", ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                    "--quiet", "--wheel-dir", str(dist), str(source)], check=True, timeout=300)
    (wheel,) = dist.glob("structbandits-*.whl")
    assert wheel.name.startswith(f"structbandits-{structbandits.__version__}-py3-none-any")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                    "--quiet", str(wheel)], check=True, timeout=300)
    fresh_site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                     capture_output=True, text=True, check=True).stdout.strip())
    ours = Path(sysconfig.get_paths()["purelib"])  # this environment's dependencies; its editable finder is
    (fresh_site / "zz_dependencies.pth").write_text(f"{ours}\n")  # a .pth file there, not processed from here
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["STRUCTBANDITS_COMPILATION_CACHE"] = "off"
    found = json.loads(subprocess.run([str(python), "-c", WHEEL_SCRIPT], capture_output=True, text=True, check=True,
                                      cwd=tmp_path, env=env, timeout=120).stdout.strip().splitlines()[-1])
    assert Path(found["file"]).is_relative_to(fresh_site), found["file"]  # the wheel, not the editable checkout
    assert Path(found["prefix"]) == venv and found["version"] == structbandits.__version__
    assert found["py_typed"] and found["license"] and "demo.toml" in found["configs"]
    out = tmp_path / "demo"
    done = subprocess.run([str(venv / "bin" / "structbandits"), "demo", "--horizon", "5", "--seeds", "1", "--out",
                           str(out), "--no-progress"], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"Results: {out.resolve()}" in done.stdout
    for name in ("results.parquet", "summary.csv", "config.json", "cumulative_regret.png", "report.html"):
        assert (out / name).stat().st_size > 0, name
    print(f"wheel build, venv, install and demo: {time.perf_counter() - start:.1f} s")
