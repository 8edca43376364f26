"""Suite-wide fixtures.

Every XLA executable that JAX compiles on the CPU holds a few memory mappings until its cache entry
is dropped. The suite compiles tens of thousands of programs in one process, which ran into the
kernel's limit on mappings per process (``vm.max_map_count``, 65530 by default) two thirds of the
way through and crashed XLA's compiler with a segmentation fault. Dropping JAX's caches after each
test module keeps the count at what one module needs.

At test sizes the suite is bound by compilation, not by running the programs: tests compile without
LLVM's optimisation passes (``--xla_backend_optimization_level=0``, about 30% less wall time here),
set before JAX starts its backend and inherited by the subprocesses and notebook kernels the tests
start. An ``XLA_FLAGS`` that already sets the level wins.

The suite runs with ``structbandits.configure()`` (float64, one LAPACK thread), as the CLI does, and with
JAX's persistent compilation cache in a fresh temporary folder of its own, made when the run starts
(by the xdist controller, so that both workers and every CLI subprocess and notebook kernel they start
share it) and deleted when it ends. Dropping the in-memory caches after each module (above) would
otherwise make the next module compile the same programs again, and two workers compile many of the
same programs; with the shared folder a repeat is a load (about 18% less CPU time over a sample of
eight compile-bound files). Nothing is kept between runs, so each run still compiles everything it
runs once; tests/test_runtime.py checks the cache itself in folders of its own. A
``STRUCTBANDITS_COMPILATION_CACHE`` already set (``off``, or a folder) wins.
"""

import gc
import os
import shutil
import tempfile

_OWN_CACHE = None
if "STRUCTBANDITS_COMPILATION_CACHE" not in os.environ:  # the controller (or a run without xdist)
    _OWN_CACHE = tempfile.mkdtemp(prefix="structbandits-test-compilation-cache-")
    os.environ["STRUCTBANDITS_COMPILATION_CACHE"] = _OWN_CACHE  # inherited by the workers

if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0".strip()

import pytest  # noqa: E402  (after XLA_FLAGS)

import structbandits  # noqa: E402
from structbandits.cli import fewer_garbage_collections  # noqa: E402
from structbandits.compiled_memory import release_compiled_programs  # noqa: E402

# What the CLI and the runners use: float64 and one LAPACK thread (importing the package sets neither).
structbandits.configure()

# Tracing allocates millions of short-lived objects; freezing what the imports made and collecting less
# often (as the CLI does, ``cli.fewer_garbage_collections``) took 8-10% off the CPU time of a
# compile-bound test file here.
gc.freeze()
fewer_garbage_collections()


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    yield
    release_compiled_programs(fraction=0.0)  # after every module (where /proc tells the mapping count)


# Start the longest tests first (by file; measured at about 15-50 s each): with two workers the run then
# ends on short tests instead of one worker finishing a notebook while the other idles.
LONG_FIRST = ("test_notebooks.py", "test_reproductions.py", "test_runtime.py", "test_gambitts_nuts.py",
              "test_generic_ts.py", "test_user_programs.py", "test_restless_shared_programs.py")


def pytest_collection_modifyitems(session, config, items):
    rank = {name: i for i, name in enumerate(LONG_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONG_FIRST)))  # stable: otherwise unchanged


def pytest_unconfigure(config):
    if _OWN_CACHE is not None:
        shutil.rmtree(_OWN_CACHE, ignore_errors=True)
