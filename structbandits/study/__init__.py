"""Running a live study and analysing its log.

Running: ``OnlineAgent`` decides and learns against a decision store (``store``: SQLite by default, any
SQLAlchemy URL) that several processes may share — decisions committed before they are returned,
delayed and idempotent outcomes, restarts that continue bit-identically, CSV export, diagnostics of
the live posterior. Analysing: ``LoggedStudy`` and its loaders (``logged``: a store, a CSV export, a
table), off-policy value estimates with overlap diagnostics (``analysis``), causal excursion effects
(``excursion``) and the Open Bandit Pipeline export (``obp``).
The names below are imported on first use (PEP 562), so a process that only runs an agent (a study's
worker or service) does not pay for pandas and SciPy; scikit-learn is imported only when an outcome
model is fitted. Does not belong here: the policies
themselves (``agents``, including ``agents.clipped`` for clipped randomisation probabilities) or
simulation (``experiments``).
"""

from typing import TYPE_CHECKING

from structbandits.lazy_exports import lazy_exports

_EXPORTS = {
    "Decision": "online", "OnlineAgent": "online", "DecisionStore": "store",
    "OffPolicyValue": "analysis", "OverlapDiagnostics": "analysis", "OverlapWarning": "analysis",
    "off_policy_value": "analysis", "LoggedStudy": "logged", "load_decision_log": "logged", "load_results": "logged", "load_store": "logged",
    "load_table": "logged", "to_obp_bandit_feedback": "obp", "ExcursionEffect": "excursion",
    "binary_contrast": "excursion", "excursion_effect": "excursion", "excursion_effect_from_log": "excursion",
    "StudyFile": "study_file", "load_study_file": "study_file", "build_policy": "study_file", "create_app": "service",
}
__all__ = ["Decision", "DecisionStore", "ExcursionEffect", "LoggedStudy", "OffPolicyValue", "OnlineAgent",
           "OverlapDiagnostics", "OverlapWarning", "binary_contrast", "excursion_effect", "excursion_effect_from_log",
           "load_decision_log", "load_results", "load_store", "load_table", "off_policy_value", "to_obp_bandit_feedback"]
__all__ += ["StudyFile", "build_policy", "create_app", "load_study_file"]

if TYPE_CHECKING:  # what static tools see; at run time ``__getattr__`` imports each on first use
    from structbandits.study.analysis import OffPolicyValue, OverlapDiagnostics, OverlapWarning, off_policy_value
    from structbandits.study.excursion import ExcursionEffect, binary_contrast, excursion_effect, excursion_effect_from_log
    from structbandits.study.logged import LoggedStudy, load_decision_log, load_results, load_store, load_table
    from structbandits.study.obp import to_obp_bandit_feedback
    from structbandits.study.online import Decision, OnlineAgent
    from structbandits.study.store import DecisionStore
    from structbandits.study.study_file import StudyFile, build_policy, load_study_file
    from structbandits.study.service import create_app


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
