"""Standard Thompson sampling with Normal-Inverse-Gamma arms: the GAMBITTS baselines.

Each arm's reward is N(μ, σ²) with a conjugate NIG(m, κ, α, β) prior (``inference.nig``); the agent
ignores the treatment entirely. ``standard_ts(K)`` is the non-contextual multi-armed bandit ("StdTS",
the reference's "MAB"); ``standard_ts(K, num_cells=C)`` keeps separate arms per context cell
(``context.cell``; "StdTS:Contextual", the reference's "CB"). Defaults are the reference's prior
m = 77, κ = 5, α = 1, β = 10.

The Thompson score of an arm is a draw of μ from its Student-t marginal (σ² integrated out), which
has the same law as the reference's draw of σ² followed by μ | σ². The propensity is the share of
``propensity_draws`` fresh draws whose argmax is the chosen arm. ``posterior_draws`` returns joint
draws of every arm's (μ, σ²): ``mean_reward`` and ``noise_var``, each (n, C, K).

``forgetting`` (off by default: then exactly the stationary agent) tracks drifting arms
(``inference.forgetting``): "exponential" decays every arm's κ, κm, α and 2β + κm² toward the prior by γ
each round, "stabilised" decays the pulled arm only (its mean's information, keeping the scatter of its
rewards), "window" keeps the last w rounds and removes the one leaving them.

The functions come from an ``lru_cache``-d builder keyed on the structural options (K, C, M, ``cell_of``,
forgetting kind and window), so agents that differ only in prior values or γ share them and one
compiled program (``agents.shared_functions``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from structbandits.agents.propensity import thompson_choice
from structbandits.agents.protocol import ActInfo, Policy
from structbandits.agents.shared_functions import shared_policy
from structbandits.errors import check_finite, check_integer, check_positive
from structbandits.inference.forgetting import (
    check_forgetting,
    nig_forget,
    nig_forget_directional,
    nig_remove,
    window_init,
    window_push,
)
from structbandits.inference.nig import NIG, nig_observe, nig_prior, nig_sample, nig_sample_mean

__all__ = ["StandardTSForgettingParams", "StandardTSParams", "StandardTSState", "StandardTSWindowState", "standard_ts"]


class StandardTSParams(NamedTuple):
    """Standard TS hyperparameters: ``prior``, the NIG(m, κ, α, β) of every arm, fields (C, K)."""

    prior: NIG


class StandardTSForgettingParams(NamedTuple):
    """``StandardTSParams`` and the forgetting rate γ () of ``standard_ts(..., forgetting="exponential" or
    "stabilised")``: data, so a sweep over γ runs one program."""

    prior: NIG
    forgetting_rate: jax.Array


class StandardTSState(NamedTuple):
    """``arms``: NIG posteriors with fields of shape (C, K) (C = 1 without context cells); ``params``."""

    arms: NIG
    params: StandardTSParams


class StandardTSWindowState(NamedTuple):
    """``StandardTSState`` of ``standard_ts(..., forgetting="window")`` with ``window``, a ``RingBuffer`` of
    the last w rounds' rows {"cell": (), "action": (), "reward": ()}."""

    arms: NIG
    params: StandardTSParams
    window: Any


def _context_cell(context) -> jax.Array:
    return context.cell


