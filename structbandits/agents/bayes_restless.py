"""Restless policies that learn the arms' transitions: Thompson-sampled and certainty-equivalent planning.

The equitable-RMAB planners (``agents.restless``) need every arm's transition model P[i, s, a, s'].
When it is unknown, the agent keeps the Dirichlet posterior of ``models.restless_dirichlet`` (its
state is just the transition counts, ``inference.dirichlet``) and, every round, plans with a model
taken from that posterior:

* ``sampling="thompson"``: a fresh posterior draw each round (posterior sampling for RL: the
  planner acts as if the draw were true, so uncertain arms are sometimes tried);
* ``sampling="mean"``: the posterior mean (certainty equivalence, no deliberate exploration).

The draw is handed to the known-model planner (Whittle indices, WhittleToLagrange curves, the
Opt / MMR / MNW / MNW-EG allocation, top-b_g selection, all vmapped over arms) in place of the
context's true transitions; nothing of the planning algebra is repeated here. Rewards r(s) are the
planner's objective and stay known; states are fully observed.

How arms share information (``pooling``):

* ``"arm"``: independent Dirichlet(α_i + n_i) per arm, the flat program's exact posterior.
* ``"group"``: every arm of a group shares one model, Dirichlet(ᾱ_g + Σ_{j∈g} n_j) (complete pooling).
* ``"partial"``: the hierarchical program, P_i ~ Dirichlet(κ m_g), approximated by drawing the
  group mean m_g from the pooled posterior and then P_i | m_g, n_i ~ Dirichlet(κ m_g + n_i), the exact
  conditional of the hierarchical program given m_g (the approximation is in p(m_g | data): the
  pooled posterior ignores how much the arms differ). With "mean", m_g and P_i are the two means.

``update`` adds one count per arm per round: (arm, s_t, a_t, s_{t+1}) from the ``RestlessOutcome``
the simulator hands it.

Hyperparameters are data (``agents.protocol``): the prior concentrations (the arms' and the groups'),
κ and the planner's ``PlannerParams`` are ``Policy.params`` (``BayesRestlessParams``), held in the
state; the planner name, sampling, pooling, the group labels and every shape stay static.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from structbandits.agents.protocol import Policy
from structbandits.agents.restless import PlannerSettings, PlannerState, restless_policy
from structbandits.errors import ValidationError, check_positive
from structbandits.inference.dirichlet import check_transition_data, dirichlet_mean, dirichlet_sample

__all__ = [
    "BayesRestlessParams",
    "LEARNING_PLANNERS",
    "POOLING",
    "RestlessOutcome",
    "SAMPLING",
    "TransitionCounts",
    "bayes_restless_policy",
]

LEARNING_PLANNERS = ("Opt", "MMR", "MNW", "MNW-EG")
SAMPLING = ("thompson", "mean")
POOLING = ("arm", "group", "partial")


class RestlessOutcome(NamedTuple):
    """What a restless policy's ``update`` learns after round t.

    Attributes
    ----------
    rewards : (N,) r_i(s_t), collected before the transition.
    next_states : (N,) int s_{t+1}.
    """

    rewards: jax.Array
    next_states: jax.Array


class BayesRestlessParams(NamedTuple):
    """A learning policy's hyperparameters, in the form it computes with.

    Attributes
    ----------
    prior : (N, S, A, S) the arms' Dirichlet prior concentrations (pooling "arm"; None otherwise).
    group_prior : (G, S, A, S) the groups' prior, the group averages of ``prior`` (pooling "group"
        and "partial"; None with "arm").
    arm_concentration : (N,) κ (pooling "partial"; None otherwise).
    planner : the planner's ``agents.restless.PlannerParams``.
    """

    prior: Any
    group_prior: Any
    arm_concentration: Any
    planner: Any


class TransitionCounts(NamedTuple):
    """A learning policy's state: ``counts`` (N, S, A, S) float64, observed s → s' moves under a per
    arm; and the ``BayesRestlessParams``."""

    counts: jax.Array
    params: BayesRestlessParams


def _model(prior, group_prior, counts, groups, kappa, sampling: str, pooling: str, key) -> jax.Array:
    """The (N, S, A, S) planning model from the posterior given ``counts``: a draw or the mean.

    ``prior`` (N, S, A, S) and ``group_prior`` (G, S, A, S), the arms' and the groups' prior
    concentrations, are computed once outside ``jit`` (the params; folding them at compile time is slow).
    """
    def pick(concentration, draw_key):
        return dirichlet_sample(draw_key, concentration) if sampling == "thompson" else dirichlet_mean(concentration)

    if pooling == "arm":
        return pick(prior + counts, key)
    group_key, arm_key = jax.random.split(key)
    pooled = group_prior + jax.ops.segment_sum(counts, groups, num_segments=group_prior.shape[0])
    group_model = pick(pooled, group_key)
    if pooling == "group":
        return group_model[groups]
    return pick(kappa[:, None, None, None] * group_model[groups] + counts, arm_key)


def bayes_restless_policy(name: str, prior_concentration, groups, *, sampling: str = "thompson",
                          pooling: str = "arm", arm_concentration=None, max_budget: int | None = None,
                          settings: PlannerSettings = PlannerSettings()) -> Policy:
    """A restless policy that learns Dirichlet transition posteriors and plans with ``name`` on them.

    Parameters
    ----------
    name : the planner, one of ``LEARNING_PLANNERS`` ("Opt", "MMR", "MNW", "MNW-EG").
    prior_concentration : (N, S, 2, S) Dirichlet prior of every arm's rows, > 0 (e.g.
        ``models.restless.support_concentration``); with pooling the group prior is its group average.
    groups : (N,) int group labels 0..G-1 (the groups the planner equalises, and the pooling groups).
    sampling : "thompson" (a posterior draw per round) or "mean" (certainty equivalence).
    pooling : "arm", "group" or "partial" (see the module docstring).
    arm_concentration : κ > 0, a scalar or (N,), the hierarchical prior's arm-level concentration
        (required with ``pooling="partial"``; a pseudo-count: larger κ trusts the group mean longer).
    max_budget : the largest per-round budget (curve length), as in ``restless_policy``.
    settings : ``agents.restless.PlannerSettings`` (default: the reference's).

    Returns
    -------
    A ``Policy`` over ``RestlessContext`` with params ``BayesRestlessParams``, state
    ``TransitionCounts`` and ``posterior_draws`` giving ``{"transitions": (n, N, S, A, S)}`` (the same
    posterior for both samplings). The context's ``transitions`` are ignored (only its states, round,
    budget, rewards and groups are read).
    ``act(state, key, ctx)`` draws the model with ``split(key)[0]`` and runs the known-model planner
    with ``split(key)[1]``, so a posterior concentrated on the truth acts exactly as the known-model
    policy given that key (tie-breaks and MNW-EG's dummy arms included).
    """
    if name not in LEARNING_PLANNERS:
        raise ValidationError(f"name: expected one of {list(LEARNING_PLANNERS)}, got {name!r}")
    if sampling not in SAMPLING:
        raise ValidationError(f"sampling: expected one of {list(SAMPLING)}, got {sampling!r}")
    if pooling not in POOLING:
        raise ValidationError(f"pooling: expected one of {list(POOLING)}, got {pooling!r}")
    prior = check_transition_data(prior_concentration)["concentration"]
    if prior.shape[2] != 2:
        raise ValidationError(f"prior_concentration: expected two actions (N, S, 2, S), got shape {prior.shape}")
    labels = np.asarray(groups)
    if labels.shape != (prior.shape[0],) or not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
        raise ValidationError(f"groups: expected ({prior.shape[0]},) integer labels >= 0, got shape {labels.shape} "
                              f"and dtype {labels.dtype}")
    sizes = np.bincount(labels)
    if np.any(sizes == 0):
        raise ValidationError(f"groups: expected every label 0..{sizes.size - 1} used, got none in group "
                              f"{int(np.argmin(sizes))}")
    if pooling == "partial":
        if arm_concentration is None:
            raise ValidationError("arm_concentration: required with pooling='partial' (the hierarchical prior), got None")
        kappa = check_positive("arm_concentration", arm_concentration)
        if kappa.ndim not in (0, 1) or (kappa.ndim == 1 and kappa.shape != labels.shape):
            raise ValidationError(f"arm_concentration: expected a scalar or shape {labels.shape}, got shape {kappa.shape}")
    else:
        if arm_concentration is not None:
            raise ValidationError(f"arm_concentration: only used with pooling='partial', got pooling={pooling!r}")
        kappa = np.ones(())
    planner = restless_policy(name, labels.size, sizes, max_budget, settings)
    group_prior = np.stack([prior[labels == g].mean(axis=0) for g in range(sizes.size)])
    prior_j, groups_j = jnp.asarray(prior), jnp.asarray(labels)
    defaults = BayesRestlessParams(
        prior=prior_j if pooling == "arm" else None,
        group_prior=None if pooling == "arm" else jnp.asarray(group_prior),
        arm_concentration=jnp.asarray(np.broadcast_to(kappa, labels.shape), prior_j.dtype) if pooling == "partial"
        else None,
        planner=planner.params)
    shape = prior.shape

    def model(state: TransitionCounts, key, how: str) -> jax.Array:
        params = state.params
        return _model(params.prior, params.group_prior, state.counts, groups_j, params.arm_concentration, how,
                      pooling, key)

    def init(key, params: BayesRestlessParams | None = None) -> TransitionCounts:
        return TransitionCounts(jnp.zeros(shape, prior_j.dtype), defaults if params is None else params)

    def act(state: TransitionCounts, key, ctx):
        model_key, plan_key = jax.random.split(key)
        return planner.act(PlannerState(state.params.planner), plan_key,
                           ctx._replace(transitions=model(state, model_key, sampling)))

    def update(state: TransitionCounts, ctx, action, outcome: RestlessOutcome) -> TransitionCounts:
        arms = jnp.arange(shape[0])
        return TransitionCounts(state.counts.at[arms, ctx.states, action.astype(jnp.int32),
                                                outcome.next_states].add(1.0), state.params)

    def posterior_draws(state: TransitionCounts, key, num_draws: int) -> dict[str, jax.Array]:
        keys = jax.random.split(key, num_draws)
        return {"transitions": jax.vmap(lambda k: model(state, k, "thompson"))(keys)}

    return Policy(init, act, update, posterior_draws, defaults)
