"""Running a live study and analysing its log.

Running: ``OnlineAgent`` decides, logs and persists — decisions logged before they are returned,
delayed outcomes, snapshots that survive a crash, diagnostics of the live posterior. Analysing:
``LoggedStudy`` and its loaders (``logged``), off-policy value estimates with overlap diagnostics
(``analysis``), causal excursion effects (``excursion``) and the Open Bandit Pipeline export (``obp``).
scikit-learn is imported only when an outcome model is fitted. Does not belong here: the policies
themselves (``agents``, including ``agents.clipped`` for clipped randomisation probabilities) or
simulation (``experiments``).
"""

from structbandits.study.online import Decision, OnlineAgent
from structbandits.study.analysis import OffPolicyValue, OverlapDiagnostics, OverlapWarning, off_policy_value
from structbandits.study.logged import LoggedStudy, load_decision_log, load_table
from structbandits.study.obp import to_obp_bandit_feedback
from structbandits.study.excursion import ExcursionEffect, binary_contrast, excursion_effect, excursion_effect_from_log

__all__ = ["Decision", "OnlineAgent", "LoggedStudy", "OffPolicyValue", "OverlapDiagnostics", "OverlapWarning",
           "load_decision_log", "load_table", "off_policy_value", "to_obp_bandit_feedback",
           "ExcursionEffect", "binary_contrast", "excursion_effect", "excursion_effect_from_log"]
