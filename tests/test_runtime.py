"""Importing the package changes nothing global; ``configure`` applies the settings; runners ask for them."""

import json
import os
import subprocess
import sys

import pytest

from structbandits.errors import ValidationError

# Reports, in a fresh process: x64 and SciPy's BLAS thread counts before and after the import, then after
# the named call ("none", "configure" or "configure-then-ensure").
SCRIPT = """
import json, sys, jax, threadpoolctl
import scipy.linalg.cython_lapack  # the library behind JAX's LAPACK kernels, loaded before the import


def blas():
    from pathlib import Path
    return sorted(i["num_threads"] for i in threadpoolctl.threadpool_info()
                  if i["user_api"] == "blas" and any(p.startswith("scipy") for p in Path(i["filepath"]).parts[:-1]))


before = blas()
import structbandits
import structbandits.agents, structbandits.experiments, structbandits.inference, structbandits.planning
after_import = (bool(jax.config.jax_enable_x64), blas())
step = sys.argv[1]
if step == "configure":
    structbandits.configure()
elif step == "explicit-then-ensure":
    structbandits.configure(x64=False, lapack_threads=None)
    from structbandits.runtime import ensure_configured
    ensure_configured()
print(json.dumps({"before": before, "after_import": after_import,
                  "after": (bool(jax.config.jax_enable_x64), blas())}))
"""


def _fresh(step: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "STRUCTBANDITS_LAPACK_THREADS"}
    env["OPENBLAS_NUM_THREADS"] = "2"
    done = subprocess.run([sys.executable, "-c", SCRIPT, step], env=env, capture_output=True, text=True,
                          check=True, timeout=120)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_importing_the_package_sets_neither_float64_nor_blas_threads():
    report = _fresh("none")
    assert report["before"] == [2]  # the scenario: SciPy's BLAS would run on 2 threads
    assert report["after_import"] == [False, [2]]
    assert report["after"] == [False, [2]]


def test_configure_sets_float64_and_one_blas_thread():
    assert _fresh("configure")["after"] == [True, [1]]


def test_ensure_configured_keeps_what_the_user_chose():
    # A runner's ensure_configured() must not undo an explicit configure(x64=False, lapack_threads=None).
    assert _fresh("explicit-then-ensure")["after"] == [False, [2]]


def test_the_cli_runs_in_float64():
    script = ("import jax, structbandits.cli as cli\n"
              "from typer.testing import CliRunner\n"
              "CliRunner().invoke(cli.app, ['list'])\n"
              "print(jax.config.jax_enable_x64)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120)
    assert done.stdout.strip().splitlines()[-1] == "True"


@pytest.mark.parametrize("kwargs, message", [({"x64": 1}, "x64: expected True or False"),
                                             ({"lapack_threads": "two"}, "lapack_threads: expected an integer"),
                                             ({"lapack_threads": 0}, "lapack_threads: expected an integer >= 1"),
                                             ({"lapack_threads": True}, "lapack_threads: expected an integer >= 1")])
def test_bad_settings_are_named(kwargs, message):
    from structbandits import configure

    with pytest.raises(ValidationError, match=message):
        configure(**kwargs)
