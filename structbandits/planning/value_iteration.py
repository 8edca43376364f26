"""Finite-horizon value iteration of single arms under an action charge, vectorised over arms.

For one arm with transitions P (S, A, S), rewards r (S,) and a charge λ per unit of action
(action a costs λ·a, so a=1 "act" pays λ and a=0 "rest" pays nothing):

    V_0 = 0,   Q_k(s, a) = r(s) − λ·a + γ Σ_s' P[s, a, s'] V_{k−1}(s'),   V_k = max_a Q_k

after k = T stages Q_T is the value of taking a in s with T rounds left (T reward terms, the
reward of the current state first, no terminal reward), as in the reference code. The horizon may
be a traced integer, so one compiled function serves every round's remaining horizon.

The public functions validate their inputs and run jitted cores that ``vmap`` over arms and over
charges; nothing loops over arms in Python. Planners in this package call the cores directly.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from structbandits.errors import ValidationError, check_finite, check_integer, check_shape, check_simplex

__all__ = [
    "REFERENCE_GAMMA",
    "arm_values",
    "check_arms",
    "discounted_horizon",
    "q_values",
    "stage_q_values",
]

REFERENCE_GAMMA = 0.9999
"""The discount the reference code passes to every planner (γ = 0.9999)."""


def check_arms(transitions, rewards) -> tuple[np.ndarray, np.ndarray]:
    """Validate per-arm transitions (N, S, A, S) with simplex rows and finite rewards (N, S)."""
    probs = check_finite("transitions", transitions)
    if probs.ndim != 4 or probs.shape[1] != probs.shape[3] or probs.shape[2] < 2:
        raise ValidationError(f"transitions: expected shape (N, S, A, S) with A >= 2, got shape {probs.shape}")
    check_simplex("transitions", probs)
    rew = check_finite("rewards", check_shape("rewards", rewards, probs.shape[:2]))
    return probs, rew


def check_states(name: str, states, num_arms: int, num_states: int) -> np.ndarray:
    """Validate one integer state per arm, (N,) in 0..S-1."""
    arr = check_shape(name, states, (num_arms,))
    if not np.issubdtype(arr.dtype, np.integer) or (arr.size and (arr.min() < 0 or arr.max() >= num_states)):
        raise ValidationError(f"{name}: expected integer states in 0..{num_states - 1}, got {arr.dtype} values "
                              f"in [{arr.min() if arr.size else ''}, {arr.max() if arr.size else ''}]")
    return arr


def check_gamma(gamma) -> float:
    """Validate a discount γ in (0, 1]."""
    value = float(check_finite("gamma", gamma))
    if not 0 < value <= 1:
        raise ValidationError(f"gamma: expected a discount in (0, 1], got {value}")
    return value


def discounted_horizon(horizon, gamma):
    """Σ_{t<T} γ^t, the discounted number of rounds (jittable; T may be traced)."""
    gamma = jnp.asarray(gamma, dtype=jnp.float64)
    t = jnp.asarray(horizon, dtype=jnp.float64)
    # Times the reciprocal rather than a division: what XLA makes of the division when γ is a constant,
    # so a traced γ (hyperparameters as data) gives the same bits as the constant did.
    return jnp.where(gamma == 1.0, t, (1.0 - gamma**t) * (1.0 / (1.0 - jnp.where(gamma == 1.0, 0.5, gamma))))


def _backward_induction(transitions: jax.Array, rewards: jax.Array, charge, gamma):
    """The recursion of the module docstring for one arm: Q_1's stage rewards and the stage map.

    Returns ``base`` (S, A), r(s) − λ·a, and ``stage``: V_{k−1} (S,) ↦ (V_k (S,), Q_k (S, A)). The
    two drivers below run the same ``stage``: ``arm_q`` for a traced number of stages, keeping the
    last Q, and ``arm_stage_q`` for a static number, keeping every Q.
    """
    costs = jnp.arange(transitions.shape[1], dtype=rewards.dtype)
    base = rewards[:, None] - charge * costs[None, :]

    def stage(value: jax.Array) -> tuple[jax.Array, jax.Array]:
        q = base + gamma * (transitions @ value)
        return q.max(axis=1), q

    return base, stage


def arm_q(transitions: jax.Array, rewards: jax.Array, charge, horizon, gamma) -> jax.Array:
    """Q_T (S, A) of one arm after ``horizon`` stages of value iteration with action charge ``charge``.

    ``horizon`` may be traced (a ``fori_loop``); with ``horizon`` = 0 the result is ``base``, r(s) − λ·a.
    """
    base, stage = _backward_induction(transitions, rewards, charge, gamma)
    _, q = jax.lax.fori_loop(0, horizon, lambda _, carry: stage(carry[0]), (jnp.zeros_like(rewards), base))
    return q


def arm_stage_q(transitions: jax.Array, rewards: jax.Array, charge, num_stages: int, gamma) -> jax.Array:
    """Q_k (S, A) for k = 1..num_stages rounds left, stacked as (num_stages, S, A) (static ``num_stages``)."""
    _, stage = _backward_induction(transitions, rewards, charge, gamma)
    _, qs = jax.lax.scan(lambda value, _: stage(value), jnp.zeros_like(rewards), None, length=num_stages)
    return qs


@jax.jit
def _q_values(transitions, rewards, charges, horizon, gamma):
    per_charge = jax.vmap(arm_q, in_axes=(None, None, 0, None, None))
    return jax.vmap(per_charge, in_axes=(0, 0, 0, None, None))(transitions, rewards, charges, horizon, gamma)


@jax.jit
def _arm_values(transitions, rewards, states, charges, horizon, gamma):
    def one_arm(p, r, s, arm_charges):
        return jax.vmap(lambda c: arm_q(p, r, c, horizon, gamma)[s].max())(arm_charges)

    return jax.vmap(one_arm)(transitions, rewards, states, charges)


def _check_charges(charges, num_arms: int) -> tuple[np.ndarray, bool]:
    arr = check_finite("charges", charges)
    if arr.ndim == 0:
        return np.full((num_arms, 1), float(arr)), True
    if arr.ndim == 1 and arr.shape[0] == num_arms:
        return arr[:, None], True
    if arr.ndim == 2 and arr.shape[0] == num_arms:
        return arr, False
    raise ValidationError(f"charges: expected a scalar, (N,) or (N, K) with N={num_arms}, got shape {arr.shape}")


def q_values(transitions, rewards, charges, horizon: int, gamma: float = REFERENCE_GAMMA) -> jax.Array:
    """Action values Q_T of every arm and state under action charges.

    Parameters
    ----------
    transitions : (N, S, A, S) per-arm transitions.
    rewards : (N, S) per-arm state rewards.
    charges : scalar, (N,) one charge per arm, or (N, K) K charges per arm.
    horizon : T >= 1 rounds left.
    gamma : discount in (0, 1].

    Returns
    -------
    (N, S, A) for scalar or (N,) charges, (N, K, S, A) for (N, K) charges.
    """
    probs, rew = check_arms(transitions, rewards)
    grid, squeeze = _check_charges(charges, probs.shape[0])
    horizon = check_integer("horizon", horizon, minimum=1)
    q = _q_values(jnp.asarray(probs), jnp.asarray(rew), jnp.asarray(grid), horizon, check_gamma(gamma))
    return q[:, 0] if squeeze else q


def arm_values(transitions, rewards, states, charges, horizon: int, gamma: float = REFERENCE_GAMMA) -> jax.Array:
    """V_i^λ(s_i) = max_a Q_T(s_i, a) of every arm in its state, one batched solve.

    Shapes as in ``q_values``; ``states`` (N,) integers. Returns (N,) or (N, K).
    """
    probs, rew = check_arms(transitions, rewards)
    grid, squeeze = _check_charges(charges, probs.shape[0])
    st = check_states("states", states, *probs.shape[:2])
    horizon = check_integer("horizon", horizon, minimum=1)
    values = _arm_values(jnp.asarray(probs), jnp.asarray(rew), jnp.asarray(st), jnp.asarray(grid), horizon,
                         check_gamma(gamma))
    return values[:, 0] if squeeze else values


@partial(jax.jit, static_argnums=3)
def _stage_q_values(transitions, rewards, charges, num_stages, gamma):
    per_charge = jax.vmap(arm_stage_q, in_axes=(None, None, 0, None, None))
    return jax.vmap(per_charge, in_axes=(0, 0, None, None, None))(transitions, rewards, charges, num_stages, gamma)


def stage_q_values(transitions, rewards, charges, num_stages: int, gamma: float = REFERENCE_GAMMA) -> jax.Array:
    """Q_k for every stage k = 1..num_stages, arm and charge on a shared grid.

    ``charges`` (K,) shared by all arms. Returns (N, K, num_stages, S, A); entry [:, :, k-1] has k
    rounds left.
    """
    probs, rew = check_arms(transitions, rewards)
    grid = check_finite("charges", charges)
    if grid.ndim != 1:
        raise ValidationError(f"charges: expected a (K,) grid, got shape {grid.shape}")
    num_stages = check_integer("num_stages", num_stages, minimum=1)
    return _stage_q_values(jnp.asarray(probs), jnp.asarray(rew), jnp.asarray(grid), num_stages, check_gamma(gamma))
