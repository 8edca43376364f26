"""Restless-bandit simulators: the equitable-RMAB paper's domains and a vmapped simulator."""

from structbandits.envs.rmab.domains import (
    diabetes_domain,
    high_a1c_states,
    maternal_domain,
    synthetic_domain,
)
from structbandits.envs.rmab.simulator import (
    RestlessTrajectory,
    restless_frame,
    simulate_restless,
    simulate_restless_learning,
)

__all__ = [
    "RestlessTrajectory",
    "diabetes_domain",
    "high_a1c_states",
    "maternal_domain",
    "restless_frame",
    "simulate_restless",
    "simulate_restless_learning",
    "synthetic_domain",
]
