"""Restless-bandit environments: validated instances and the equitable-RMAB paper's domains.

The round loop that plays a policy on an instance (``simulate_restless``) is the runner's, in
``structbandits.experiments.restless_runner``: environments never import agents.
"""

from structbandits.envs.rmab.domains import (
    diabetes_domain,
    high_a1c_states,
    maternal_domain,
    synthetic_domain,
)
from structbandits.envs.rmab.instance import (
    RestlessInstance,
    group_labels_from_fractions,
    replicate_group_rows,
    sample_arm_parameters,
)

__all__ = [
    "RestlessInstance",
    "diabetes_domain",
    "group_labels_from_fractions",
    "high_a1c_states",
    "maternal_domain",
    "replicate_group_rows",
    "sample_arm_parameters",
    "synthetic_domain",
]
