"""``configure()`` caps SciPy's BLAS (the library behind JAX's CPU LAPACK kernels) at one thread."""

import json
import os
import subprocess
import sys

import pytest
from threadpoolctl import threadpool_info

from structbandits.errors import ValidationError
from structbandits.lapack_threads import ENV_VARIABLE, limit_from_environment, limit_lapack_threads

REPORT = ("import json, threadpoolctl, structbandits; structbandits.configure(); "
          "from structbandits.lapack_threads import _ships_with_scipy; "
          "print(json.dumps([(_ships_with_scipy(i['filepath']), i['num_threads']) "
          "for i in threadpoolctl.threadpool_info() if i['user_api'] == 'blas']))")


def _scipy_blas_threads() -> list[int]:
    from structbandits.lapack_threads import _ships_with_scipy

    return [info["num_threads"] for info in threadpool_info()
            if info["user_api"] == "blas" and _ships_with_scipy(info["filepath"])]


def _in_fresh_process(value: str) -> list[tuple[bool, int]]:
    env = {**os.environ, ENV_VARIABLE: value, "OPENBLAS_NUM_THREADS": "2"}
    out = subprocess.run([sys.executable, "-c", REPORT], env=env, capture_output=True, text=True, check=True)
    return [tuple(pair) for pair in json.loads(out.stdout.strip().splitlines()[-1])]


def test_configure_leaves_scipy_blas_on_one_thread_and_the_cap_can_be_changed():  # conftest configures
    assert _scipy_blas_threads() and set(_scipy_blas_threads()) == {1}
    try:
        capped = limit_lapack_threads(2)
        assert capped and set(_scipy_blas_threads()) == {2}
    finally:
        limit_lapack_threads(1)
    assert set(_scipy_blas_threads()) == {1}


def test_the_environment_variable_sets_the_count_or_leaves_it_alone():
    three = _in_fresh_process("3")
    assert {threads for scipy_own, threads in three if scipy_own} == {3}
    assert {threads for scipy_own, threads in three if not scipy_own} <= {2}  # NumPy's own copy untouched
    assert {threads for _, threads in _in_fresh_process("0")} == {2}


@pytest.mark.parametrize("value", ["x", "-1", "1.5"])
def test_a_bad_environment_value_is_named(value, monkeypatch):
    monkeypatch.setenv(ENV_VARIABLE, value)
    with pytest.raises(ValidationError, match=f"{ENV_VARIABLE}: expected an integer >= 0, got '{value}'"):
        limit_from_environment()


@pytest.mark.parametrize("limit", [0, -2, 1.0, True])
def test_a_bad_limit_is_named(limit):
    with pytest.raises(ValidationError, match="limit: expected an integer >= 1"):
        limit_lapack_threads(limit)
