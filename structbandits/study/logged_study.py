"""``LoggedStudy``, a logged study as validated arrays (moved from ``study.logged``, which re-exports it
and holds the loaders), and the refusal ``NO_CONTEXTS`` the loaders give a log without contexts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from structbandits.errors import ValidationError, check_finite, check_integer, check_shape

__all__ = ["LoggedStudy", "NO_CONTEXTS"]

NO_CONTEXTS = ("this results folder carries no contexts; off-policy evaluation needs the context of every decision: "
               "run the simulation with its contexts recorded (structbandits run records them where a round's context "
               "has at most 32 numbers; run_experiment(contexts=True)), run the study with OnlineAgent (a decision store, "
               "or its CSV export), or write a CSV/Parquet table with columns action, reward, propensity and feature "
               "columns x0, x1, ...")
_RESULTS_FILES = ("results.parquet", "results.csv")


@dataclass(frozen=True)
class LoggedStudy:
    """The decisions of a logged study as arrays; validated on construction.

    Attributes
    ----------
    features : (n, p) float64, each decision's context flattened to a feature vector. A pytree
        context (dict, NamedTuple) is flattened leaf by leaf in its ``ContextSpec`` order (JAX's
        flattening order, the order the decision log stores the leaves in), each leaf raveled in C
        order, and the pieces concatenated. An array context of shape (K, d) gives K * d features.
    actions : (n,) int64 in [0, num_actions), the action taken.
    rewards : (n,) float64, finite, the reward that followed it.
    propensities : (n,) float64 in (0, 1], the probability the logger took the logged action with.
    num_actions : K >= 2 (the size of the action set, including arms the log never took).
    action_probabilities : optional (n, K), the logger's probability of every action (rows sum to 1,
        the logged action's entry equal to ``propensities``); None when only the taken action's was logged.
    decision_ids : optional (n,) int64, the decisions' ids in the log.
    times : optional (n,) ``datetime64[ns]`` (UTC), when the decisions were made.
    feature_names : optional tuple of p names of the feature columns.
    num_without_outcome : decisions dropped by the loader because no reward was observed for them.
    """

    features: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    propensities: np.ndarray
    num_actions: int
    action_probabilities: np.ndarray | None = None
    decision_ids: np.ndarray | None = None
    times: np.ndarray | None = None
    feature_names: tuple[str, ...] | None = None
    num_without_outcome: int = 0

    def __post_init__(self) -> None:
        def per_decision(name: str, value: np.ndarray) -> np.ndarray:
            if value.shape != (n,):
                raise ValidationError(f"{name}: expected shape ({n},), one entry per decision (features has {n} rows), "
                                      f"got shape {value.shape}")
            return value

        put = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen dataclass)
        num_actions = check_integer("num_actions", self.num_actions, minimum=2)
        put("num_actions", num_actions)
        features = check_finite("features", self.features)
        if features.ndim == 1:
            features = features[:, None]
        check_shape("features", features, (None, None))
        n = features.shape[0]
        if n < 2:
            raise ValidationError(f"features: expected at least 2 decisions (rows), got {n}")
        put("features", features)
        actions = np.asarray(self.actions)
        per_decision("actions", actions)
        actions = check_finite("actions", actions)
        if np.any(actions != np.round(actions)) or np.any(actions < 0) or np.any(actions >= num_actions):
            bad = actions[(actions != np.round(actions)) | (actions < 0) | (actions >= num_actions)][0]
            raise ValidationError(f"actions: expected integers in [0, {num_actions}) (num_actions {num_actions}), got {bad}")
        put("actions", actions.astype(np.int64))
        put("rewards", per_decision("rewards", check_finite("rewards", self.rewards)))
        try:
            propensities = np.asarray(self.propensities, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValidationError(f"propensities: expected numbers, got {self.propensities!r}") from None
        per_decision("propensities", propensities)
        if np.any(np.isnan(propensities)):
            raise ValidationError(f"propensities: expected the logged probability of every action taken, got NaN at "
                                  f"decision {int(np.flatnonzero(np.isnan(propensities))[0])} (a policy that does not "
                                  "report propensities cannot be evaluated off-policy)")
        outside = ~((propensities > 0) & (propensities <= 1))
        if np.any(outside):
            zero = " (a Monte-Carlo estimate from too few draws; log with agents.clipped(...) for exact, " \
                   "bounded probabilities)" if propensities[outside][0] == 0 else ""
            raise ValidationError(f"propensities: expected probabilities in (0, 1] (the action taken had a positive chance), "
                                  f"got {propensities[outside][0]} at decision {int(np.flatnonzero(outside)[0])}{zero}")
        put("propensities", propensities)
        if self.action_probabilities is not None:
            probabilities = check_finite("action_probabilities", self.action_probabilities)
            check_shape("action_probabilities", probabilities, (n, num_actions))
            if np.any(probabilities < 0) or np.any(np.abs(probabilities.sum(axis=1) - 1) > 1e-6):
                raise ValidationError("action_probabilities: expected rows of probabilities summing to 1")
            taken = probabilities[np.arange(n), actions.astype(np.int64)]
            if not np.allclose(taken, propensities, rtol=1e-6, atol=1e-9):
                i = int(np.flatnonzero(~np.isclose(taken, propensities, rtol=1e-6, atol=1e-9))[0])
                raise ValidationError(f"action_probabilities: expected the logged action's entry to equal its propensity, "
                                      f"got {taken[i]} against {propensities[i]} at decision {i}")
            put("action_probabilities", probabilities)
        if self.decision_ids is not None:
            put("decision_ids", per_decision("decision_ids", np.asarray(self.decision_ids, dtype=np.int64)))
        if self.times is not None:
            put("times", per_decision("times", np.asarray(self.times, dtype="datetime64[ns]")))
        if self.feature_names is not None:
            names = tuple(str(name) for name in self.feature_names)
            if len(names) != features.shape[1]:
                raise ValidationError(f"feature_names: expected {features.shape[1]} names, got {len(names)}")
            put("feature_names", names)
        put("num_without_outcome", check_integer("num_without_outcome", self.num_without_outcome, minimum=0))

    @property
    def num_decisions(self) -> int:
        """n, the decisions with an observed reward."""
        return int(self.features.shape[0])
