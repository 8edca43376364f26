"""Restless policies that learn the arms' transitions: Thompson-sampled and certainty-equivalent planning.

The equitable-RMAB planners (``agents.restless``) need every arm's transition model P[i, s, a, s'].
When it is unknown, the agent keeps the Dirichlet posterior of ``models.restless_dirichlet`` (its
state is just the transition counts, ``inference.dirichlet``) and, every round, plans with a model
taken from that posterior:

* ``sampling="thompson"``: a fresh posterior draw each round (posterior sampling for RL: the
  planner acts as if the draw were true, so uncertain arms are sometimes tried);
* ``sampling="mean"``: the posterior mean (certainty equivalence, no deliberate exploration);
* ``sampling="known"``: the context's true transitions (the known-model policy, the ceiling of a
  study; it keeps counts like the others, so it can share their program).

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
state; the group labels and every shape stay static. The planner, sampling and pooling are static for
one policy, and data within a set of policies built together (``bayes_restless_policies``): one
program holds each of their (sampling, pooling) models and planners as a ``lax.switch`` branch, and
the params pick one, so a study of learners and their known-model ceilings compiles once per domain.

``forgetting`` (off by default: then exactly the stationary learners) lets the counts track drifting
transitions (``inference.forgetting``: every posterior here is a prior plus a linear function of the
counts, so forgetting the counts forgets each pooling's data part): "exponential" multiplies every
count by γ each round, "stabilised" only the rows (i, s_t, a_t) that receive this round's transitions,
"window" keeps the last w rounds and removes the round leaving them. γ = ``forgetting_rate`` is data
(``BayesRestlessForgettingParams``); the kind and w are structural, shared by a program's policies.
"""

from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from structbandits.agents.protocol import Policy
from structbandits.agents.restless import PlannerSettings, PlannerState, _switch, restless_policy
from structbandits.errors import ValidationError, check_positive
from structbandits.inference.dirichlet import check_transition_data, dirichlet_mean, dirichlet_sample
from structbandits.inference.forgetting import check_forgetting, dirichlet_forget, window_init, window_push

__all__ = [
    "BayesRestlessForgettingParams",
    "BayesRestlessParams",
    "LEARNING_PLANNERS",
    "POOLING",
    "RestlessOutcome",
    "SAMPLING",
    "TransitionCounts",
    "TransitionCountsWindow",
    "bayes_restless_policies",
    "bayes_restless_policy",
]

