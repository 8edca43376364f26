"""Prior draws of an environment's ground truth without NumPyro's second check of the hyperparameters.

An environment's ``init`` draws its truth with ``numpyro.infer.Predictive`` from hyperparameters that
its builder has already checked (scales > 0, finite bounds) or built itself (covariances scale² I). With
NumPyro's argument validation on (its default), every trace of ``init`` checks them again: constraints
of constant arguments run eagerly (``jax.ensure_compile_time_eval``; for a covariance an
eigendecomposition, a Cholesky factor and a dozen more small operations, each its own compiled program,
built or loaded from the persistent cache once per process), and the checks of traced arguments become
dead code in the simulation program. ``prior_draw`` runs the draw with validation off: the same
samples and the same compiled simulation program (its optimized HLO is identical), without those
programs. Use it only where the builder validates what the program's constraints would. The switch is
NumPyro's process-wide flag (``numpyro.distributions.distribution.validation_enabled``), off only while
the draw runs (or is traced) and restored afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from numpyro.distributions.distribution import validation_enabled
from numpyro.infer import Predictive

__all__ = ["prior_draw"]


def prior_draw(predictive: Predictive) -> Callable[..., dict[str, Any]]:
    """``predictive(key, *args, **kwargs)`` with NumPyro's argument validation off during the call
    (restored afterwards, also on errors); returns the same dict of sites as ``predictive``."""

    def draw(*args: Any, **kwargs: Any) -> dict[str, Any]:
        with validation_enabled(False):
            return predictive(*args, **kwargs)

    return draw
