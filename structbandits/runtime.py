"""Process-wide settings, applied only when asked: ``structbandits.configure``.

Importing ``structbandits`` changes nothing global. The command line and the test suite call
``configure()`` (float64 and one LAPACK thread, below), and the experiment runners call
``ensure_configured()`` (the same, unless ``configure`` was already called). A library user who calls
the agents, posteriors or planners directly calls it once, before creating any JAX arrays:

    import structbandits
    structbandits.configure()            # x64=True, lapack_threads from the environment (default 1)

Why these two:

* ``x64``: posteriors here accumulate thousands of rank-one updates, and float32 Cholesky factors
  drift visibly over such runs; everything tested runs in float64. Arrays created before the switch
  keep their dtype, so call it first.
* ``lapack_threads``: JAX's CPU factorisations call the BLAS library that SciPy ships, whose threads
  thrash on small vmapped matrices when the cores are busy (``structbandits.lapack_threads``).
"""

from __future__ import annotations

import jax

from structbandits.errors import ValidationError
from structbandits.lapack_threads import limit_from_environment, limit_lapack_threads

__all__ = ["configure", "ensure_configured"]

_FROM_ENVIRONMENT = "environment"
_applied: dict | None = None  # what the last configure() call applied in this process


def configure(x64: bool = True, lapack_threads: int | str | None = _FROM_ENVIRONMENT) -> dict:
    """Apply the process-wide numerical settings the package is tested with.

    Parameters
    ----------
    x64 : switch JAX to float64 (``jax_enable_x64``); False switches it off again.
    lapack_threads : threads for the BLAS library behind JAX's CPU LAPACK kernels: an integer >= 1,
        ``None`` to leave the thread counts alone, or ``"environment"`` (default) for the value of
        ``STRUCTBANDITS_LAPACK_THREADS`` (default 1; ``0`` leaves them alone).

    Returns
    -------
    dict with ``x64`` (the setting now in force) and ``lapack_libraries`` (the libraries capped).
    """
    if not isinstance(x64, bool):
        raise ValidationError(f"x64: expected True or False, got {x64!r}")
    from_environment = isinstance(lapack_threads, str) and lapack_threads == _FROM_ENVIRONMENT
    valid_count = isinstance(lapack_threads, int) and not isinstance(lapack_threads, bool) and lapack_threads >= 1
    if not (lapack_threads is None or from_environment or valid_count):
        raise ValidationError(f"lapack_threads: expected an integer >= 1, None or 'environment', "
                              f"got {lapack_threads!r}")
    jax.config.update("jax_enable_x64", x64)
    if lapack_threads is None:
        capped = []
    elif from_environment:
        capped = limit_from_environment()
    else:
        capped = limit_lapack_threads(lapack_threads)
    global _applied
    _applied = {"x64": bool(jax.config.jax_enable_x64), "lapack_libraries": capped}
    return dict(_applied)


def ensure_configured() -> dict:
    """``configure()`` with its defaults, unless ``configure`` was already called in this process.

    The experiment runners call this on entry, so a script that only calls a runner gets the tested
    settings, while settings a user chose with an explicit ``configure(...)`` call are kept.
    """
    return dict(_applied) if _applied is not None else configure()
