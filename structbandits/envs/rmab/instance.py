"""Restless-bandit instances as data: the validated arms every planner, policy and simulator reads.

A restless multi-armed bandit (RMAB) has N arms, each a finite MDP with S states and A actions
(A = 2 here: rest a=0, act a=1). Arm i moves s → s' with probability P[i, s, a, s'] and pays
r[i, s] in state s (the reward depends only on the current state, as in the equitable-RMAB paper).
Arms belong to G groups; a planner acts on exactly ``budget`` arms per round for ``horizon`` rounds.

``RestlessInstance`` holds those arrays, validated. Instances built from group-level parameters
(the reference code's domains, ``envs.rmab.domains``) use ``group_labels_from_fractions`` for the
group layout and ``sample_arm_parameters`` for the per-arm noise around the group means.
Planners and policies read the arrays (``agents.restless.RestlessContext``), never this class, so
only environments and the runner in ``experiments`` import it. The Bayesian program of the
transitions, ``restless_dirichlet``, is in ``models.restless``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import jax
import jax.numpy as jnp
import numpy as np

from structbandits.errors import (
    ValidationError,
    check_finite,
    check_integer,
    check_positive,
    check_shape,
    check_simplex,
)

__all__ = [
    "RestlessInstance",
    "group_labels_from_fractions",
    "replicate_group_rows",
    "sample_arm_parameters",
]


def _check_labels(name: str, value, num_arms: int | None, num_values: int | None = None) -> np.ndarray:
    arr = check_shape(name, value, (num_arms,))
    if not np.issubdtype(arr.dtype, np.integer):
        as_float = check_finite(name, arr)
        if not np.all(as_float == np.round(as_float)):
            raise ValidationError(f"{name}: expected integer labels, got {arr.dtype} values")
        arr = as_float.astype(np.int64)
    if arr.size and arr.min() < 0:
        raise ValidationError(f"{name}: expected labels >= 0, got a minimum of {arr.min()}")
    if num_values is not None and arr.size and arr.max() >= num_values:
        raise ValidationError(f"{name}: expected labels < {num_values}, got a maximum of {arr.max()}")
    return arr.astype(np.int64)


@dataclass(frozen=True, eq=False)
class RestlessInstance:
    """A validated restless-bandit instance (NumPy arrays; compared and hashed by identity).

    Attributes
    ----------
    transitions : (N, S, A, S) P[i, s, a, s'], every row P[i, s, a] on the simplex.
    rewards : (N, S) finite reward of arm i in state s (collected before the transition).
    groups : (N,) integer group label in 0..G-1; every group must have at least one arm.
    initial_probs : (N, S) distribution of each arm's start state (one-hot for a fixed start).
    horizon : H >= 1, the number of rounds.
    budget : B in 0..N, arms acted on per round.
    group_names : G names, for tables and plots (default "0", "1", ...).
    name : the domain's name.
    components : optional named (N, S) reward tables recorded alongside the reward (e.g. the
        engagement and health parts of the diabetes reward), for Pareto analyses.
    """

    transitions: np.ndarray
    rewards: np.ndarray
    groups: np.ndarray
    initial_probs: np.ndarray
    horizon: int
    budget: int
    group_names: tuple[str, ...] = ()
    name: str = "restless"
    components: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self):
        transitions = check_finite("transitions", self.transitions)
        if transitions.ndim != 4 or transitions.shape[1] != transitions.shape[3]:
            raise ValidationError(f"transitions: expected shape (N, S, A, S), got shape {transitions.shape}")
        num_arms, num_states, num_actions, _ = transitions.shape
        if num_arms < 1 or num_states < 1 or num_actions < 2:
            raise ValidationError(f"transitions: expected N >= 1 arms, S >= 1 states and A >= 2 actions, "
                                  f"got shape {transitions.shape}")
        check_simplex("transitions", transitions)
        rewards = check_finite("rewards", check_shape("rewards", self.rewards, (num_arms, num_states)))
        groups = _check_labels("groups", self.groups, num_arms)
        num_groups = int(groups.max()) + 1
        missing = np.setdiff1d(np.arange(num_groups), groups)
        if missing.size:
            raise ValidationError(f"groups: expected labels 0..G-1 with every group non-empty, "
                                  f"got no arm in group {int(missing[0])}")
        initial = check_simplex("initial_probs",
                                check_shape("initial_probs", self.initial_probs, (num_arms, num_states)))
        horizon = check_integer("horizon", self.horizon, minimum=1)
        budget = check_integer("budget", self.budget, minimum=0, maximum=num_arms)
        names = tuple(str(n) for n in self.group_names) or tuple(str(g) for g in range(num_groups))
        if len(names) != num_groups:
            raise ValidationError(f"group_names: expected {num_groups} names, got {len(names)}")
        components = {}
        for key, table in dict(self.components).items():
            components[str(key)] = check_finite(f"components[{key!r}]",
                                                check_shape(f"components[{key!r}]", table, (num_arms, num_states)))
        for attr, value in [("transitions", transitions), ("rewards", rewards), ("groups", groups),
                            ("initial_probs", initial), ("horizon", horizon), ("budget", budget),
                            ("group_names", names), ("components", components)]:
            object.__setattr__(self, attr, value)

    @property
    def num_arms(self) -> int:
        return self.transitions.shape[0]

    @property
    def num_states(self) -> int:
        return self.transitions.shape[1]

    @property
    def num_actions(self) -> int:
        return self.transitions.shape[2]

    @property
    def num_groups(self) -> int:
        return len(self.group_names)

    @property
    def group_sizes(self) -> np.ndarray:
        """(G,) number of arms per group."""
        return np.bincount(self.groups, minlength=self.num_groups)

    def with_budget(self, budget: int) -> RestlessInstance:
        """The same arms with another per-round budget."""
        return replace(self, budget=budget)

    def subset(self, arms) -> RestlessInstance:
        """The instance restricted to ``arms`` (indices), group labels re-numbered densely."""
        arms = np.asarray(arms, dtype=np.int64)
        labels, groups = np.unique(self.groups[arms], return_inverse=True)
        return RestlessInstance(
            self.transitions[arms], self.rewards[arms], groups, self.initial_probs[arms], self.horizon,
            min(self.budget, arms.size), tuple(self.group_names[g] for g in labels), self.name,
            {k: v[arms] for k, v in self.components.items()})


def group_labels_from_fractions(fractions: Sequence[float], num_arms: int) -> np.ndarray:
    """The reference code's group layout: contiguous blocks of ``int(N * frac)`` arms, in order.

    Arms left over by the rounding down stay in group 0 (the reference initialises its map with
    zeros), so with N=300 and the diabetes fractions the sizes are 53/45/60/45/37/60 and arm 299
    belongs to group 0. Returns (N,) int labels.
    """
    num_arms = check_integer("num_arms", num_arms, minimum=1)
    fracs = check_positive("fractions", fractions)
    if fracs.ndim != 1 or fracs.sum() > 1 + 1e-9:
        raise ValidationError(f"fractions: expected a 1-D sequence summing to at most 1, got {fracs.tolist()}")
    labels = np.zeros(num_arms, dtype=np.int64)
    start = 0
    for g, frac in enumerate(fracs):
        size = int(num_arms * float(frac))  # Python float product, as the reference does
        labels[start:start + size] = g
        start += size
    if np.any(np.bincount(labels, minlength=fracs.size) == 0):
        raise ValidationError(f"fractions: every group needs at least one of the {num_arms} arms, "
                              f"got sizes {np.bincount(labels, minlength=fracs.size).tolist()}")
    return labels


def sample_arm_parameters(
    key: jax.Array,
    group_means,
    groups,
    relative_sd: float,
    clip: tuple[float, float],
) -> np.ndarray:
    """Per-arm probabilities drawn around their group's means, as the reference's ``sample_prob``.

    p_arm ~ Normal(p_g, relative_sd · min(p_g, 1 − p_g)), then clipped to ``clip``.

    Parameters
    ----------
    key : the draws' key (the reference fixes one seed for every run, so arms are the same
        across trials and policies; pass a fixed key to reproduce that).
    group_means : (G, P) group-level probabilities.
    groups : (N,) group labels.
    relative_sd : the noise scale relative to the distance from 0 or 1 (0.2 maternal, 0.5 diabetes).
    clip : (low, high) bounds after the draw.

    Returns
    -------
    (N, P) float64 per-arm probabilities.
    """
    means = check_finite("group_means", group_means)
    if means.ndim != 2 or np.any(means < 0) or np.any(means > 1):
        raise ValidationError(f"group_means: expected a (G, P) array of probabilities, got shape {means.shape}")
    labels = _check_labels("groups", groups, None, means.shape[0])
    scale = float(check_positive("relative_sd", relative_sd, allow_zero=True))
    low, high = (float(c) for c in check_finite("clip", clip))
    if not 0 <= low <= high <= 1:
        raise ValidationError(f"clip: expected 0 <= low <= high <= 1, got ({low}, {high})")
    arm_means = means[labels]
    noise = np.asarray(jax.random.normal(key, arm_means.shape, dtype=jnp.float64))
    return np.clip(arm_means + scale * np.minimum(arm_means, 1 - arm_means) * noise, low, high)


def replicate_group_rows(group_values, groups) -> np.ndarray:
    """Per-arm copies of group-level arrays: ``group_values[groups]`` with validated labels."""
    values = np.asarray(group_values)
    labels = _check_labels("groups", groups, None, values.shape[0])
    return values[labels]
