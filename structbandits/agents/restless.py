"""Restless-bandit policies of the equitable-RMAB paper, as pure init / act / update functions.

Each policy is an ``agents.protocol.Policy`` whose action is an (N,) bool mask of the arms acted on
this round, with exactly ``context.budget`` arms acted on (NoAct acts on none). The context is a
``RestlessContext``: the arms' states, the round, the rounds left, the budget, and the planning
model (transitions, rewards, group labels). Known-model planners plan with the model in the
context, so one compiled policy serves every instance of the same shapes and every budget; a
Bayesian agent would plan with a posterior draw held in its own state instead.

Policies (``restless_policy(name, ...)``):

* ``NoAct``: never acts.             * ``Random``: B arms uniformly at random.
* ``Opt``: the B largest Whittle indices (utilitarian), random tie-breaks.
* ``MMR``: water filling on group-average WhittleToLagrange values, then the top-b_g indices per group.
* ``MNW``: MNW greedy on group totals (biased towards small groups), then top-b_g per group.
* ``MNW-EG``: upsample every group to the largest size M with dummy copies drawn with replacement,
  MNW greedy with caps M, rescale to the true sizes, integerise, then top-b_g per group.
* ``MMR-exact`` / ``MNW-exact`` (extension, not the paper's): the curves of MMR / MNW, but the
  optimal integer split of them (``planning.equity.exact_maximin`` / ``exact_nash_welfare``, dynamic
  programming over groups) instead of the greedy, which is optimal only on nondecreasing / concave
  curves; then top-b_g per group.
* ``HR-RR``: round robin over high-risk (A1c >= 8) arms: the high-risk arms acted on least
  recently first (a queue: acted arms move to its back), then low-risk arms the same way. The reference's
  version resets "last acted" to 0 instead of t, so every arm looks equally overdue and its choice
  collapses to a fixed order of arm indices among high-A1c arms; this is the intended round robin.
* ``HR-Rand``: B arms at random among the high-risk ones, filled up at random with the others.

Planners recompute indices every round with T = min(rounds left, ``max_planning_horizon``).
``PlannerSettings()`` holds the reference's settings (clipped index search on [-1, 1], tolerance
0.01, γ = 0.9999, T <= 20, tie tolerance 1e-4); ``EXACT_SETTINGS`` brackets indices exactly and
clips Lagrange charges at 0.

Hyperparameters are data (``agents.protocol``): the numeric settings (γ, the index search's
interval and tolerance, the tie tolerance; HR-RR / HR-Rand's risk set) are ``Policy.params``
(``PlannerParams`` / ``HighRiskParams``), held in the state and read by ``act``; loop counts, the
planning horizon cap, ``bracket``, ``nonnegative_charges`` and ``relative_tolerance`` (whose sign
``planning.whittle`` branches on) stay static. Everything else is in the context already.

Several planners can share one program (``restless_policy(..., planners=...)``): NoAct and the index
planners of ``planners`` become branches of one ``act`` (the Whittle indices computed once, then a
``lax.switch`` on ``PlannerParams.planner``, which is data), so a study of several planners compiles
one program instead of one per planner. The index is not batched when a runner ``vmap``-s over
seeds, so only the chosen branch runs.
"""

from __future__ import annotations

from functools import lru_cache, partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from structbandits.agents.protocol import Policy, no_propensity
from structbandits.errors import ValidationError, check_integer
from structbandits.planning.equity import (
    TIE_TOLERANCE,
    exact_maximin_core,
    exact_nash_welfare_core,
    mnw_greedy_core,
    rescale_equal_groups_core,
    select_within_groups_core,
    water_filling_core,
)
from structbandits.planning.lagrangian import (
    lagrangian_curves,
    member_table,
    sorted_slot_values,
    whittle_to_lagrange_charges,
)
from structbandits.planning.value_iteration import REFERENCE_GAMMA
from structbandits.planning.whittle import REFERENCE_SEARCH, WhittleSearch, batched_whittle_indices

