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
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from structbandits.agents.propensity import thompson_choice
from structbandits.agents.protocol import ActInfo, Policy
from structbandits.errors import check_finite, check_integer, check_positive
from structbandits.inference.nig import NIG, nig_observe, nig_prior, nig_sample, nig_sample_mean

__all__ = ["StandardTSParams", "StandardTSState", "standard_ts"]


class StandardTSParams(NamedTuple):
    """Standard TS hyperparameters: ``prior``, the NIG(m, κ, α, β) of every arm, fields (C, K)."""

    prior: NIG


class StandardTSState(NamedTuple):
    """``arms``: NIG posteriors with fields of shape (C, K) (C = 1 without context cells); ``params``."""

    arms: NIG
    params: StandardTSParams


def _context_cell(context) -> jax.Array:
    return context.cell


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
) -> Policy:
    """Standard NIG Thompson sampling, non-contextual or per context cell.

    Parameters
    ----------
    num_actions : K arms (prompts).
    num_cells : None for one set of arms shared by all contexts; C for separate arms per context cell.
    prior_mean, prior_kappa, prior_alpha, prior_beta : the NIG prior of every arm.
    propensity_draws : M posterior draws for the propensity estimate (0: NaN).
    cell_of : context → integer cell in [0, C) (default ``context.cell``); unused without ``num_cells``.

    Returns
    -------
    Policy with state ``StandardTSState`` and params ``StandardTSParams`` (the prior, as data; a
    per-arm prior of the same shapes may be passed to ``init``); rewards are scalars. Per round O(M K).
    """
    k = check_integer("num_actions", num_actions, minimum=2)
    c = 1 if num_cells is None else check_integer("num_cells", num_cells, minimum=1)
    check_finite("prior_mean", prior_mean)
    for name, value in (("prior_kappa", prior_kappa), ("prior_alpha", prior_alpha), ("prior_beta", prior_beta)):
        check_positive(name, value)
    m = check_integer("propensity_draws", propensity_draws, minimum=0)
    defaults = StandardTSParams(nig_prior(prior_mean, prior_kappa, prior_alpha, prior_beta, (c, k)))

    def cell(context) -> jax.Array:
        return jnp.asarray(0) if num_cells is None else cell_of(context)

    def init(key: jax.Array, params: StandardTSParams | None = None) -> StandardTSState:
        params = defaults if params is None else params
        return StandardTSState(params.prior, params)

    def act(state: StandardTSState, key: jax.Array, context) -> tuple[jax.Array, ActInfo]:
        arms = jax.tree.map(lambda leaf: leaf[cell(context)], state.arms)  # fields (K,)
        return thompson_choice(lambda k_, shape: nig_sample_mean(arms, k_, shape), key, m, arms.mean.dtype)

    def update(state: StandardTSState, context, action: jax.Array, reward: jax.Array) -> StandardTSState:
        x = cell(context)
        arm = jax.tree.map(lambda leaf: leaf[x, action], state.arms)
        new = nig_observe(arm, reward)
        return StandardTSState(jax.tree.map(lambda leaf, value: leaf.at[x, action].set(value), state.arms, new),
                               state.params)

    def posterior_draws(state: StandardTSState, key: jax.Array, num_draws: int) -> dict[str, jax.Array]:
        mean, var = nig_sample(state.arms, key, (num_draws,))
        return {"mean_reward": mean, "noise_var": var}

    return Policy(init, act, update, posterior_draws, defaults)
