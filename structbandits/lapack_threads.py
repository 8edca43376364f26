"""One BLAS thread for the LAPACK kernels that JAX's CPU backend calls (set by ``structbandits.configure()``).

On the CPU, ``jax.scipy.linalg.solve_triangular``, ``jnp.linalg.cholesky`` and the other
factorisations lower to LAPACK kernels from the BLAS library that SciPy ships, and a vmapped call
loops over the batch inside one kernel call, one small matrix at a time. From about 10 × 10 up,
OpenBLAS splits each of those small calls over its threads, and when the cores are busy (two pytest
workers, two experiments side by side) its waiting threads cost far more than the arithmetic. On the
project's 2-core machine with two other jobs running (``benchmarks/bench_lapack_threads.py``), a
vmapped (50 × 16 × 16) triangular solve with 100 right-hand sides took 467 ms with OpenBLAS's two
threads and 1.1 ms with one, and poGAMBITTS on 10 styles (50 seeds) ran 2.2× faster; 10 seeds × 200
rounds of it took 826 µs per seed-round uncapped and 200 µs capped. Below 10 × 10 the two settings
are within noise. JAX's own matrix products do not use this library and keep their thread pool.

``limit_lapack_threads`` caps only the BLAS library that SciPy's LAPACK wrappers load (NumPy's own
copy, used by ``numpy.linalg`` and ``@`` on NumPy arrays, is left alone) unless both share one
system library, in which case that one is capped. ``structbandits.configure()`` calls it with the value
of the environment variable ``STRUCTBANDITS_LAPACK_THREADS`` (default 1; ``0`` leaves the libraries'
thread counts as they are). SciPy's own ``scipy.linalg`` calls in the same process then run on that
many threads too.
"""

from __future__ import annotations

import os
from pathlib import Path

from threadpoolctl import ThreadpoolController

from structbandits.errors import ValidationError

__all__ = ["ENV_VARIABLE", "limit_lapack_threads", "limit_from_environment"]

ENV_VARIABLE = "STRUCTBANDITS_LAPACK_THREADS"


def limit_lapack_threads(limit: int = 1) -> list[str]:
    """Cap the BLAS library behind SciPy's (and so JAX's CPU) LAPACK kernels at ``limit`` threads.

    Returns the file paths of the libraries capped (empty when none was found).
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValidationError(f"limit: expected an integer >= 1, got {limit!r}")
    import scipy.linalg.cython_lapack  # noqa: F401  (loads the library that jaxlib's LAPACK kernels call)

    blas = ThreadpoolController().select(user_api="blas")
    scipy_own = [c for c in blas.lib_controllers if _ships_with_scipy(c.filepath)]
    chosen = scipy_own or blas.lib_controllers  # no bundled copy: SciPy links the shared system library
    for controller in chosen:
        controller.set_num_threads(limit)
    return [controller.filepath for controller in chosen]


def limit_from_environment() -> list[str]:
    """Apply ``STRUCTBANDITS_LAPACK_THREADS`` (default 1, ``0`` leaves the thread counts alone)."""
    raw = os.environ.get(ENV_VARIABLE, "1").strip()
    try:
        limit = int(raw)
    except ValueError:
        raise ValidationError(f"{ENV_VARIABLE}: expected an integer >= 0, got {raw!r}") from None
    if limit < 0:
        raise ValidationError(f"{ENV_VARIABLE}: expected an integer >= 0, got {raw!r}")
    return [] if limit == 0 else limit_lapack_threads(limit)


def _ships_with_scipy(filepath: str) -> bool:
    """True for a library inside SciPy's wheel (``scipy.libs/`` or ``scipy/.libs/``)."""
    parts = Path(filepath).parts
    return any(part == "scipy" or part.startswith("scipy.") for part in parts[:-1])