__all__ = [
    "EXACT_SETTINGS",
    "HighRiskParams",
    "POLICY_NAMES",
    "PlannerParams",
    "PlannerSettings",
    "PlannerState",
    "RestlessContext",
    "RoundRobinState",
    "SHARED_PLANNERS",
    "restless_policy",
]

POLICY_NAMES = ("NoAct", "Random", "Opt", "MMR", "MNW", "MNW-EG", "HR-RR", "HR-Rand", "MMR-exact", "MNW-exact")
SHARED_PLANNERS = ("NoAct", "Opt", "MMR", "MNW", "MNW-EG", "MMR-exact", "MNW-exact")
"""The policies that can share one program (``restless_policy``'s ``planners``), in their branch order."""

_EXACT_ALLOCATORS = {"MMR-exact": exact_maximin_core, "MNW-exact": exact_nash_welfare_core}


class RestlessContext(NamedTuple):
    """What a restless policy sees each round.

    Attributes
    ----------
    states : (N,) int current states.
    round : () int, t = 0..H-1.
    remaining : () int, rounds left including this one (H − t).
    budget : () int, arms to act on this round.
    transitions : (N, S, 2, S) the planning model.
    rewards : (N, S) state rewards.
    groups : (N,) int group labels.
    """

    states: jax.Array
    round: jax.Array
    remaining: jax.Array
    budget: jax.Array
    transitions: jax.Array
    rewards: jax.Array
    groups: jax.Array


class PlannerSettings(NamedTuple):
    """Planning settings (defaults: the reference code's)."""

    gamma: float = REFERENCE_GAMMA
    search: WhittleSearch = REFERENCE_SEARCH
    max_planning_horizon: int = 20
    tie_tolerance: float = TIE_TOLERANCE
    nonnegative_charges: bool = False


EXACT_SETTINGS = PlannerSettings(search=WhittleSearch(), nonnegative_charges=True)
"""Bracketed (unclipped) indices to 1e-7 and Lagrange charges clipped at 0."""


class PlannerParams(NamedTuple):
    """The index planners' numeric settings, scalars: the discount ``gamma``, the Whittle search's
    initial interval ``lower`` / ``upper`` and width ``tolerance``, and the within-group
    ``tie_tolerance`` (``PlannerSettings``' values); and ``planner``, () int32, the policy's position
    among the planners of its program (``restless_policy``'s ``planners``; 0 for a program of one)."""

    gamma: jax.Array
    lower: jax.Array
    upper: jax.Array
    tolerance: jax.Array
    tie_tolerance: jax.Array
    planner: jax.Array


class HighRiskParams(NamedTuple):
    """HR-RR / HR-Rand's risk set: ``high_risk_states`` (S,) bool."""

    high_risk_states: jax.Array


class PlannerState(NamedTuple):
    """State of a policy without memory (NoAct, Random, the planners, HR-Rand): its ``params``
    (``PlannerParams``, ``HighRiskParams``, or None for NoAct and Random)."""

    params: Any


class RoundRobinState(NamedTuple):
    """HR-RR state: ``queue`` (N,) int keys, smaller = earlier in the round-robin queue; and the params.

    An arm acted on in round t gets key t·N + (its position among the arms acted on in t), so
    keys order arms by the round they were last acted on, then by their previous queue order:
    the least recently acted arm is at the front (never-acted arms have negative keys, in a random
    initial order)."""

    queue: jax.Array
    params: HighRiskParams


def _top_scores(scores: jax.Array, budget) -> jax.Array:
    rank = jnp.argsort(jnp.argsort(-scores))
    return rank < budget


def _params(name: str, settings: PlannerSettings, high_risk_states: tuple[bool, ...] | None,
            planners: tuple[str, ...] = ()):
    """The params of policy ``name`` in a program of ``planners`` (``()``: ``name`` alone), made when
    asked: the cached functions hold no arrays (their dtype follows the configuration at call time)."""
    if name == "Random" or (name == "NoAct" and not planners):
        return None
    if name in ("HR-RR", "HR-Rand"):
        return HighRiskParams(jnp.asarray(high_risk_states))
    return PlannerParams(*(jnp.asarray(float(v)) for v in (
        settings.gamma, settings.search.lower, settings.search.upper, settings.search.tolerance,
        settings.tie_tolerance)), jnp.asarray(planners.index(name) if planners else 0, dtype=jnp.int32))


