"""Export a logged study to Open Bandit Pipeline's ``bandit_feedback`` dict.

Open Bandit Pipeline (``obp``) takes logged data as the dict its datasets'
``obtain_batch_bandit_feedback`` return; its estimators (``obp.ope.OffPolicyEvaluation``) read
``action``, ``reward``, ``pscore``, ``position`` and ``context`` from it and reject propensities that
are not positive ("pscore must be positive"). A ``LoggedStudy``'s propensities are in (0, 1] by
validation, so what this module writes passes that check. (``obp`` does not install on Python >= 3.11;
the dict is plain NumPy, so it can be saved with ``numpy.savez`` and loaded where ``obp`` runs.)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from structbandits.errors import ValidationError, check_finite, check_shape
from structbandits.study.logged import LoggedStudy

__all__ = ["to_obp_bandit_feedback"]


def to_obp_bandit_feedback(study: LoggedStudy, *, action_context: Any = None) -> dict[str, Any]:
    """The study as OBP's ``bandit_feedback`` dict.

    Parameters
    ----------
    study : a ``LoggedStudy``.
    action_context : (K, d_a) features of the actions (OBP's ``action_context``); default the one-hot
        identity (K, K), as OBP's synthetic datasets use.

    Returns
    -------
    dict with the keys OBP documents for ``bandit_feedback``:
    ``n_rounds`` (int n), ``n_actions`` (int K), ``action`` (n,) int64, ``position`` (n,) int64 zeros
    (one slot per round: OBP's ``len_list`` 1), ``reward`` (n,) float64, ``pscore`` (n,) float64 (the logged
    propensities, all > 0), ``context`` (n, p) float64 (the study's features), ``action_context``
    (K, d_a); and ``pi_b`` (n, K, 1), the logger's action distribution, when the study recorded it.
    """
    if not isinstance(study, LoggedStudy):
        raise ValidationError(f"study: expected a LoggedStudy (study.logged), got {type(study).__name__}")
    k, n = study.num_actions, study.num_decisions
    if action_context is None:
        action_context = np.eye(k, dtype=np.int64)
    else:
        action_context = check_finite("action_context", action_context)
        if action_context.ndim == 1:
            action_context = action_context[:, None]
        check_shape("action_context", action_context, (k, None))
    feedback = {
        "n_rounds": int(n),
        "n_actions": int(k),
        "action": study.actions.astype(np.int64),
        "position": np.zeros(n, dtype=np.int64),
        "reward": study.rewards.astype(np.float64),
        "pscore": study.propensities.astype(np.float64),
        "context": study.features.astype(np.float64),
        "action_context": action_context,
    }
    if study.action_probabilities is not None:
        feedback["pi_b"] = study.action_probabilities[:, :, None].astype(np.float64)
    return feedback
