"""Posterior diagnostics: ArviZ conversion, posterior checks and prior sensitivity.

Belongs here: everything that touches ArviZ, behind the one adapter module ``arviz_adapter`` (so
both the 0.23.x line, which installs on Python 3.11, and the 1.x line work), and checks that
compare posteriors. Does not belong here: computing posteriors (``inference``).
ArviZ is imported lazily: ``import structbandits`` never pays for it.
"""

from structbandits.diagnostics.arviz_adapter import (
    from_draws,
    from_mcmc,
    policy_to_arviz,
    posterior_predictive_to_arviz,
    posterior_to_arviz,
    summary,
)
from structbandits.diagnostics.calibration import SBCResult, program_simulator, simulation_based_calibration
from structbandits.diagnostics.checks import PosteriorCheck, check_posterior
from structbandits.diagnostics.trajectories import PosteriorTrajectory, plot_posterior_trajectory, posterior_trajectory

__all__ = [
    "PosteriorCheck",
    "PosteriorTrajectory",
    "SBCResult",
    "check_posterior",
    "from_draws",
    "from_mcmc",
    "plot_posterior_trajectory",
    "policy_to_arviz",
    "posterior_predictive_to_arviz",
    "posterior_to_arviz",
    "posterior_trajectory",
    "program_simulator",
    "simulation_based_calibration",
    "summary",
]
