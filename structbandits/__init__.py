"""structbandits: structured Bayesian bandits for adaptive interventions.

Declare a generative model as a NumPyro program (``structbandits.models``), get posteriors from it
(``structbandits.inference``), act with Thompson-sampling policies (``structbandits.agents``),
simulate them against known ground truth (``structbandits.envs``) and compare them
(``structbandits.experiments``).

Importing the package changes nothing global. Call ``structbandits.configure()`` once, before
creating JAX arrays, for the settings everything here is tested with: float64 (``jax_enable_x64``)
and one thread for the LAPACK kernels behind JAX on the CPU (``structbandits.runtime``). The
command line, the experiment runners and the test suite call it themselves.
"""

from structbandits.errors import ValidationError
from structbandits.runtime import configure

__version__ = "0.1.0"
__all__ = ["ValidationError", "__version__", "configure"]
