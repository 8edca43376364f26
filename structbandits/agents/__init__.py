"""Policies: pure ``init`` / ``act`` / ``update`` functions over explicit pytree state.

Belongs here: decision rules (Thompson sampling, UCB, baselines) built on the posteriors of
``inference``. Does not belong here: posterior algebra (``inference``), simulators (``envs``), or
loops over rounds (``experiments`` scans them).
"""

from structbandits.agents.generic import NumPyroTSState, numpyro_ts
from structbandits.agents.glm import GLMTSState, METSGLMState, glm_ts, hier_ts_glm, mets_glm
from structbandits.agents.mets import METSState, hier_ts, mets
from structbandits.agents.online import Decision, OnlineAgent
from structbandits.agents.protocol import ActInfo, Policy
from structbandits.agents.random import uniform_random
from structbandits.agents.thompson import LinTSState, lin_ts
from structbandits.agents.ucb import lin_ucb

__all__ = [
    "ActInfo",
    "Decision",
    "GLMTSState",
    "LinTSState",
    "METSGLMState",
    "METSState",
    "NumPyroTSState",
    "OnlineAgent",
    "Policy",
    "glm_ts",
    "hier_ts",
    "hier_ts_glm",
    "lin_ts",
    "lin_ucb",
    "mets",
    "mets_glm",
    "numpyro_ts",
    "uniform_random",
]
