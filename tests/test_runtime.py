"""Importing the package changes nothing global; ``configure`` applies the settings; runners ask for them."""

import json
import os
import subprocess
import sys

import pytest

from structbandits.errors import ValidationError
from structbandits.runtime import compilation_cache_dir

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


CACHE_SCRIPT = """
import json, sys, jax
from jax import monitoring
events = {"hits": 0, "misses": 0}
monitoring.register_event_listener(
    lambda name, **kw: events.__setitem__("hits" if name.endswith("cache_hits") else "misses",
                                          events["hits" if name.endswith("cache_hits") else "misses"] + 1)
    if name.endswith(("cache_hits", "cache_misses")) else None)
from structbandits.experiments import run_config
results, _ = run_config("demo", ["horizon=15", "seeds=2"], sys.argv[1], progress=False)
print(json.dumps({**events, "cache": jax.config.jax_compilation_cache_dir,
                  "regret": results["cumulative_regret"].tolist()}))
"""


@pytest.mark.slow  # two fresh processes that compile the demo's agents
def test_a_second_run_loads_its_programs_from_the_persistent_cache(tmp_path):
    cache = tmp_path / "cache"
    env = {**os.environ, "STRUCTBANDITS_COMPILATION_CACHE": str(cache)}

    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    stderr = {}

    def run(name):
        done = subprocess.run([sys.executable, "-c", CACHE_SCRIPT, str(tmp_path / name)], env=env,
                              capture_output=True, text=True, check=True, timeout=300)
        stderr[name] = done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])

    cold = run("cold")
    from structbandits.runtime import machine_fingerprint

    assert cold["cache"] == str(cache / machine_fingerprint())  # one subfolder per machine type
    assert cold["misses"] > 0  # (a program compiled twice in one process hits)
    assert any((cache / machine_fingerprint()).iterdir())
    warm = run("warm")
    assert warm["misses"] == 0 and warm["hits"] >= cold["misses"]  # every program comes from disk
    assert warm["regret"] == cold["regret"]  # the same programs: the same numbers
    # jaxlib 0.9's CPU loader logs false "SIGILL" errors per loaded program; configure quiets them.
    assert "SIGILL" not in stderr["warm"], stderr["warm"][-1000:]
    env["STRUCTBANDITS_COMPILATION_CACHE"] = "off"
    assert run("off")["cache"] is None


def test_the_cache_is_on_unless_the_environment_turns_it_off(monkeypatch, tmp_path):
    from structbandits.runtime import CACHE_VARIABLE, compilation_cache_dir

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv(CACHE_VARIABLE, raising=False)
    assert compilation_cache_dir() == tmp_path / "xdg" / "structbandits" / "jax"  # on by default
    monkeypatch.setenv(CACHE_VARIABLE, str(tmp_path / "c"))
    assert compilation_cache_dir() == tmp_path / "c"
    for off in ("off", "0", "OFF", "none", ""):
        monkeypatch.setenv(CACHE_VARIABLE, off)
        assert compilation_cache_dir() is None
    for on in ("on", "1", "ON"):
        monkeypatch.setenv(CACHE_VARIABLE, on)
        assert compilation_cache_dir() == tmp_path / "xdg" / "structbandits" / "jax"


def test_the_machine_fingerprint_follows_the_cpu_flags(monkeypatch):
    import structbandits.runtime as runtime

    here = runtime.machine_fingerprint()
    assert len(here) == 12 and here == runtime.machine_fingerprint()
    real_read = runtime.Path.read_text
    monkeypatch.setattr(runtime.Path, "read_text",
                        lambda self, *a, **k: "flags\t: sse2 avx\n" if str(self) == "/proc/cpuinfo"
                        else real_read(self, *a, **k))
    avx = runtime.machine_fingerprint()
    monkeypatch.setattr(runtime.Path, "read_text",
                        lambda self, *a, **k: "flags\t: sse2 avx avx512f\n" if str(self) == "/proc/cpuinfo"
                        else real_read(self, *a, **k))
    assert runtime.machine_fingerprint() != avx


