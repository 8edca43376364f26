"""foGAMBITTS / poGAMBITTS internals (moved from ``agents.gambitts``, which re-exports the public names):
the params and state types (``FOGambittsParams``, ``FOGambittsState``, ``POGambittsParams``,
``POGambittsState``), the linear Thompson score β̃ᵀ[1, z̄_a], and the ``lru_cache``-d builders
``_fo_functions`` / ``_po_functions`` of (init, act, update, posterior_draws), keyed on shapes and
structural options only. The mediated context protocol is described in ``agents.gambitts``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import jax
import jax.numpy as jnp

from structbandits.agents.gambitts_priors import _replicate_cells, niw_cell_draws
from structbandits.agents.propensity import thompson_choice
from structbandits.agents.protocol import ActInfo
from structbandits.agents.reward_forgetting import (
    FOGambittsWindowState,
    POGambittsWindowState,
    forgetting_reward,
    reward_window_buffer,
)
from structbandits.inference.conjugate import GaussianInfo, gaussian_sample, linear_regression_observe
from structbandits.inference.empirical import EmpiricalTreatment, empirical_means, empirical_subsample
from structbandits.inference.niw import NIW, niw_observe, niw_sample_mean

__all__ = ["FOGambittsParams", "FOGambittsState", "POGambittsParams", "POGambittsState"]


def _with_intercept(z: jax.Array) -> jax.Array:
    return jnp.concatenate([jnp.ones(z.shape[:-1] + (1,), z.dtype), z], axis=-1)


def _linear_scores(reward: GaussianInfo, key: jax.Array, shape: tuple[int, ...], treatment_means: jax.Array) -> jax.Array:
    """β̃ᵀ[1, z̄_a] for every prompt: ``treatment_means`` (*shape, K, d) or (K, d) → (*shape, K)."""
    beta = gaussian_sample(reward, key, shape)  # (*shape, p)
    return beta[..., :1] + jnp.einsum("...kd,...d->...k", treatment_means, beta[..., 1:])


class FOGambittsParams(NamedTuple):
    """foGAMBITTS hyperparameters: ``reward_prior`` β's Gaussian prior in information form (p = d + 1),
    ``noise_var`` () σ², ``treatment_prior`` the NIW prior of every (cell, prompt), fields (d,) ...,
    ``feature_index`` (d,) int32 the working-embedding columns of ``context.treatments``."""

    reward_prior: GaussianInfo
    noise_var: jax.Array
    treatment_prior: NIW
    feature_index: jax.Array


class FOGambittsState(NamedTuple):
    """``reward`` β's Gaussian posterior (p = d + 1); ``treatment`` NIW per (cell, prompt), fields (C, K, ...);
    ``params``."""

    reward: GaussianInfo
    treatment: NIW
    params: FOGambittsParams


class POGambittsParams(NamedTuple):
    """poGAMBITTS hyperparameters: ``reward_prior``, ``noise_var`` as ``FOGambittsParams``;
    ``treatment`` the offline draws of the working columns (``EmpiricalTreatment``, draws (K, C, N, d));
    ``treatment_means`` (K, C, d) their per-cell means (used when every row is available);
    ``feature_index`` (d,) int32 the working-embedding columns of ``context.treatments``."""

    reward_prior: GaussianInfo
    noise_var: jax.Array
    treatment: EmpiricalTreatment
    treatment_means: jax.Array
    feature_index: jax.Array


class POGambittsState(NamedTuple):
    """``reward`` β's Gaussian posterior; ``treatment_means`` (K, C, d) offline mean treatments; ``params``."""

    reward: GaussianInfo
    treatment_means: jax.Array
    params: POGambittsParams



