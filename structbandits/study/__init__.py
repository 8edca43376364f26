"""Running a live study: an agent that decides, logs and persists (``OnlineAgent``).

Belongs here: what a real study needs around a policy of ``agents`` — decisions logged before they
are returned, delayed outcomes, snapshots that survive a crash, and diagnostics of the live
posterior. Does not belong here: the policies themselves (``agents``) or simulation (``experiments``).
"""

from structbandits.study.online import Decision, OnlineAgent

__all__ = ["Decision", "OnlineAgent"]
