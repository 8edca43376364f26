"""Policies: pure ``init`` / ``act`` / ``update`` functions over explicit pytree state.

Belongs here: decision rules (Thompson sampling, UCB, baselines) built on the posteriors of
``inference``. Does not belong here: posterior algebra (``inference``), simulators (``envs``), or
loops over rounds (``experiments`` scans them).
"""

from structbandits.agents.mets import METSState, hier_ts, mets
from structbandits.agents.protocol import ActInfo, Policy
from structbandits.agents.random import uniform_random
from structbandits.agents.thompson import LinTSState, lin_ts

__all__ = ["ActInfo", "LinTSState", "METSState", "Policy", "hier_ts", "lin_ts", "mets", "uniform_random"]