def test_a_cache_folder_that_cannot_be_written_is_named_or_skipped(monkeypatch, tmp_path):
    import jax

    from structbandits import configure
    from structbandits.runtime import CACHE_VARIABLE

    (tmp_path / "file").write_text("x")
    try:
        # Named by the argument or by the variable: an error naming it (a file; a folder inside a file).
        with pytest.raises(ValidationError, match="compilation_cache: expected a folder .* is a file"):
            configure(compilation_cache=tmp_path / "file")
        monkeypatch.setenv(CACHE_VARIABLE, str(tmp_path / "file" / "cache"))
        with pytest.raises(ValidationError, match=f"{CACHE_VARIABLE}: expected a folder .*file/cache"):
            configure()
        # The default folder, which nobody asked for (here under a file): a warning, and no cache.
        monkeypatch.delenv(CACHE_VARIABLE)
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "file"))
        with pytest.warns(RuntimeWarning, match="running without the persistent compilation cache"):
            assert configure()["compilation_cache"] is None
        assert jax.config.jax_compilation_cache_dir is None
    finally:
        configure(compilation_cache=SUITE_CACHE)  # back to the suite's (tests/conftest.py)


SUITE_CACHE = compilation_cache_dir()  # what tests/conftest.py set up for this run


def test_the_cli_flag_turns_the_cache_on_and_off(monkeypatch, tmp_path):
    import jax
    from typer.testing import CliRunner

    import structbandits
    from structbandits.cli import app
    from structbandits.runtime import machine_fingerprint

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("STRUCTBANDITS_COMPILATION_CACHE", "off")
    try:
        assert CliRunner().invoke(app, ["--compilation-cache", "list"]).exit_code == 0
        assert jax.config.jax_compilation_cache_dir == str(tmp_path / "structbandits" / "jax" / machine_fingerprint())
        assert os.environ["STRUCTBANDITS_COMPILATION_CACHE"] == str(tmp_path / "structbandits" / "jax")  # for workers
        assert CliRunner().invoke(app, ["--no-compilation-cache", "list"]).exit_code == 0
        assert jax.config.jax_compilation_cache_dir is None
        assert os.environ["STRUCTBANDITS_COMPILATION_CACHE"] == "off"  # the processes it starts use none either
        monkeypatch.setenv("STRUCTBANDITS_COMPILATION_CACHE", str(tmp_path / "file"))
        (tmp_path / "file").write_text("x")
        refused = CliRunner().invoke(app, ["list"])
        assert refused.exit_code == 2 and "STRUCTBANDITS_COMPILATION_CACHE: expected a folder" in refused.output
        monkeypatch.setenv("STRUCTBANDITS_COMPILATION_CACHE", str(tmp_path / "mine"))
        assert CliRunner().invoke(app, ["list"]).exit_code == 0  # no flag: the environment decides
        assert jax.config.jax_compilation_cache_dir == str(tmp_path / "mine" / machine_fingerprint())
    finally:
        structbandits.configure(compilation_cache=SUITE_CACHE)  # back to the suite's (tests/conftest.py)


UNCONFIGURED = """
import warnings
warnings.simplefilter("ignore")  # float64 requests are truncated, with a UserWarning each, when x64 is off
import jax, jax.numpy as jnp
from structbandits.agents import lin_ts, restless_policy
from structbandits.envs.rmab.domains import diabetes_domain, high_a1c_states
from structbandits.experiments.restless_runner import simulate_restless

policy = lin_ts(jnp.zeros(2), jnp.eye(2), 0.5, num_actions=3, propensity_draws=4)
state = policy.init(jax.random.PRNGKey(0))
action, info = policy.act(state, jax.random.PRNGKey(1), jnp.ones(2))
policy.update(state, jnp.ones(2), action, 1.0)
instance = diabetes_domain(num_arms=12, budget=2, horizon=3)
for name in ("HR-RR", "Opt"):
    rr = restless_policy(name, instance.num_arms, instance.group_sizes, high_risk_states=high_a1c_states())
    simulate_restless(instance, rr, jax.random.PRNGKey(0), 1)
print(jax.config.jax_enable_x64, info.propensity.dtype)
"""


@pytest.mark.slow  # a fresh process that compiles a few agents
def test_agents_run_in_float32_when_the_user_never_configures():
    # Without configure() the library computes in float32 (with JAX's truncation warnings) but must not crash:
    # HR-RR's int64 sentinel once overflowed there.
    done = subprocess.run([sys.executable, "-c", UNCONFIGURED], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "False float32"
