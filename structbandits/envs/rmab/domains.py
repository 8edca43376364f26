"""The three domains of the equitable-RMAB paper, with the reference code's parameters.

* ``synthetic_domain``: 2 states (reward 0, 1), 5 groups A-E with fractions .25/.25/.05/.25/.20,
  every arm of a group identical, uniform random start. N=100 gives sizes 25/25/5/25/20.
* ``maternal_domain``: 3 states (self-motivated 1, persuadable 0.5, lost cause 0), 3 groups; the
  variant "A", "B" or "C" puts 60% of the arms in that group (20% in the others). Per-arm
  probabilities ~ Normal(p, 0.2·min(p, 1−p)) clipped to [1e-3, 1−1e-3]; the complement of each goes
  to state 1. Uniform random start. N=200 gives 120/40/40 (A), 40/120/40 (B), 40/40/120 (C).
* ``diabetes_domain``: engagement (dropout, maintenance, engaged) × A1c (>=8, <8) × a memory of the
  last two engagement values (dropout stored as maintenance), 24 states, 6 age × sex groups.
  Per-arm probabilities ~ Normal(p, 0.5·min(p, 1−p)) clipped to [0.025, 0.975]. The A1c transition
  uses the *older* memory slot (a two-step lag). Every arm starts (engaged, A1c>=8, memory (M, M)).
  Reward λ·engagement + (1−λ)·health. N=300 gives 53/45/60/45/37/60.

Groups are laid out as in the reference (``group_labels_from_fractions``). Per-arm draws use one
fixed key (``arms_key``, default ``PRNGKey(0)``) for every trial and policy, as the reference fixes
its environment seed 0 for the parameter draws; the draws are statistically, not bit-for-bit, those
of the reference (NumPy's legacy RandomState cannot be reproduced in JAX).

Deviation: the reference's diabetes state space has 11 more inert "streaming countdown" states
(35 in all), unreachable when every arm is active from the start (the paper's setting); they are
left out here, which changes no dynamics.
"""

from __future__ import annotations

import jax
import numpy as np

from structbandits.envs.rmab.instance import (
    RestlessInstance,
    group_labels_from_fractions,
    replicate_group_rows,
    sample_arm_parameters,
)
from structbandits.errors import ValidationError, check_finite, check_integer

__all__ = [
    "DIABETES_GROUPS",
    "MATERNAL_GROUPS",
    "SYNTHETIC_GROUPS",
    "diabetes_domain",
    "diabetes_state",
    "high_a1c_states",
    "maternal_domain",
    "synthetic_domain",
]

# group: (frac, P(s'=1 | s0,a0), P(s'=1 | s1,a0), P(s'=1 | s0,a1), P(s'=1 | s1,a1))
SYNTHETIC_GROUPS = {
    "A": (0.25, 0.05, 0.35, 0.99, 0.99),
    "B": (0.25, 0.05, 0.10, 0.95, 0.95),
    "C": (0.05, 0.05, 0.05, 0.90, 0.90),
    "D": (0.25, 0.40, 0.40, 0.40, 0.40),
    "E": (0.20, 0.40, 0.40, 0.40, 0.40),
}

# group: (p000, p010, p102, p110, p202, p212); pSAX = P(s -> X | a), the rest goes to state 1.
MATERNAL_GROUPS = {
    "A": (0.5, 0.5, 0.75, 0.75, 0.6, 0.6),
    "B": (0.5, 0.5, 0.6, 0.4, 0.6, 0.6),
    "C": (0.5, 0.5, 0.6, 0.25, 0.6, 0.6),
}

# Columns: p_i_mtoe, p_i_mtod, p_i_etoe, p_u_mtod, p_noeng_gl, p_noeng_ll, p_eng_gl, p_eng_ll, frac.
DIABETES_GROUPS = {
    "M 30-44": (0.5599315068, 0.03, 0.99, 0.122, 0.07136432137, 0.992116888, 0.08920540171, 0.994087666, 0.175),
    "M 45-54": (0.783390411, 0.03, 0.99, 0.093, 0.07371649243, 0.9904819321, 0.1105747386, 0.9952409661, 0.15),
    "M 55-64": (0.9066780822, 0.03, 0.99, 0.077, 0.07995400546, 0.9934955629, 0.1399195096, 0.9983738907, 0.2),
    "F 30-44": (0.5599315068, 0.03, 0.99, 0.122, 0.06922988221, 0.9920934041, 0.08653735277, 0.9940700531, 0.15),
    "F 45-54": (0.783390411, 0.03, 0.99, 0.093, 0.06963566994, 0.9926523136, 0.1044535049, 0.9963261568, 0.125),
    "F 55-64": (0.9066780822, 0.03, 0.99, 0.077, 0.0845750231, 0.9949623455, 0.1480062904, 0.9987405864, 0.2),
}