def _rest(state, context, action, reward):
    """``update`` of a policy without memory: the state is unchanged."""
    return state


def _stateless(act, defaults=lambda: None) -> Policy:
    def init(key, params=None) -> PlannerState:
        return PlannerState(defaults() if params is None else params)

    return Policy(init=init, act=act, update=_rest)


def _switch(index, branches, *operands):
    """``branches[index](*operands)``: a plain call when there is one branch (no conditional in the program)."""
    return branches[0](*operands) if len(branches) == 1 else jax.lax.switch(index, branches, *operands)


@lru_cache(maxsize=256)
def _planner_act(names: tuple[str, ...], num_groups: int, max_group_size: int, max_budget: int,
                 settings: PlannerSettings):
    """``act`` of the planners ``names`` (``SHARED_PLANNERS`` order, NoAct first if present):
    ``params.planner`` picks one by position."""
    num_budgets = max_budget + 1
    indexed = tuple(name for name in names if name != "NoAct")

    def allocate(name: str, params: PlannerParams, indices, keys, ctx: RestlessContext, horizon) -> jax.Array:
        """(N,) bool mask of planner ``name`` given the arms' Whittle ``indices`` (N,) and ``keys`` (3, 2)."""
        tie_key, upsample_key, round_key = keys
        if name == "Opt":
            everyone = jnp.zeros_like(ctx.groups)
            ranked = -jnp.sort(-indices)[None, :]
            return select_within_groups_core(indices, everyone, ctx.budget[None], tie_key, ranked,
                                             params.tie_tolerance)
        slots = member_table(ctx.groups, num_groups, max_group_size)
        sizes = jnp.bincount(ctx.groups, length=num_groups)
        if name == "MNW-EG":
            # Dummy arms: copies of random members, drawn with replacement, fill every group to M.
            draws = jnp.floor(jax.random.uniform(upsample_key, slots.shape) * sizes[:, None]).astype(slots.dtype)
            dummies = jnp.take_along_axis(slots, draws, axis=1)
            eg_slots = jnp.where(slots >= 0, slots, dummies)
            weights = jax.ops.segment_sum(jnp.ones(eg_slots.size), eg_slots.ravel(), num_segments=indices.shape[0])
            counts = jnp.full_like(sizes, max_group_size)
            charges = whittle_to_lagrange_charges(sorted_slot_values(indices, eg_slots), counts, num_budgets,
                                                  settings.nonnegative_charges)
            curves = lagrangian_curves(ctx.transitions, ctx.rewards, ctx.states, ctx.groups, weights, charges,
                                       horizon, params.gamma)
            equal = mnw_greedy_core(curves, counts, ctx.budget)
            budgets = rescale_equal_groups_core(equal.astype(jnp.float64), sizes, float(max_group_size),
                                                ctx.budget, round_key)
        else:
            charges = whittle_to_lagrange_charges(sorted_slot_values(indices, slots), sizes, num_budgets,
                                                  settings.nonnegative_charges)
            weights = jnp.ones(indices.shape[0])
            curves = lagrangian_curves(ctx.transitions, ctx.rewards, ctx.states, ctx.groups, weights, charges,
                                       horizon, params.gamma)
            allocate_budget = water_filling_core if name == "MMR" else mnw_greedy_core
            if name in _EXACT_ALLOCATORS:  # same curves as MMR / MNW, the optimal split of them
                allocate_budget = partial(_EXACT_ALLOCATORS[name], max_budget=max_budget)
            budgets = allocate_budget(curves, sizes, ctx.budget)
        return select_within_groups_core(indices, ctx.groups, budgets, tie_key, sorted_slot_values(indices, slots),
                                         params.tie_tolerance)

    def plan(params: PlannerParams, key, ctx: RestlessContext) -> jax.Array:
        """The index planners: the Whittle indices once, then the allocation of ``params.planner``."""
        horizon = jnp.minimum(ctx.remaining, settings.max_planning_horizon)
        search = settings.search._replace(lower=params.lower, upper=params.upper, tolerance=params.tolerance)
        indices = batched_whittle_indices(ctx.transitions, ctx.rewards, ctx.states, horizon, params.gamma, search)
        branches = [partial(allocate, name) for name in indexed]
        return _switch(params.planner - (len(names) - len(indexed)), branches, params, indices,
                       jax.random.split(key, 3), ctx, horizon)

    def idle(params: PlannerParams, key, ctx: RestlessContext) -> jax.Array:
        return jnp.zeros(ctx.states.shape, dtype=bool)

    def act(state: PlannerState, key, ctx: RestlessContext):
        if "NoAct" not in names:
            return plan(state.params, key, ctx), no_propensity()
        return jax.lax.cond(state.params.planner == 0, idle, plan, state.params, key, ctx), no_propensity()

    return act


