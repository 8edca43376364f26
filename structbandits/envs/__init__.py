"""Simulators with known ground truth, as pure functions (see ``envs.protocol``).

Belongs here: environments whose ground truth is drawn from a program in ``models`` (so simulator
and agent agree on the model by construction) or built from real data. Does not belong here:
agents, posteriors, or the loop over rounds (``experiments``).
"""

from structbandits.envs.protocol import Environment
from structbandits.envs.synthetic import LinearBanditState, linear_contextual_bandit

__all__ = ["Environment", "LinearBanditState", "linear_contextual_bandit"]
