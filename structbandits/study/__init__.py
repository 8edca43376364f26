"""Running a live study: an agent that decides, logs and persists (``OnlineAgent``).

Belongs here: what a real study needs around a policy of ``agents`` — decisions logged before they
are returned, delayed outcomes, snapshots that survive a crash, and diagnostics of the live
posterior. Does not belong here: the policies themselves (``agents``) or simulation (``experiments``).
"""

from structbandits.study.online import Decision, OnlineAgent
from structbandits.study.analysis import OffPolicyValue, OverlapDiagnostics, OverlapWarning, off_policy_value
from structbandits.study.logged import LoggedStudy, load_decision_log, load_table
from structbandits.study.obp import to_obp_bandit_feedback
from structbandits.study.excursion import ExcursionEffect, binary_contrast, excursion_effect, excursion_effect_from_log

__all__ = ["Decision", "OnlineAgent", "LoggedStudy", "OffPolicyValue", "OverlapDiagnostics", "OverlapWarning",
           "load_decision_log", "load_table", "off_policy_value", "to_obp_bandit_feedback",
           "ExcursionEffect", "binary_contrast", "excursion_effect", "excursion_effect_from_log"]
