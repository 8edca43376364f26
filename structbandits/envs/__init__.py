"""Simulators with known ground truth, as pure functions (see ``envs.protocol``).

Belongs here: environments whose ground truth is drawn from a program in ``models`` (so simulator
and agent agree on the model by construction) or built from real data. Does not belong here:
agents, posteriors, or the loop over rounds (``experiments``).
"""

from structbandits.envs.drifting import changepoint_bandit, habituation_bandit, random_walk_bandit
from structbandits.envs.mixed_effect import MixedEffectState, mixed_effect_bandit
from structbandits.envs.protocol import Environment, ModelHyperparameters
from structbandits.envs.random_effects import RandomEffectsState, random_effects_bandit
from structbandits.envs.synthetic import LinearBanditState, linear_contextual_bandit

__all__ = [
    "changepoint_bandit",
    "habituation_bandit",
    "random_walk_bandit",
    "Environment",
    "LinearBanditState",
    "MixedEffectState",
    "RandomEffectsState",
    "ModelHyperparameters",
    "linear_contextual_bandit",
    "mixed_effect_bandit",
    "random_effects_bandit",
]