DROPOUT, MAINTENANCE, ENGAGED = 0, 1, 2
MEMORY = [(1, 1), (1, 2), (2, 1), (2, 2)]


def _uniform_start(num_arms: int, num_states: int) -> np.ndarray:
    return np.full((num_arms, num_states), 1.0 / num_states)


def synthetic_domain(num_arms: int = 100, budget: int = 10, horizon: int = 20) -> RestlessInstance:
    """The synthetic domain (groups A-E); see the module docstring."""
    num_arms = check_integer("num_arms", num_arms, minimum=1)
    table = np.array(list(SYNTHETIC_GROUPS.values()))
    groups = group_labels_from_fractions(table[:, 0], num_arms)
    up = np.empty((len(table), 2, 2))  # [g, s, a] = P(s' = 1)
    up[:, 0, 0], up[:, 1, 0], up[:, 0, 1], up[:, 1, 1] = table[:, 1], table[:, 2], table[:, 3], table[:, 4]
    group_p = np.stack([1.0 - up, up], axis=-1)
    return RestlessInstance(replicate_group_rows(group_p, groups), np.tile([0.0, 1.0], (num_arms, 1)), groups,
                            _uniform_start(num_arms, 2), horizon, budget, tuple(SYNTHETIC_GROUPS), "synthetic")


def maternal_transitions(params: np.ndarray) -> np.ndarray:
    """Per-arm maternal transitions (N, 3, 2, 3) from (N, 6) probabilities (p000 .. p212)."""
    p000, p010, p102, p110, p202, p212 = params.T
    zero = np.zeros_like(p000)
    rows = [
        [[p000, 1 - p000, zero], [p010, 1 - p010, zero]],
        [[zero, 1 - p102, p102], [p110, 1 - p110, zero]],
        [[zero, 1 - p202, p202], [zero, 1 - p212, p212]],
    ]
    return np.moveaxis(np.array(rows), -1, 0)


def maternal_domain(variant: str = "A", num_arms: int = 200, budget: int = 20, horizon: int = 20,
                    arms_key: jax.Array | None = None) -> RestlessInstance:
    """The maternal-health domain with 60% of the arms in group ``variant``; see the module docstring."""
    if variant not in MATERNAL_GROUPS:
        raise ValidationError(f"variant: expected one of {list(MATERNAL_GROUPS)}, got {variant!r}")
    num_arms = check_integer("num_arms", num_arms, minimum=1)
    fractions = [0.6 if name == variant else 0.2 for name in MATERNAL_GROUPS]
    groups = group_labels_from_fractions(fractions, num_arms)
    key = jax.random.PRNGKey(0) if arms_key is None else arms_key
    params = sample_arm_parameters(key, np.array(list(MATERNAL_GROUPS.values())), groups, 0.2, (1e-3, 1 - 1e-3))
    return RestlessInstance(maternal_transitions(params), np.tile([1.0, 0.5, 0.0], (num_arms, 1)), groups,
                            _uniform_start(num_arms, 3), horizon, budget, tuple(MATERNAL_GROUPS),
                            f"maternal-{variant}")


def diabetes_state(engagement, a1c_below_8, memory_index):
    """State index 8·engagement + 4·A1c + memory index (memory in [(M,M), (M,E), (E,M), (E,E)])."""
    return 8 * np.asarray(engagement) + 4 * np.asarray(a1c_below_8) + np.asarray(memory_index)