def _high_risk(name: str, num_arms: int, high_risk_states: tuple[bool, ...]) -> Policy:
    defaults = partial(_params, name, None, high_risk_states)

    def scores(state, key, ctx):
        risky = state.params.high_risk_states[ctx.states].astype(jnp.float64)
        return risky, jax.random.uniform(key, (num_arms,))

    if name == "HR-Rand":
        def act_random(state, key, ctx):
            risky, noise = scores(state, key, ctx)
            return _top_scores(2.0 * risky + noise, ctx.budget), no_propensity()

        return _stateless(act_random, defaults)

    def init(key, params=None):
        # A random initial queue order; keys below 0 mark "never acted".
        return RoundRobinState(jax.random.permutation(key, num_arms).astype(jnp.int64) - num_arms,
                               defaults() if params is None else params)

    def act(state: RoundRobinState, key, ctx):
        risky = state.params.high_risk_states[ctx.states]
        # Front of the queue first (least recently acted, then earlier in the queue), high risk first.
        order = jnp.lexsort((state.queue, ~risky))
        return jnp.zeros(num_arms, dtype=bool).at[order].set(jnp.arange(num_arms) < ctx.budget), no_propensity()

    def update(state: RoundRobinState, ctx, action, reward):
        # Acted arms go to the back of the queue, keeping their relative order.
        order = jnp.argsort(jnp.where(action, state.queue, jnp.iinfo(state.queue.dtype).max))
        rank = jnp.zeros(num_arms, dtype=jnp.int64).at[order].set(jnp.arange(num_arms))
        return RoundRobinState(jnp.where(action, ctx.round * num_arms + rank, state.queue), state.params)

    return Policy(init, act, update)


@lru_cache(maxsize=256)
def _cached_policy(name, planners, num_arms, num_groups, max_group_size, max_budget, settings,
                   high_risk_states) -> Policy:
    """Policy ``name``'s functions; ``planners``: the planners of its program when it shares one, else ()."""
    if planners:
        return _stateless(_planner_act(planners, num_groups, max_group_size, max_budget, settings),
                          partial(_params, name, settings, None, planners))
    if name == "NoAct":
        return _stateless(lambda state, key, ctx: (jnp.zeros(num_arms, dtype=bool), no_propensity()))
    if name == "Random":
        return _stateless(lambda state, key, ctx: (_top_scores(jax.random.uniform(key, (num_arms,)), ctx.budget),
                                                   no_propensity()))
    if name in ("HR-RR", "HR-Rand"):
        return _high_risk(name, num_arms, high_risk_states)
    return _stateless(_planner_act((name,), num_groups, max_group_size, max_budget, settings),
                      partial(_params, name, settings, None))


