"""Where sweep cells run: in this process, in local worker processes, or on a Dask cluster.

Every executor takes a top-level (picklable) function and a list of argument tuples and yields
``(index, result)`` pairs as tasks finish, in completion order. The caller persists each result
as it arrives, so a run that is interrupted keeps every finished task. The results never depend on
the executor: a task's inputs fully determine its output (its seeds come from its own config).

Local processes use the ``spawn`` start method (JAX's threads do not survive ``fork``). Dask is an
optional extra (``pip install 'structbandits[dask]'``); without ``address`` a ``LocalCluster`` of
worker processes is started on this machine and closed afterwards.

Worker processes started here get ``XLA_PYTHON_CLIENT_PREALLOCATE=false`` unless the variable is set: on a
GPU, JAX takes 75% of the device's memory at its first use, so workers started beside a process that
holds the GPU (or beside each other) would fail with out-of-memory errors. On the CPU it changes nothing.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

from structbandits.errors import ValidationError, check_integer

__all__ = ["EXECUTORS", "PREALLOCATE_VARIABLE", "check_executor", "run_tasks", "worker_environment"]

EXECUTORS = ("inprocess", "processes", "dask")
PREALLOCATE_VARIABLE = "XLA_PYTHON_CLIENT_PREALLOCATE"


@contextlib.contextmanager
def worker_environment() -> Iterator[None]:
    """While open, processes started from here inherit ``XLA_PYTHON_CLIENT_PREALLOCATE=false`` (unless the
    variable is set already); the variable is restored on exit, so this process's environment is unchanged."""
    if PREALLOCATE_VARIABLE in os.environ:
        yield
        return
    os.environ[PREALLOCATE_VARIABLE] = "false"
    try:
        yield
    finally:
        os.environ.pop(PREALLOCATE_VARIABLE, None)


def _default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def _in_process(fn: Callable, tasks: Sequence[tuple], **_: Any) -> Iterator[tuple[int, Any]]:
    for index, args in enumerate(tasks):
        yield index, fn(*args)


def _processes(fn: Callable, tasks: Sequence[tuple], *, workers: int, **_: Any) -> Iterator[tuple[int, Any]]:
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        with worker_environment():  # a spawn pool starts its workers as tasks are submitted
            futures = {pool.submit(fn, *args): index for index, args in enumerate(tasks)}
        try:
            for future in as_completed(futures):
                yield futures[future], future.result()
        finally:
            for future in futures:
                future.cancel()


def _dask_modules():
    try:
        import distributed
    except ImportError:
        raise ValidationError(
            "executor: 'dask' needs the optional Dask extra, which is not installed; "
            "install it with: pip install 'structbandits[dask]'"
        ) from None
    return distributed


def _dask(fn: Callable, tasks: Sequence[tuple], *, workers: int, address: str | None) -> Iterator[tuple[int, Any]]:
    distributed = _dask_modules()
    cluster = None
    if address is None:
        with worker_environment():
            cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                               dashboard_address=None)
    try:
        try:
            client = distributed.Client(cluster if cluster is not None else address, timeout="20s")
        except OSError as err:
            raise ValidationError(f"address: could not reach the Dask scheduler at {address!r}: {err}") from None
        with client:
            futures = [client.submit(fn, *args, pure=False) for args in tasks]
            index_of = {future.key: index for index, future in enumerate(futures)}
            try:
                for future in distributed.as_completed(futures):
                    yield index_of[future.key], future.result()
            finally:
                client.cancel(futures)
    finally:
        if cluster is not None:
            cluster.close()


_RUNNERS = {"inprocess": _in_process, "processes": _processes, "dask": _dask}


def run_tasks(fn: Callable, tasks: Sequence[tuple], *, executor: str = "inprocess", workers: int | None = None,
              address: str | None = None) -> Iterator[tuple[int, Any]]:
    """Run ``fn(*args)`` for every ``args`` in ``tasks``; yield ``(task index, result)`` as each finishes.

    Parameters
    ----------
    fn : a module-level function (worker processes import it by name).
    tasks : argument tuples, one per task; they and the results must be picklable.
    executor : "inprocess" (default, sequential), "processes" (a spawn-context process pool) or
        "dask" (``distributed``: the cluster at ``address``, or a LocalCluster of ``workers`` processes).
    workers : worker processes for "processes" and a LocalCluster (default min(4, CPUs)).
    address : a Dask scheduler, e.g. "tcp://10.0.0.5:8786"; only with executor="dask".

    Returns
    -------
    An iterator of (index into ``tasks``, result), in completion order.
    """
    workers = check_executor(executor, workers, address)
    return _RUNNERS[executor](fn, list(tasks), workers=workers, address=address)


def check_executor(executor: str, workers: int | None = None, address: str | None = None) -> int:
    """Validate an executor choice before any work starts; returns the number of workers to use."""
    if executor not in _RUNNERS:
        raise ValidationError(f"executor: expected one of {', '.join(EXECUTORS)}, got {executor!r}")
    if address is not None and executor != "dask":
        raise ValidationError(f"address: only used with executor 'dask', got executor {executor!r}")
    if executor == "dask":
        _dask_modules()  # fails with the install hint when the extra is missing
    return check_integer("workers", workers if workers is not None else _default_workers(), minimum=1)