@lru_cache(maxsize=256)
def _fo_functions(k: int, c: int, d: int, m: int, forgetting: str | None, window: int | None):
    """foGAMBITTS' (init(key, params), act, update, posterior_draws) for K = k, C = c, d columns, M = m
    propensity draws; everything else comes from the params."""

    def init(key: jax.Array, params: FOGambittsParams) -> FOGambittsState:
        treatment = _replicate_cells(params.treatment_prior, c, k)
        if forgetting == "window":
            return FOGambittsWindowState(params.reward_prior, treatment, params, reward_window_buffer(params, window))
        return FOGambittsState(params.reward_prior, treatment, params)

    def act(state: FOGambittsState, key: jax.Array, context) -> tuple[jax.Array, ActInfo]:
        cell_niw = jax.tree.map(lambda leaf: leaf[context.cell], state.treatment)  # fields (K, ...)

        def score_draws(score_key, shape):
            beta_key, mean_key = jax.random.split(score_key)
            means = jax.vmap(niw_sample_mean, (0, 0, None))(cell_niw, jax.random.split(mean_key, k), shape)
            return _linear_scores(state.reward, beta_key, shape, jnp.moveaxis(means, 0, -2))

        return thompson_choice(score_draws, key, m, state.reward.info.dtype)

    def update(state: FOGambittsState, context, action: jax.Array, reward: jax.Array) -> FOGambittsState:
        z = context.treatments[action, state.params.feature_index]
        cell_arm = jax.tree.map(lambda leaf: leaf[context.cell, action], state.treatment)
        treatment = jax.tree.map(lambda leaf, new: leaf.at[context.cell, action].set(new),
                                 state.treatment, niw_observe(cell_arm, z))
        if forgetting is None:
            return FOGambittsState(linear_regression_observe(state.reward, _with_intercept(z), reward,
                                                             state.params.noise_var), treatment, state.params)
        posterior, buffer = forgetting_reward(forgetting, state, _with_intercept(z), reward)
        if forgetting == "window":
            return FOGambittsWindowState(posterior, treatment, state.params, buffer)
        return FOGambittsState(posterior, treatment, state.params)

    def posterior_draws(state: FOGambittsState, key: jax.Array, num_draws: int) -> dict[str, jax.Array]:
        beta_key, treatment_key = jax.random.split(key)
        return {"beta": gaussian_sample(state.reward, beta_key, (num_draws,)),
                **niw_cell_draws(state.treatment, treatment_key, num_draws)}

    return init, act, update, posterior_draws


@lru_cache(maxsize=256)
def _po_functions(k: int, c: int, n: int, d: int, num_draws: int | None, m: int, forgetting: str | None,
                  window: int | None):
    """poGAMBITTS' (init(key, params), act, update, posterior_draws) for offline draws (k, c, n, d), ``num_draws``
    rows per seed (None: all), M = m propensity draws; everything else comes from the params."""

    def init(key: jax.Array, params: POGambittsParams) -> POGambittsState:
        means = (params.treatment_means if num_draws is None
                 else empirical_means(empirical_subsample(params.treatment, key, num_draws)))
        if forgetting == "window":
            return POGambittsWindowState(params.reward_prior, means, params, reward_window_buffer(params, window))
        return POGambittsState(params.reward_prior, means, params)

    def act(state: POGambittsState, key: jax.Array, context) -> tuple[jax.Array, ActInfo]:
        means = state.treatment_means[:, context.cell]  # (K, d)
        return thompson_choice(lambda k_, shape: _linear_scores(state.reward, k_, shape, means), key, m,
                               state.reward.info.dtype)

    def update(state: POGambittsState, context, action: jax.Array, reward: jax.Array) -> POGambittsState:
        z = context.treatments[action, state.params.feature_index]
        if forgetting is None:
            return POGambittsState(linear_regression_observe(state.reward, _with_intercept(z), reward,
                                                             state.params.noise_var), state.treatment_means, state.params)
        posterior, buffer = forgetting_reward(forgetting, state, _with_intercept(z), reward)
        if forgetting == "window":
            return POGambittsWindowState(posterior, state.treatment_means, state.params, buffer)
        return POGambittsState(posterior, state.treatment_means, state.params)

    def posterior_draws(state: POGambittsState, key: jax.Array, num_draws_: int) -> dict[str, jax.Array]:
        return {"beta": gaussian_sample(state.reward, key, (num_draws_,))}

    return init, act, update, posterior_draws
