"""`structbandits list` answers without JAX, and the lazy packages export what the eager ones did.

Oracles: the shipped TOML files in the source tree (a glob here, not the package's catalog), the
interpreter's ``sys.modules`` in a fresh process, and the CPU time the kernel charges that process.
"""

import json
import resource
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

EXPERIMENTS = Path(__file__).resolve().parents[1] / "structbandits" / "experiments"
HEAVY = ("jax", "jaxlib", "numpyro", "optax", "scipy", "sklearn", "matplotlib", "arviz")

LIST_SCRIPT = """
import json, sys
sys.argv = ["structbandits", "list"]
from structbandits.cli import main
try:
    main()
except SystemExit as done:
    assert not done.code, done.code
print(json.dumps(sorted(name for name in sys.modules if name.split(".")[0] in %r)))
""" % (HEAVY,)


@pytest.fixture(scope="module")
def listing():
    """One fresh `structbandits list` process: its printed lines, the heavy modules it imported, its
    wall time and the CPU time (user + system) it used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", LIST_SCRIPT], capture_output=True, text=True, check=True,
                          timeout=120)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    lines = done.stdout.strip().splitlines()
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"lines": lines[:-1], "heavy": json.loads(lines[-1]), "wall": wall, "cpu": cpu, "stderr": done.stderr}


def test_list_imports_no_jax(listing):
    assert listing["heavy"] == [], listing["heavy"]


def test_list_is_fast(listing):
    # CPU time, not wall time: a loaded CI machine stretches the wall clock, not the work. Measured on the
    # 2-core machine: 0.5 s of CPU (1.4 s wall, loaded); configuring JAX for `list` took 1.3 s of CPU, and
    # importing every experiment module (before the lazy imports) 2.9 s.
    print(f"structbandits list: {listing['wall']:.2f} s wall, {listing['cpu']:.2f} s CPU")
    assert listing["cpu"] < 1.0, listing


def test_list_names_every_shipped_config_sweep_and_reproduction(listing):
    first_words = [line.split()[0] for line in listing["lines"]]
    configs = sorted(path.stem for path in (EXPERIMENTS / "configs").glob("*.toml"))
    sweeps = sorted(path.stem for path in (EXPERIMENTS / "sweeps").glob("*.toml"))
    reproduced = [line.split()[0] for line in listing["lines"] if "(reproduce)" in line]
    swept = [line.split()[0] for line in listing["lines"] if "(sweep)" in line]
    assert first_words[:len(configs)] == configs  # configs first, sorted
    assert swept == sweeps
    assert {"mets-linear", "ermab-fig3", "ermab-fig4", "gambitts-illustrative", "drift"} <= set(reproduced)
    assert len(first_words) == len(configs) + len(reproduced) + len(sweeps)
    demo = tomllib.loads((EXPERIMENTS / "configs" / "demo.toml").read_text())["description"]
    assert f"{'demo':<24} {demo}" in listing["lines"]
    assert listing["stderr"] == ""


IMPORT_SCRIPT = """
import json, sys
import structbandits, structbandits.experiments
print(json.dumps(sorted(name for name in sys.modules if name.split(".")[0] in %r)))
""" % (HEAVY,)


def test_importing_the_packages_imports_no_jax():
    done = subprocess.run([sys.executable, "-c", IMPORT_SCRIPT], capture_output=True, text=True, check=True,
                          timeout=120)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_every_public_name_resolves_to_its_defining_module():
    import importlib
    import types

    import structbandits
    import structbandits.experiments as experiments

    # The submodule imported (again): the package keeps the exported function of the same name.
    importlib.import_module("structbandits.experiments.decision_sensitivity")
    assert callable(experiments.decision_sensitivity)
    assert not isinstance(experiments.decision_sensitivity, types.ModuleType)
    from structbandits.experiments import decision_sensitivity

    assert decision_sensitivity is sys.modules["structbandits.experiments.decision_sensitivity"].decision_sensitivity
    assert structbandits.configure.__module__ == "structbandits.runtime" and "configure" in dir(structbandits)
    expected = {  # the eager imports of structbandits/experiments/__init__.py before it was made lazy
        "decision_sensitivity": "decision_sensitivity", "ExperimentConfig": "config", "apply_overrides": "config",
        "build_components": "config", "builtin_configs": "config", "load_config": "config",
        "resolve_config": "config", "run_config": "pipeline", "plot_cumulative_regret": "plots",
        "render_report": "report", "save_results": "results", "summarize": "results", "Trajectory": "runner",
        "batched_simulator": "runner", "run_experiment": "runner", "seed_keys": "runner", "simulate_seed": "runner",
        "SweepResult": "sweep", "SweepSpec": "sweep", "load_sweep": "sweep", "run_sweep": "sweep",
    }
    assert sorted(experiments.__all__) == sorted(expected) and set(expected) <= set(dir(experiments))
    for name, module in expected.items():
        assert getattr(experiments, name) is getattr(importlib.import_module(f"structbandits.experiments.{module}"),
                                                     name), name


def test_an_unknown_name_is_an_attribute_error():
    import structbandits
    import structbandits.experiments

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        structbandits.experiments.nope  # noqa: B018
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        structbandits.nope  # noqa: B018
