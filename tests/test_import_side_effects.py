"""Importing any module of the package runs no JAX program (DESIGN.md: no global side effects on import).

A module-level ``jnp`` expression (e.g. a table of step sizes) would start JAX's backend and compile
programs in every process that imports it, before ``structbandits.configure()`` could set float64.
The check imports every module in a fresh interpreter and asks JAX whether a backend was started.
"""

import subprocess
import sys

SCRIPT = r"""
import importlib, pkgutil
import jax._src.xla_bridge as xla_bridge
import structbandits

skipped = []
for info in pkgutil.walk_packages(structbandits.__path__, "structbandits."):
    if info.name.endswith("__main__"):  # runs the CLI
        continue
    try:
        importlib.import_module(info.name)
    except ModuleNotFoundError as err:  # an optional extra that is not installed
        skipped.append((info.name, err.name))
    if xla_bridge._backends:
        raise SystemExit(f"importing {info.name} started a JAX backend")
print("imported without a backend; skipped:", skipped)
"""


def test_importing_every_module_starts_no_jax_backend():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:] + done.stdout[-2000:]
    assert "imported without a backend" in done.stdout


def test_the_experiment_pipeline_imports_without_scikit_learn():
    # Every CLI command imports the pipeline; scikit-learn (~0.7 s to import) is needed only by the
    # structure learners' fit (structure.gmm imports it there) and the study analysis.
    script = "import sys, structbandits.experiments.pipeline; print(sorted(m for m in sys.modules if m.startswith('sklearn')))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
