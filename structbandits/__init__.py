"""structbandits: structured Bayesian bandits for adaptive interventions.

Declare a generative model as a NumPyro program (``structbandits.models``), get posteriors from it
(``structbandits.inference``), act with Thompson-sampling policies (``structbandits.agents``),
simulate them against known ground truth (``structbandits.envs``) and compare them
(``structbandits.experiments``).

Numerics: importing the package switches JAX to float64 (``jax_enable_x64``). Posteriors here
accumulate thousands of rank-one updates, and float32 Cholesky factors drift visibly over such
runs; the CLI, the runner and the test suite all use float64, so what is tested is what runs.

Threads: importing the package also runs the LAPACK kernels that JAX's CPU backend calls (SciPy's
BLAS) on one thread, which makes vmapped solves on small matrices several times faster
(``structbandits.lapack_threads``; ``STRUCTBANDITS_LAPACK_THREADS`` sets another count, 0 none).
"""

import jax

jax.config.update("jax_enable_x64", True)

from structbandits.errors import ValidationError  # noqa: E402
from structbandits.lapack_threads import limit_from_environment  # noqa: E402

limit_from_environment()

__version__ = "0.1.0"
__all__ = ["ValidationError", "__version__"]
