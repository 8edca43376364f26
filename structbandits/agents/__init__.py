"""Policies: pure ``init`` / ``act`` / ``update`` functions over explicit pytree state.

Belongs here: decision rules (Thompson sampling, UCB, baselines) built on the posteriors of
``inference``. Does not belong here: posterior algebra (``inference``), simulators (``envs``), or
loops over rounds (``experiments`` scans them).

Every policy constructor (a function returning a ``Policy``) of the submodules is exported here,
with the state, context and settings types its users need.
"""

from structbandits.agents.bayes_restless import (
    LEARNING_PLANNERS,
    POOLING,
    SAMPLING,
    RestlessOutcome,
    TransitionCounts,
    bayes_restless_policy,
)
from structbandits.agents.ens_gambitts import EnsGambittsState, ens_fo_gambitts, ens_po_gambitts
from structbandits.agents.gambitts import (
    FOGambittsState,
    OptionalPromptingState,
    POGambittsState,
    fo_gambitts,
    optional_prompting,
    po_gambitts,
)
from structbandits.agents.generic import NumPyroTSState, numpyro_ts
from structbandits.agents.glm import GLMTSState, METSGLMState, glm_ts, hier_ts_glm, mets_glm
from structbandits.agents.mets import METSState, hier_ts, mets
from structbandits.agents.propensity import monte_carlo_propensity, thompson_choice
from structbandits.agents.protocol import ActInfo, Policy, no_propensity
from structbandits.agents.random import uniform_random
from structbandits.agents.restless import (
    EXACT_SETTINGS,
    POLICY_NAMES,
    PlannerSettings,
    RestlessContext,
    RoundRobinState,
    restless_policy,
)
from structbandits.agents.standard_ts import StandardTSState, standard_ts
from structbandits.agents.thompson import LinTSState, lin_ts
from structbandits.agents.ucb import lin_ucb

__all__ = [
    "EXACT_SETTINGS",
    "LEARNING_PLANNERS",
    "POLICY_NAMES",
    "POOLING",
    "SAMPLING",
    "ActInfo",
    "EnsGambittsState",
    "FOGambittsState",
    "GLMTSState",
    "LinTSState",
    "METSGLMState",
    "METSState",
    "NumPyroTSState",
    "OptionalPromptingState",
    "POGambittsState",
    "PlannerSettings",
    "Policy",
    "RestlessContext",
    "RestlessOutcome",
    "RoundRobinState",
    "StandardTSState",
    "TransitionCounts",
    "bayes_restless_policy",
    "ens_fo_gambitts",
    "ens_po_gambitts",
    "fo_gambitts",
    "glm_ts",
    "hier_ts",
    "hier_ts_glm",
    "lin_ts",
    "lin_ucb",
    "mets",
    "mets_glm",
    "monte_carlo_propensity",
    "no_propensity",
    "numpyro_ts",
    "optional_prompting",
    "po_gambitts",
    "restless_policy",
    "standard_ts",
    "thompson_choice",
    "uniform_random",
]
