"""The NumPyro program of restless arms' transitions, and its prior concentrations.

A restless multi-armed bandit (RMAB) has N arms, each a finite MDP with S states and A actions
(A = 2 here: rest a=0, act a=1); arm i moves s → s' with probability P[i, s, a, s'].

    P[i, s, a] ~ Dirichlet(α[i, s, a])              one prior per transition row (``restless_dirichlet``)
    s'_t | s_t, a_t ~ Categorical(P[i, s_t, a_t])   observed transitions, if any (or their counts)

or, hierarchically, m[g, s, a] ~ Dirichlet(α[g, s, a]) per group and P[i, s, a] ~ Dirichlet(κ_i m[g_i, s, a]).
``transition_concentration`` centres the prior on known transitions; ``support_concentration`` is
the weak prior of the learning experiments: it knows which moves are possible (the domain's
structure) but not how likely they are.

The instances themselves (arms, rewards, groups, budget, horizon: ``RestlessInstance``) and the
reference domains are environment data, in ``structbandits.envs.rmab``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from structbandits.errors import ValidationError, check_positive, check_simplex

__all__ = [
    "restless_dirichlet",
    "support_concentration",
    "transition_concentration",
]


def transition_concentration(transitions, strength: float = 10.0, floor: float = 0.1) -> np.ndarray:
    """Dirichlet concentrations centred on known transitions: α = max(strength · P, floor).

    ``transitions`` (N, S, A, S); the floor keeps structural zeros of P as small but positive
    concentrations so every row is a proper Dirichlet. Returns (N, S, A, S).
    """
    probs = check_simplex("transitions", transitions)
    if probs.ndim != 4:
        raise ValidationError(f"transitions: expected shape (N, S, A, S), got shape {probs.shape}")
    strength = float(check_positive("strength", strength))
    floor = float(check_positive("floor", floor))
    return np.maximum(strength * probs, floor)


def support_concentration(transitions, strength: float = 1.0, floor: float = 1e-2) -> np.ndarray:
    """A weak Dirichlet prior that knows only which transitions are possible.

    A move s → s' under a is possible when some arm has P[i, s, a, s'] > 0 (the domain's
    structure, e.g. an absorbing dropout state or a deterministic memory, not any arm's numbers).
    Every row gets ``strength`` pseudo-observations spread evenly over its possible next states
    and ``floor`` on the impossible ones (so each row stays a proper Dirichlet).

    Parameters
    ----------
    transitions : (N, S, A, S) transition probabilities (only their support is used).
    strength : total prior pseudo-count per row over the possible next states, > 0.
    floor : concentration of the impossible next states, > 0.

    Returns
    -------
    (N, S, A, S) concentrations, the same for every arm.
    """
    probs = check_simplex("transitions", transitions)
    if probs.ndim != 4:
        raise ValidationError(f"transitions: expected shape (N, S, A, S), got shape {probs.shape}")
    strength = float(check_positive("strength", strength))
    floor = float(check_positive("floor", floor))
    support = np.any(probs > 0, axis=0)  # (S, A, S)
    row = np.where(support, strength / support.sum(-1, keepdims=True), floor)
    return np.broadcast_to(row, probs.shape).copy()


def restless_dirichlet(
    concentration: jax.Array,
    arms: jax.Array | None = None,
    states: jax.Array | None = None,
    actions: jax.Array | None = None,
    next_states: jax.Array | None = None,
    counts: jax.Array | None = None,
    groups: jax.Array | None = None,
    arm_concentration: jax.Array | float | None = None,
) -> None:
    """Arms' transitions with a Dirichlet prior on every row, optionally hierarchical, and observed transitions.

    Flat prior (``groups=None``): P[i, s, a] ~ Dirichlet(concentration[i, s, a]).

    Hierarchical prior (``groups`` given): each group g has a mean transition model
    m[g, s, a] ~ Dirichlet(concentration[g, s, a]) and its arms scatter around it with the
    arm-level concentration κ_i: P[i, s, a] ~ Dirichlet(κ_i · m[groups[i], s, a]). Large κ pools
    the arms of a group (every arm ≈ the group mean), small κ lets them differ.

    Observations (either or both): a list of transitions (``arms``, ``states``, ``actions``,
    ``next_states``), each s' ~ Categorical(P[arm, s, a]); and/or ``counts`` n[i, s, a, s'], the
    number of observed s → s' moves under a, n[i, s, a] ~ Multinomial(Σ_s' n[i, s, a, s'], P[i, s, a])
    (the same likelihood up to a constant, so both give the same posterior).

    Parameters
    ----------
    concentration : (N, S, A, S) arm-level prior concentrations (flat), or (G, S, A, S) prior
        concentrations of the group means (hierarchical); all > 0.
    arms, states, actions : (n,) integer arm, state and action of each observed transition.
    next_states : (n,) observed next states; None to sample them (or with ``arms=None`` to sample
        the transitions only).
    counts : (N, S, A, S) non-negative transition counts.
    groups : (N,) integer group labels in 0..G-1; makes the prior hierarchical.
    arm_concentration : κ, a scalar or (N,) > 0; required with ``groups``.

    Sites: ``group_transitions`` (G, S, A, S) (hierarchical only), ``transitions`` (N, S, A, S),
    ``next_state`` (n,), ``transition_counts`` (N, S, A, S).
    """
    _, num_states, num_actions, _ = concentration.shape
    if groups is None:
        arm_prior = concentration
    else:
        num_groups = concentration.shape[0]
        with numpyro.plate("group", num_groups, dim=-3), numpyro.plate("state", num_states, dim=-2), \
                numpyro.plate("action", num_actions, dim=-1):
            group_means = numpyro.sample("group_transitions", dist.Dirichlet(concentration))
        kappa = jnp.broadcast_to(jnp.asarray(arm_concentration, group_means.dtype), groups.shape)
        arm_prior = kappa[:, None, None, None] * group_means[groups]
    num_arms = arm_prior.shape[0]
    with numpyro.plate("arm", num_arms, dim=-3), numpyro.plate("state", num_states, dim=-2), \
            numpyro.plate("action", num_actions, dim=-1):
        transitions = numpyro.sample("transitions", dist.Dirichlet(arm_prior))
        if counts is not None:
            numpyro.sample("transition_counts", dist.Multinomial(total_count=counts.sum(-1), probs=transitions),
                           obs=counts)
    if arms is None:
        return
    with numpyro.plate("transition", arms.shape[0]):
        numpyro.sample("next_state", dist.Categorical(probs=transitions[arms, states, actions]), obs=next_states)