def restless_policy(name: str, num_arms: int, group_sizes, max_budget: int | None = None,
                    settings: PlannerSettings = PlannerSettings(), high_risk_states=None, *,
                    planners=None) -> Policy:
    """One of the paper's policies (see the module docstring).

    Parameters
    ----------
    name : one of ``POLICY_NAMES``.
    num_arms : N.
    group_sizes : (G,) the sizes n_g of the groups the policy will meet (the padded shapes of the
        equitable planners depend on G and max n_g).
    max_budget : the largest budget the policy will be asked for (default max n_g); sets the length
        of the group value curves, so keep it tight: B per round must not exceed it.
    settings : ``PlannerSettings()`` (the reference's) or ``EXACT_SETTINGS``.
    high_risk_states : (S,) bool, the risk set of HR-RR / HR-Rand (e.g. ``high_a1c_states()``).
    planners : names among ``SHARED_PLANNERS`` (NoAct and the index planners) that share one program
        with ``name``, which must be one of them; None: ``name`` alone. The policies of one
        ``planners`` set (same other arguments) have the same ``act`` and ``update``, branching on
        ``PlannerParams.planner`` (NoAct's params are then ``PlannerParams`` too), so one member's
        functions given another's params run the other: one compiled program for all of them.
        Only ``init``'s default params tell them apart.

    Returns
    -------
    A ``Policy`` over ``RestlessContext``; identical arguments return the same (cached) functions,
    so jitted simulations (given ``without_params(policy)``) compile once. Its ``params`` are
    ``PlannerParams`` (Opt, MMR, MNW, MNW-EG, MMR-exact, MNW-exact), ``HighRiskParams`` (HR-RR,
    HR-Rand) or None (NoAct, Random); the state is ``PlannerState(params)``, or ``RoundRobinState``
    for HR-RR. Policies that differ only in those values (or only in the planner, within one
    ``planners`` set) share compiled programs when one's functions are given the other's params
    (``simulate_restless(..., params=...)``).
    """
    if name not in POLICY_NAMES:
        raise ValidationError(f"name: expected one of {list(POLICY_NAMES)}, got {name!r}")
    num_arms = check_integer("num_arms", num_arms, minimum=1)
    sizes = np.asarray(group_sizes)
    integral = sizes.dtype.kind in "iu" or (sizes.dtype.kind == "f" and np.all(np.isfinite(sizes))
                                            and np.all(sizes == np.round(sizes)))
    if sizes.ndim != 1 or sizes.size == 0 or not integral or np.any(sizes < 1) or sizes.sum() != num_arms:
        raise ValidationError(f"group_sizes: expected positive integer sizes summing to num_arms={num_arms}, "
                              f"got {sizes.tolist()}")
    sizes = sizes.astype(np.int64)
    max_size = int(sizes.max())
    max_budget = max_size if max_budget is None else check_integer("max_budget", max_budget, minimum=0,
                                                                   maximum=num_arms)
    if not isinstance(settings, PlannerSettings) or not isinstance(settings.search, WhittleSearch):
        raise ValidationError(f"settings: expected a PlannerSettings, got {type(settings).__name__}")
    check_integer("settings.max_planning_horizon", settings.max_planning_horizon, minimum=1)
    risk = None
    if name in ("HR-RR", "HR-Rand"):
        if high_risk_states is None:
            raise ValidationError(f"high_risk_states: {name} needs the (S,) bool risk set, got None")
        risk = tuple(bool(v) for v in np.asarray(high_risk_states).ravel())
    shared = () if planners is None else tuple(n for n in SHARED_PLANNERS if n in set(planners))
    if planners is not None and (name not in shared or len(shared) != len(set(planners))):
        raise ValidationError(f"planners: expected names among {list(SHARED_PLANNERS)} including name={name!r}, "
                              f"got {list(planners)}")
    if len(shared) == 1:
        shared = ()  # a program of one planner: the policy of ``name`` alone
    # The cache key keeps only what the policy's functions use, so that policies differing in the rest
    # (budgets, group layouts they ignore) share functions and so compiled programs.
    if name in ("NoAct", "Random", "HR-RR", "HR-Rand") and not shared:
        key = (name, (), num_arms, 0, 0, 0, None, risk)
    elif set(shared or (name,)) <= {"NoAct", "Opt"}:  # ranks all arms: no groups, no curves
        key = (name, shared, 0, 0, 0, 0, settings, None)
    else:
        key = (name, shared, 0, int(sizes.size), max_size, max_budget, settings, None)
    return _cached_policy(*key)._replace(params=_params(name, settings, risk, shared))