def high_a1c_states() -> np.ndarray:
    """(24,) bool: the diabetes states with A1c >= 8 (the HR-RR / HR-Rand baselines' risk set)."""
    return (np.arange(24) // 4) % 2 == 0


def diabetes_transitions(params: np.ndarray) -> np.ndarray:
    """Per-arm diabetes transitions (N, 24, 2, 24) from (N, 8) probabilities in the column order
    p_i_mtoe, p_i_mtod, p_i_etoe, p_u_mtod, p_noeng_gl, p_noeng_ll, p_eng_gl, p_eng_ll."""
    num_arms = params.shape[0]
    i_mtoe, i_mtod, i_etoe, u_mtod, noeng_gl, noeng_ll, eng_gl, eng_ll = params.T
    engagement = np.zeros((num_arms, 3, 2, 3))  # [i, e, a, e']
    engagement[:, DROPOUT, :, DROPOUT] = 1.0
    engagement[:, MAINTENANCE, 0, DROPOUT] = u_mtod
    engagement[:, MAINTENANCE, 0, MAINTENANCE] = 1 - u_mtod
    engagement[:, MAINTENANCE, 1, ENGAGED] = i_mtoe
    engagement[:, MAINTENANCE, 1, DROPOUT] = i_mtod
    engagement[:, MAINTENANCE, 1, MAINTENANCE] = 1 - i_mtoe - i_mtod
    engagement[:, ENGAGED, 0, MAINTENANCE] = 1.0
    engagement[:, ENGAGED, 1, ENGAGED] = i_etoe
    engagement[:, ENGAGED, 1, MAINTENANCE] = 1 - i_etoe
    # The reference clips negative entries (e.g. i_mtoe + i_mtod > 1 after noise) and renormalises.
    engagement = np.maximum(engagement, 0.0)
    engagement /= engagement.sum(-1, keepdims=True)
    # A1c: [i, engaged two steps back?, h, h'] with h = 1 meaning A1c < 8.
    to_low = np.stack([np.stack([noeng_gl, noeng_ll], -1), np.stack([eng_gl, eng_ll], -1)], 1)
    health = np.stack([1 - to_low, to_low], -1)
    transitions = np.zeros((num_arms, 24, 2, 24))
    for e in range(3):
        for h in range(2):
            for m, (m0, m1) in enumerate(MEMORY):
                s = diabetes_state(e, h, m)
                next_memory = MEMORY.index((max(1, e), m0))
                lagged = int(m1 == ENGAGED)
                for e2 in range(3):
                    for h2 in range(2):
                        s2 = diabetes_state(e2, h2, next_memory)
                        transitions[:, s, :, s2] = engagement[:, e, :, e2] * health[:, lagged, h, h2][:, None]
    return transitions


def diabetes_domain(alpha: float = 0.5, num_arms: int = 300, budget: int = 30, horizon: int = 20,
                    arms_key: jax.Array | None = None) -> RestlessInstance:
    """The digital-diabetes domain with reward ``alpha``·engagement + (1 − ``alpha``)·health.

    The instance carries the two reward parts as ``components`` "engagement" and "health".
    """
    alpha = float(check_finite("alpha", alpha))
    if not 0 <= alpha <= 1:
        raise ValidationError(f"alpha: expected a weight in [0, 1], got {alpha}")
    num_arms = check_integer("num_arms", num_arms, minimum=1)
    table = np.array(list(DIABETES_GROUPS.values()))
    groups = group_labels_from_fractions(table[:, 8], num_arms)
    key = jax.random.PRNGKey(0) if arms_key is None else arms_key
    params = sample_arm_parameters(key, table[:, :8], groups, 0.5, (0.025, 0.975))
    states = np.arange(24)
    engaged = (states // 8 != DROPOUT).astype(float)
    healthy = ((states // 4) % 2 == 1).astype(float)
    start = np.zeros((num_arms, 24))
    start[:, diabetes_state(ENGAGED, 0, 0)] = 1.0
    components = {"engagement": np.tile(engaged, (num_arms, 1)), "health": np.tile(healthy, (num_arms, 1))}
    return RestlessInstance(diabetes_transitions(params), np.tile(alpha * engaged + (1 - alpha) * healthy, (num_arms, 1)),
                            groups, start, horizon, budget, tuple(DIABETES_GROUPS), f"diabetes-alpha{alpha:g}",
                            components)
