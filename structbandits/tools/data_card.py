"""The response database's data card numbers: does each style score carry the requested style?

* ``prompt_auc``: per style, the probability that a message asked for "<style>-high" scores higher on
  that style than one asked for "<style>-low" (the area under the ROC curve, ties counted half):
  0.5 = the score does not see the request, 1 = it always does. The database messages are never used
  to fit the scorers, so this is held out by construction.
* ``graded_auc``: the same on the held-out graded messages, grades 6..10 against grades 0..4.
* ``style_correlations``: Pearson's r over the database messages between a reference style's score
  and the others' (the paper's Table 1 reports optimism's: encouragement −0.96, severity 0.79,
  clarity 0.18, formality −0.10; the misspecification experiment depends on them).
* ``rejection_report``: how many generated messages a rule (``envs.meta_talk``) rejected.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

__all__ = ["auc", "graded_auc", "prompt_auc", "rejection_report", "style_correlations"]


def auc(high, low) -> float:
    """P(a score of ``high`` > one of ``low``) + P(tie) / 2 (scikit-learn's ROC AUC); NaN when either is empty."""
    high, low = np.asarray(high, dtype=float), np.asarray(low, dtype=float)
    if len(high) == 0 or len(low) == 0:
        return float("nan")
    labels = np.concatenate([np.ones(len(high)), np.zeros(len(low))])
    return float(roc_auc_score(labels, np.concatenate([high, low])))


def prompt_auc(database: pd.DataFrame, styles: Sequence[str], prefix: str = "") -> dict[str, float]:
    """Per style with both prompts in ``database``: AUC of column ``prefix + style``, "-high" vs "-low" messages."""
    out = {}
    for style in styles:
        high = database.loc[database["prompt_id"] == f"{style}-high", prefix + style]
        low = database.loc[database["prompt_id"] == f"{style}-low", prefix + style]
        if len(high) and len(low):
            out[style] = auc(high, low)
    return out


def graded_auc(graded: pd.DataFrame, score: str) -> dict[str, float]:
    """Per style, AUC of column ``score`` on the held-out graded messages (``split`` "test"), grade >= 6 vs <= 4."""
    test = graded[graded["split"] == "test"]
    return {style: auc(rows.loc[rows["grade"] >= 6, score], rows.loc[rows["grade"] <= 4, score])
            for style, rows in test.groupby("style", sort=False)}


def style_correlations(database: pd.DataFrame, styles: Sequence[str], reference: str = "optimism",
                       prefix: str = "") -> dict[str, float]:
    """Pearson's r between column ``prefix + reference`` and each other style's column over the rows."""
    if prefix + reference not in database.columns:
        return {}
    ref = database[prefix + reference].to_numpy(float)
    return {s: float(np.corrcoef(ref, database[prefix + s].to_numpy(float))[0, 1])
            for s in styles if s != reference and prefix + s in database.columns}


def rejection_report(attempts: pd.DataFrame, final: pd.DataFrame) -> dict:
    """Counts of a re-prompted generation: ``attempts`` has one row per try (columns ``try``, ``rejected``),
    ``final`` one row per task (``tries``, ``rejected``: the chosen try's reason or None)."""
    rejected = attempts["rejected"].notna()
    first = attempts[attempts["try"] == 0]
    return {
        "attempts": int(len(attempts)),
        "rejected_attempts": int(rejected.sum()),
        "rejection_rate": float(rejected.mean()) if len(attempts) else float("nan"),
        "first_try_rejection_rate": float(first["rejected"].notna().mean()) if len(first) else float("nan"),
        "rejected_by_rule": {str(k): int(v) for k, v in attempts.loc[rejected, "rejected"].value_counts().items()},
        "tasks": int(len(final)),
        "tasks_still_rejected_after_max_tries": int(final["rejected"].notna().sum()),
        "mean_tries": float(final["tries"].mean()) if len(final) else float("nan"),
    }
