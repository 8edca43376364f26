"""Policies: pure ``init`` / ``act`` / ``update`` functions over explicit pytree state.

Belongs here: decision rules (Thompson sampling, UCB, baselines) built on the posteriors of
``inference``. Does not belong here: posterior algebra (``inference``), simulators (``envs``), or
loops over rounds (``experiments`` scans them).

Every policy constructor (a function returning a ``Policy``) of the submodules is exported here,
with the state, params, context and settings types its users need.

Hyperparameters are data: each constructor puts its numeric hyperparameters (priors in the form the
policy computes with, noise variances, δ, Dirichlet concentrations, budgets, offline draws) into
``Policy.params``, a NamedTuple of arrays; ``init(key, params=None)`` stores them in the state and
``act`` / ``update`` read them from ``state.params``, so one compiled program serves every value of
them. Shapes and structural options (numbers of arms, draws, Newton steps, history sizes, planner and
pooling choices) stay fixed in the functions. To run a grid of values through one program, build a
policy per value, stack their params with ``stack_params`` and ``jax.vmap`` over them (the sweep
runner does this); pass ``without_params(policy)`` where a policy must be a static ``jax.jit``
argument. Constructors that build their functions once per structure (``shared_policy``: the
GAMBITTS agents and standard TS) return the same functions for every value of their params, so
policies differing only in values (another style column of the same width, another prior) share one
compiled program too. Details and an example: ``agents.protocol``.
"""

from structbandits.agents.bayes_restless import (
    LEARNING_PLANNERS,
    BayesRestlessForgettingParams,
    BayesRestlessParams,
    POOLING,
    SAMPLING,
    RestlessOutcome,
    TransitionCounts,
    TransitionCountsWindow,
    bayes_restless_policy,
)
from structbandits.agents.clipping import ClippedParams, ClippedState, clip_probabilities, clipped
from structbandits.agents.ens_gambitts import EnsGambittsParams, EnsGambittsState, ens_fo_gambitts, ens_po_gambitts
from structbandits.agents.gambitts import (
    FOGambittsParams,
    FOGambittsState,
    OptionalPromptingParams,
    OptionalPromptingState,
    POGambittsParams,
    POGambittsState,
    fo_gambitts,
    optional_prompting,
    po_gambitts,
)
from structbandits.agents.generic import NumPyroTSState, numpyro_ts
from structbandits.agents.glm import (
    GLMTSParams,
    GLMTSState,
    LaplacePrior,
    METSGLMParams,
    METSGLMState,
    glm_ts,
    hier_ts_glm,
    mets_glm,
)
from structbandits.agents.lin_ts_nig import LinTSNIGParams, LinTSNIGState, lin_ts_nig
from structbandits.agents.lin_ts_nig import LinTSNIGForgettingParams, LinTSNIGWindowState
from structbandits.agents.mets import METSParams, METSState, hier_ts, mets
from structbandits.agents.mets import METSForgettingParams, METSForgettingState
from structbandits.agents.propensity import monte_carlo_propensity, thompson_choice
from structbandits.agents.protocol import ActInfo, Policy, init_state, no_propensity, stack_params, without_params
from structbandits.agents.protocol import check_params
from structbandits.agents.random import uniform_random
from structbandits.agents.shared_functions import shared_policy
from structbandits.agents.restless import (
    EXACT_SETTINGS,
    POLICY_NAMES,
    HighRiskParams,
    PlannerParams,
    PlannerSettings,
    PlannerState,
    RestlessContext,
    RoundRobinState,
    restless_policy,
)
from structbandits.agents.reward_forgetting import FOGambittsForgettingParams, FOGambittsWindowState
from structbandits.agents.reward_forgetting import POGambittsForgettingParams, POGambittsWindowState
from structbandits.agents.standard_ts import StandardTSParams, StandardTSState, standard_ts
from structbandits.agents.standard_ts import StandardTSForgettingParams, StandardTSWindowState
from structbandits.agents.thompson import LinTSParams, LinTSState, lin_ts, lin_ts_two_arm_probabilities
from structbandits.agents.thompson import LinTSForgettingParams, LinTSWindowState
from structbandits.agents.ucb import LinUCBParams, lin_ucb

__all__ = [
    "EXACT_SETTINGS",
    "LEARNING_PLANNERS",
    "POLICY_NAMES",
    "POOLING",
    "SAMPLING",
    "ActInfo",
    "BayesRestlessForgettingParams",
    "BayesRestlessParams",
    "ClippedParams",
    "ClippedState",
    "EnsGambittsParams",
    "EnsGambittsState",
    "FOGambittsForgettingParams",
    "FOGambittsParams",
    "FOGambittsState",
    "FOGambittsWindowState",
    "GLMTSParams",
    "GLMTSState",
    "HighRiskParams",
    "LaplacePrior",
    "LinTSForgettingParams",
    "LinTSNIGForgettingParams",
    "LinTSNIGParams",
    "LinTSNIGState",
    "LinTSNIGWindowState",
    "LinTSParams",
    "LinTSState",
    "LinTSWindowState",
    "LinUCBParams",
    "METSGLMParams",
    "METSGLMState",
    "METSForgettingParams",
    "METSForgettingState",
    "METSParams",
    "METSState",
    "NumPyroTSState",
    "OptionalPromptingParams",
    "OptionalPromptingState",
    "POGambittsForgettingParams",
    "POGambittsParams",
    "POGambittsState",
    "POGambittsWindowState",
    "PlannerParams",
    "PlannerSettings",
    "PlannerState",
    "Policy",
    "RestlessContext",
    "RestlessOutcome",
    "RoundRobinState",
    "StandardTSForgettingParams",
    "StandardTSParams",
    "StandardTSState",
    "StandardTSWindowState",
    "TransitionCounts",
    "TransitionCountsWindow",
    "bayes_restless_policy",
    "check_params",
    "clip_probabilities",
    "clipped",
    "ens_fo_gambitts",
    "ens_po_gambitts",
    "fo_gambitts",
    "glm_ts",
    "hier_ts",
    "hier_ts_glm",
    "init_state",
    "lin_ts",
    "lin_ts_nig",
    "lin_ts_two_arm_probabilities",
    "lin_ucb",
    "mets",
    "mets_glm",
    "monte_carlo_propensity",
    "no_propensity",
    "numpyro_ts",
    "optional_prompting",
    "po_gambitts",
    "restless_policy",
    "shared_policy",
    "stack_params",
    "standard_ts",
    "thompson_choice",
    "uniform_random",
    "without_params",
]