LEARNING_PLANNERS = ("NoAct", "Opt", "MMR", "MNW", "MNW-EG")
SAMPLING = ("thompson", "mean", "known")
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

    A field that no policy of the program reads is None (e.g. ``group_prior`` when every policy pools
    per arm).

    Attributes
    ----------
    prior : (N, S, A, S) the arms' Dirichlet prior concentrations (read by pooling "arm").
    group_prior : (G, S, A, S) the groups' prior, the group averages of ``prior`` (pooling "group"
        and "partial").
    arm_concentration : (N,) κ (pooling "partial"; ones for the program's other policies).
    model : () int32, the policy's (sampling, pooling) among those of its program (0 for a program of one).
    planner : the planner's ``agents.restless.PlannerParams``.
    """

    prior: Any
    group_prior: Any
    arm_concentration: Any
    model: Any
    planner: Any


class BayesRestlessForgettingParams(NamedTuple):
    """``BayesRestlessParams`` and ``forgetting_rate`` γ () of forgetting "exponential" / "stabilised"."""

    prior: Any
    group_prior: Any
    arm_concentration: Any
    model: Any
    planner: Any
    forgetting_rate: Any


class TransitionCounts(NamedTuple):
    """A learning policy's state: ``counts`` (N, S, A, S) float64, observed s → s' moves under a per
    arm; and the ``BayesRestlessParams``."""

    counts: jax.Array
    params: BayesRestlessParams


class TransitionCountsWindow(NamedTuple):
    """``TransitionCounts`` with forgetting "window": ``counts`` of the last w rounds and ``window``, a
    ``RingBuffer`` of their rows {"states", "actions", "next_states"}, each (N,) int32."""

    counts: jax.Array
    params: BayesRestlessParams
    window: Any


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
                          settings: PlannerSettings = PlannerSettings(), forgetting: str | None = None,
                          forgetting_rate: float = 1.0, window: int | None = None) -> Policy:
    """A restless policy that learns Dirichlet transition posteriors and plans with ``name`` on them.

    Parameters
    ----------
    name : the planner, one of ``LEARNING_PLANNERS`` ("NoAct", "Opt", "MMR", "MNW", "MNW-EG").
    prior_concentration : (N, S, 2, S) Dirichlet prior of every arm's rows, > 0 (e.g.
        ``models.restless.support_concentration``); with pooling the group prior is its group average.
    groups : (N,) int group labels 0..G-1 (the groups the planner equalises, and the pooling groups).
    sampling : "thompson" (a posterior draw per round), "mean" (certainty equivalence) or "known"
        (the context's transitions: the known-model policy, which still counts what it sees).
    pooling : "arm", "group" or "partial" (see the module docstring).
    arm_concentration : κ > 0, a scalar or (N,), the hierarchical prior's arm-level concentration
        (required with ``pooling="partial"``; a pseudo-count: larger κ trusts the group mean longer).
    max_budget : the largest per-round budget (curve length), as in ``restless_policy``.
    settings : ``agents.restless.PlannerSettings`` (default: the reference's).
    forgetting : None (default: the counts of every round), "exponential" (every count decays by γ each
        round), "stabilised" (only the rows (i, s_t, a_t) observed this round decay) or "window" (the
        counts of the last ``window`` rounds); see the module docstring.
    forgetting_rate : γ in (0, 1] for "exponential" and "stabilised"; data (``BayesRestlessForgettingParams``).
    window : w >= 1 rounds, with ``forgetting="window"`` only (state ``TransitionCountsWindow``).

    Returns
    -------
    A ``Policy`` over ``RestlessContext`` with params ``BayesRestlessParams``, state
    ``TransitionCounts`` and ``posterior_draws`` giving ``{"transitions": (n, N, S, A, S)}`` (the
    Thompson draws of its pooling's posterior, whatever its sampling). With "thompson" and "mean"
    the context's ``transitions`` are ignored (only its states, round, budget, rewards and groups are
    read): ``act(state, key, ctx)`` draws the model with ``split(key)[0]`` and runs the known-model
    planner with ``split(key)[1]``, so a posterior concentrated on the truth acts exactly as the
    known-model policy given that key (tie-breaks and MNW-EG's dummy arms included). With "known" it
    acts exactly as ``restless_policy(name)`` given ``key``.
    """
    return bayes_restless_policies([(name, sampling, pooling)], prior_concentration, groups,
                                   arm_concentration=arm_concentration, max_budget=max_budget, settings=settings,
                                   forgetting=forgetting, forgetting_rate=forgetting_rate, window=window)[0]


def _check_member(member) -> tuple[str, str, str]:
    if not isinstance(member, (tuple, list)) or len(member) != 3:
        raise ValidationError(f"policies: expected (name, sampling, pooling) triples, got {member!r}")
    name, sampling, pooling = member
    if name not in LEARNING_PLANNERS:
        raise ValidationError(f"name: expected one of {list(LEARNING_PLANNERS)}, got {name!r}")
    if sampling not in SAMPLING:
        raise ValidationError(f"sampling: expected one of {list(SAMPLING)}, got {sampling!r}")
    if pooling not in POOLING:
        raise ValidationError(f"pooling: expected one of {list(POOLING)}, got {pooling!r}")
    return name, sampling, pooling


def bayes_restless_policies(policies, prior_concentration, groups, *, arm_concentration=None,
                            max_budget: int | None = None, settings: PlannerSettings = PlannerSettings(),
                            forgetting: str | None = None, forgetting_rate: float = 1.0,
                            window: int | None = None) -> list[Policy]:
    """``bayes_restless_policy`` for every (name, sampling, pooling) of ``policies``, in one program.

    The policies have the same ``act``, ``update`` and ``posterior_draws``: ``act`` holds every
    (sampling, pooling) and every planner among ``policies`` as ``lax.switch`` branches chosen by the
    params (``BayesRestlessParams.model``, ``PlannerParams.planner``), so one policy's functions given
    another's params run the other (``simulate_restless_learning(..., params=...)``) and a study of
    them all compiles once. Only ``init``'s default params tell them apart. The indices are not
    batched over seeds, so a vmapped run executes only the chosen branches.

    Parameters
    ----------
    policies : (name, sampling, pooling) triples, as ``bayes_restless_policy``'s arguments.
    prior_concentration, groups, max_budget, settings : as in ``bayes_restless_policy``.
    arm_concentration : κ of the policies with pooling "partial" (required when there is one; None otherwise).
    forgetting, forgetting_rate, window : as in ``bayes_restless_policy``, for every policy of the program.

    Returns
    -------
    One ``Policy`` per triple, in order.
    """
    forgetting, rate, window = check_forgetting(forgetting, forgetting_rate, window)
    members = [_check_member(member) for member in policies]
    if not members:
        raise ValidationError("policies: expected at least one (name, sampling, pooling), got none")
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
    poolings = tuple(p for p in POOLING if any(pooling == p for _, _, pooling in members))
    if "partial" in poolings:
        if arm_concentration is None:
            raise ValidationError("arm_concentration: required with pooling='partial' (the hierarchical prior), got None")
        kappa = check_positive("arm_concentration", arm_concentration)
        if kappa.ndim not in (0, 1) or (kappa.ndim == 1 and kappa.shape != labels.shape):
            raise ValidationError(f"arm_concentration: expected a scalar or shape {labels.shape}, got shape {kappa.shape}")
    elif arm_concentration is not None:
        raise ValidationError(f"arm_concentration: only used with pooling='partial', got pooling={list(poolings)}")
    # The program's branches, in a fixed order: its (sampling, pooling) models and its planners.
    models = tuple((s, p) for s in SAMPLING for p in POOLING if (s, p) in {(m[1], m[2]) for m in members})
    planner_names = tuple(n for n in LEARNING_PLANNERS if any(name == n for name, _, _ in members))
    planners = {n: restless_policy(n, labels.size, sizes, max_budget, settings, planners=planner_names)
                for n in planner_names}
    plan = planners[planner_names[0]].act  # the same function for all of them
    prior_j, groups_j = jnp.asarray(prior), jnp.asarray(labels)
    dtype = prior_j.dtype
    group_prior = np.stack([prior[labels == g].mean(axis=0) for g in range(sizes.size)])
    shape = prior.shape
    # The priors the policies' poolings read (posterior_draws reads a known policy's too); the rest is None.
    shared = dict(prior=prior_j if "arm" in poolings else None,
                  group_prior=jnp.asarray(group_prior) if {"group", "partial"} & set(poolings) else None)
    # posterior_draws' branch of each model: the Thompson draw of its pooling.
    draw_branch = np.asarray([poolings.index(p) for _, p in models], dtype=np.int32)

    def params_of(name: str, sampling: str, pooling: str) -> BayesRestlessParams:
        kappa_of = kappa if pooling == "partial" else np.ones(())
        return BayesRestlessParams(
            **shared,
            arm_concentration=jnp.asarray(np.broadcast_to(kappa_of, labels.shape), dtype) if "partial" in poolings
            else None,
            model=jnp.asarray(models.index((sampling, pooling)), dtype=jnp.int32),
            planner=planners[name].params)

    def learned_model(sampling: str, pooling: str, state: TransitionCounts, key, ctx):
        """The (N, S, A, S) planning model and the planner's key."""
        if sampling == "known":
            return ctx.transitions.astype(dtype), key
        model_key, plan_key = jax.random.split(key)
        params = state.params
        return _model(params.prior, params.group_prior, state.counts, groups_j, params.arm_concentration,
                      sampling, pooling, model_key), plan_key

    def act(state: TransitionCounts, key, ctx):
        transitions, plan_key = _switch(state.params.model, [partial(learned_model, *m) for m in models], state,
                                        key, ctx)
        return plan(PlannerState(state.params.planner), plan_key, ctx._replace(transitions=transitions))

    def update(state: TransitionCounts, ctx, action, outcome: RestlessOutcome) -> TransitionCounts:
        arms = jnp.arange(shape[0])
        if forgetting is None:
            return TransitionCounts(state.counts.at[arms, ctx.states, action.astype(jnp.int32),
                                                    outcome.next_states].add(1.0), state.params)
        counts, actions = state.counts, action.astype(jnp.int32)
        if forgetting == "exponential":
            counts = dirichlet_forget(counts, 0.0, state.params.forgetting_rate)
        elif forgetting == "stabilised":  # only the rows that receive a transition now
            rows = jnp.zeros(shape[:3] + (1,), bool).at[arms, ctx.states, actions, 0].set(True)
            counts = dirichlet_forget(counts, 0.0, state.params.forgetting_rate, rows)
        else:
            row = {"states": ctx.states.astype(jnp.int32), "actions": actions,
                   "next_states": outcome.next_states.astype(jnp.int32)}
            buffer, leaving, weight = window_push(state.window, row, dtype)
            counts = counts.at[arms, leaving["states"], leaving["actions"], leaving["next_states"]].add(-weight)
        counts = counts.at[arms, ctx.states, actions, outcome.next_states].add(1.0)
        if forgetting == "window":
            return TransitionCountsWindow(counts, state.params, buffer)
        return TransitionCounts(counts, state.params)

    def posterior_draws(state: TransitionCounts, key, num_draws: int) -> dict[str, jax.Array]:
        params = state.params
        keys = jax.random.split(key, num_draws)
        branches = [partial(_model, params.prior, params.group_prior, state.counts, groups_j,
                            params.arm_concentration, "thompson", p) for p in poolings]
        draws = jax.vmap(lambda k: _switch(jnp.asarray(draw_branch)[params.model], branches, k))(keys)
        return {"transitions": draws}

    def build(name: str, sampling: str, pooling: str) -> Policy:
        defaults = params_of(name, sampling, pooling)
        if forgetting in ("exponential", "stabilised"):
            defaults = BayesRestlessForgettingParams(*defaults, jnp.asarray(rate, dtype))

        def init(key, params: BayesRestlessParams | None = None) -> TransitionCounts:
            params = defaults if params is None else params
            if forgetting == "window":
                row = {field: jnp.zeros(shape[0], jnp.int32) for field in ("states", "actions", "next_states")}
                return TransitionCountsWindow(jnp.zeros(shape, dtype), params, window_init(row, window))
            return TransitionCounts(jnp.zeros(shape, dtype), params)

        return Policy(init, act, update, posterior_draws, defaults)

    return [build(*m) for m in members]
