"""structbandits: structured Bayesian bandits for adaptive interventions.

Declare a generative model as a NumPyro program (``structbandits.models``), get posteriors from it
(``structbandits.inference``), act with Thompson-sampling policies (``structbandits.agents``),
simulate them against known ground truth (``structbandits.envs``) and compare them
(``structbandits.experiments``).

Importing the package changes nothing global. Call ``structbandits.configure()`` once, before
creating JAX arrays, for the settings everything here is tested with: float64 (``jax_enable_x64``)
and one thread for the LAPACK kernels behind JAX on the CPU (``structbandits.runtime``). The
command line, the experiment runners and the test suite call it themselves.

Importing the package does not import JAX either: ``configure`` is imported on first use (PEP 562),
so ``structbandits list`` and ``structbandits --help`` answer without loading JAX.
"""

from typing import TYPE_CHECKING, Any

from structbandits.errors import ValidationError

__version__ = "0.1.0"
__all__ = ["ValidationError", "__version__", "configure"]

if TYPE_CHECKING:  # what static tools see; at run time ``__getattr__`` imports it on first use
    from structbandits.runtime import configure


def __getattr__(name: str) -> Any:
    if name != "configure":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from structbandits.runtime import configure

    globals()[name] = configure
    return configure


def __dir__() -> list[str]:
    return sorted(set(globals()) | {"configure"})
