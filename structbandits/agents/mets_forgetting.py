"""meTS with forgetting (``mets(..., forgetting=...)``): its params and state types and the policy.

``METSForgettingParams`` (the prior and the two forgetting rates), ``METSForgettingState`` (the arms'
statistics twice: at the arms' rate and at the effects' rate) and ``_forgetting_mets``, built on
``mets_core``; the model is described in ``agents.mets``' module docstring.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from structbandits.agents.mets_core import METSCore, METSState, _observe, _thompson_action
from structbandits.agents.protocol import ActInfo, Policy
from structbandits.agents.thompson import arm_features
from structbandits.inference.forgetting import data_direction, window_init, window_push

__all__ = ["METSForgettingParams", "METSForgettingState"]


class METSForgettingParams(NamedTuple):
    """``METSParams`` and the forgetting rates () of ``mets(..., forgetting="exponential" or "stabilised")``:
    ``forgetting_rate`` γ of the arms' θ_i and ``effect_forgetting_rate`` γ_Ψ of the effects (data, so a
    sweep over them runs one program)."""

    mixing: jax.Array
    action_precision_chol: jax.Array
    action_precision: jax.Array
    effect_precision: jax.Array
    effect_info: jax.Array
    noise_var: jax.Array
    forgetting_rate: jax.Array
    effect_forgetting_rate: jax.Array


class METSForgettingState(NamedTuple):
    """meTS state with forgetting.

    Attributes
    ----------
    posterior : ``METSState`` whose ``gram``, ``moment``, ``conditional_chol`` are the arms' statistics
        decayed at ``forgetting_rate`` (θ_i | Ψ), and whose evidence and effect posterior come from
    effect_gram, effect_moment : (K, d, d), (K, d), the statistics decayed at ``effect_forgetting_rate``.
    window : with ``forgetting="window"``, a ``RingBuffer`` of the last w rounds' rows {"x": (d,),
        "action": (), "reward": ()}; None otherwise.

    ``params`` (a property) is ``posterior.params``.
    """

    posterior: METSState
    effect_gram: jax.Array
    effect_moment: jax.Array
    window: Any

    @property
    def params(self):
        return self.posterior.params


def _forgetting_mets(core: METSCore, forgetting: str, rate: float, effect_rate: float, window: int | None,
                     sampling: str) -> Policy:
    """meTS with forgetting (``mets``' docstring): the statistics (G, B) twice, at the arms' rate and at the
    effects' rate, forgotten as ``inference.forgetting`` prescribes for data parts, then every arm rebuilt."""
    base = core.params
    dtype = base.noise_var.dtype
    if forgetting == "window":
        defaults = base
    else:
        defaults = METSForgettingParams(*base, jnp.asarray(rate, dtype), jnp.asarray(effect_rate, dtype))

    def init(key: jax.Array, params=None) -> METSForgettingState:
        posterior = core.init(defaults if params is None else params)
        buffer = None
        if forgetting == "window":
            row = {"x": posterior.moment[0], "action": jnp.zeros((), jnp.int32), "reward": posterior.params.noise_var}
            buffer = window_init(row, window)
        return METSForgettingState(posterior, posterior.gram, posterior.moment, buffer)

    def act(state: METSForgettingState, key: jax.Array, context: jax.Array) -> tuple[jax.Array, ActInfo]:
        return _thompson_action(core, sampling, state.posterior, key, context)

    def forget(gram, moment, precision, x, action, arm_rate):
        """(G, B) of every arm after this round's forgetting at ``arm_rate`` (exponential / stabilised)."""
        if forgetting == "exponential":
            return arm_rate * gram, arm_rate * moment
        v, r, excited = data_direction(gram[action], moment[action], x, precision[action] + gram[action])
        share = jnp.where(excited, 1.0 - arm_rate, 0.0)  # removes the pseudo-observation (v, r) with weight 1 − γ
        return (gram.at[action].add(-share * jnp.outer(v, v)), moment.at[action].add(-share * v * r))

    def update(state: METSForgettingState, context: jax.Array, action: jax.Array, reward: jax.Array) -> METSForgettingState:
        posterior, params = state.posterior, state.params
        x = arm_features(context, action)
        noise_var = params.noise_var
        buffer = state.window
        if forgetting == "window":
            buffer, leaving, weight = window_push(buffer, {"x": x, "action": action, "reward": reward}, dtype)
            removed = (weight * jnp.outer(leaving["x"], leaving["x"]) / noise_var,
                       weight * leaving["x"] * leaving["reward"] / noise_var)
            gram, moment = (stat.at[leaving["action"]].add(-change) for stat, change in zip(
                (posterior.gram, posterior.moment), removed))
            effect_gram, effect_moment = (stat.at[leaving["action"]].add(-change) for stat, change in zip(
                (state.effect_gram, state.effect_moment), removed))
            unchanged = weight == 0.0
        else:
            gram, moment = forget(posterior.gram, posterior.moment, params.action_precision, x, action,
                                  params.forgetting_rate)
            effect_gram, effect_moment = forget(state.effect_gram, state.effect_moment, params.action_precision, x,
                                                action, params.effect_forgetting_rate)
            unchanged = (params.forgetting_rate == 1.0) & (params.effect_forgetting_rate == 1.0)
        gram, effect_gram = (g.at[action].add(jnp.outer(x, x) / noise_var) for g in (gram, effect_gram))
        moment, effect_moment = (b.at[action].add(x * reward / noise_var) for b in (moment, effect_moment))

        def stationary(_):  # nothing was forgotten: the stationary update, bit for bit
            return _observe(core, posterior, x, action, reward)

        def rebuilt(_):
            return core.rebuild(posterior, gram, moment, effect_gram, effect_moment)

        return METSForgettingState(jax.lax.cond(unchanged, stationary, rebuilt, None), effect_gram, effect_moment,
                                   buffer)

    def posterior_draws(state: METSForgettingState, key: jax.Array, num_draws: int) -> dict[str, jax.Array]:
        return core.posterior_draws(state.posterior, key, num_draws)

    return Policy(init, act, update, posterior_draws, defaults)