@lru_cache(maxsize=256)
def _functions(k: int, num_cells: int | None, m: int, cell_of: Callable, forgetting: str | None,
               window: int | None) -> tuple:
    """(init(key, params), act, update, posterior_draws) of ``standard_ts``: structure only, values from the params."""

    def cell(context) -> jax.Array:
        return jnp.asarray(0) if num_cells is None else cell_of(context)

    def init(key: jax.Array, params: StandardTSParams) -> StandardTSState:
        if forgetting == "window":
            row = {"cell": jnp.zeros((), jnp.int32), "action": jnp.zeros((), jnp.int32), "reward": params.prior.mean[0, 0]}
            return StandardTSWindowState(params.prior, params, window_init(row, window))
        return StandardTSState(params.prior, params)

    def act(state: StandardTSState, key: jax.Array, context) -> tuple[jax.Array, ActInfo]:
        arms = jax.tree.map(lambda leaf: leaf[cell(context)], state.arms)  # fields (K,)
        return thompson_choice(lambda k_, shape: nig_sample_mean(arms, k_, shape), key, m, arms.mean.dtype)

    def update(state: StandardTSState, context, action: jax.Array, reward: jax.Array) -> StandardTSState:
        x = cell(context)
        if forgetting is None:
            arm = jax.tree.map(lambda leaf: leaf[x, action], state.arms)
            new = nig_observe(arm, reward)
            return StandardTSState(jax.tree.map(lambda leaf, value: leaf.at[x, action].set(value), state.arms, new),
                                   state.params)
        arms, params = state.arms, state.params

        def take(tree, at_cell, at_action):
            return jax.tree.map(lambda leaf: leaf[at_cell, at_action], tree)

        def put(tree, at_cell, at_action, value):
            return jax.tree.map(lambda leaf, one: leaf.at[at_cell, at_action].set(one), tree, value)

        if forgetting == "exponential":
            arms = nig_forget(arms, params.prior, params.forgetting_rate)
        elif forgetting == "stabilised":
            decayed = nig_forget_directional(take(arms, x, action), take(params.prior, x, action), params.forgetting_rate)
            arms = put(arms, x, action, decayed)
        else:
            buffer, leaving, weight = window_push(state.window, {"cell": x, "action": action, "reward": reward},
                                                  arms.mean.dtype)
            removed = nig_remove(take(arms, leaving["cell"], leaving["action"]), leaving["reward"], weight)
            arms = put(arms, leaving["cell"], leaving["action"], removed)
        arms = put(arms, x, action, nig_observe(take(arms, x, action), reward))
        if forgetting == "window":
            return StandardTSWindowState(arms, params, buffer)
        return StandardTSState(arms, params)

    def posterior_draws(state: StandardTSState, key: jax.Array, num_draws: int) -> dict[str, jax.Array]:
        mean, var = nig_sample(state.arms, key, (num_draws,))
        return {"mean_reward": mean, "noise_var": var}

    return init, act, update, posterior_draws


def standard_ts(
    num_actions: int,
    *,
    num_cells: int | None = None,
    prior_mean: float = 77.0,
    prior_kappa: float = 5.0,
    prior_alpha: float = 1.0,
    prior_beta: float = 10.0,
    propensity_draws: int = 100,
    cell_of: Callable[[object], jax.Array] = _context_cell,
    forgetting: str | None = None,
    forgetting_rate: float = 1.0,
    window: int | None = None,
) -> Policy:
    """Standard NIG Thompson sampling, non-contextual or per context cell.

    Parameters
    ----------
    num_actions : K arms (prompts).
    num_cells : None for one set of arms shared by all contexts; C for separate arms per context cell.
    prior_mean, prior_kappa, prior_alpha, prior_beta : the NIG prior of every arm.
    propensity_draws : M posterior draws for the propensity estimate (0: NaN).
    cell_of : context → integer cell in [0, C) (default ``context.cell``); unused without ``num_cells``.
    forgetting : None (default: the stationary posterior), "exponential" (every arm of every cell decays
        toward the prior by γ each round), "stabilised" (the pulled arm decays before its observation:
        κ − κ₀ and κm − κ₀m₀ by γ, α by (1 − γ)/2) or "window" (the posterior of the last ``window``
        rounds). See ``inference.forgetting``.
    forgetting_rate : γ in (0, 1] for "exponential" and "stabilised" (1: nothing is forgotten); held in
        ``Policy.params`` (``StandardTSForgettingParams``), so every γ shares one program.
    window : w >= 1 rounds, with ``forgetting="window"`` only (a buffer shape: structural).

    Returns
    -------
    Policy with state ``StandardTSState`` (``StandardTSWindowState`` with a window) and params
    ``StandardTSParams`` (the prior, as data; a per-arm prior of the same shapes may be passed to ``init``);
    rewards are scalars. Per round O(M K).
    """
    k = check_integer("num_actions", num_actions, minimum=2)
    c = 1 if num_cells is None else check_integer("num_cells", num_cells, minimum=1)
    check_finite("prior_mean", prior_mean)
    for name, value in (("prior_kappa", prior_kappa), ("prior_alpha", prior_alpha), ("prior_beta", prior_beta)):
        check_positive(name, value)
    m = check_integer("propensity_draws", propensity_draws, minimum=0)
    forgetting, rate, window = check_forgetting(forgetting, forgetting_rate, window)
    defaults = StandardTSParams(nig_prior(prior_mean, prior_kappa, prior_alpha, prior_beta, (c, k)))
    if forgetting in ("exponential", "stabilised"):
        defaults = StandardTSForgettingParams(defaults.prior, jnp.asarray(rate, defaults.prior.mean.dtype))

    return shared_policy(*_functions(k, None if num_cells is None else c, m, cell_of, forgetting, window), defaults)
