"""GAMBITTS reward stages with forgetting: the params and window states of ``fo_gambitts`` / ``po_gambitts``
with ``reward_forgetting`` (``agents.gambitts``), and the one reward update they share.

The reward stage is one Gaussian posterior of β (information form); ``inference.forgetting`` forgets it
("exponential" / "stabilised" at γ = ``reward_forgetting_rate``, data in the params) or keeps it on the last
``reward_window`` rounds (a buffer in the state) before each observation.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax

from structbandits.inference.conjugate import GaussianInfo
from structbandits.inference.empirical import EmpiricalTreatment
from structbandits.inference.forgetting import check_forgetting, gaussian_forget_observe, window_init
from structbandits.inference.niw import NIW

__all__ = ["FOGambittsForgettingParams", "FOGambittsWindowState", "POGambittsForgettingParams", "POGambittsWindowState",
           "forgetting_reward", "reward_forgetting_options", "reward_window_buffer"]


class FOGambittsForgettingParams(NamedTuple):
    """``FOGambittsParams`` and ``reward_forgetting_rate`` γ () (reward forgetting "exponential" / "stabilised");
    ``feature_index`` (d,) int32 as there."""

    reward_prior: GaussianInfo
    noise_var: jax.Array
    treatment_prior: NIW
    reward_forgetting_rate: jax.Array
    feature_index: jax.Array


class FOGambittsWindowState(NamedTuple):
    """``FOGambittsState`` with ``window``: the reward stage's ``RingBuffer`` of rows {"x": φ(z) (p,), "y": ()}."""

    reward: GaussianInfo
    treatment: NIW
    params: Any
    window: Any


class POGambittsForgettingParams(NamedTuple):
    """``POGambittsParams`` and ``reward_forgetting_rate`` γ () (reward forgetting "exponential" / "stabilised");
    ``feature_index`` (d,) int32 as there."""

    reward_prior: GaussianInfo
    noise_var: jax.Array
    treatment: EmpiricalTreatment
    treatment_means: jax.Array
    reward_forgetting_rate: jax.Array
    feature_index: jax.Array


class POGambittsWindowState(NamedTuple):
    """``POGambittsState`` with ``window``: the reward stage's ``RingBuffer`` of rows {"x": φ(z) (p,), "y": ()}."""

    reward: GaussianInfo
    treatment_means: jax.Array
    params: Any
    window: Any


def reward_forgetting_options(kind, rate, window) -> tuple[str | None, float, int | None]:
    """Validate ``reward_forgetting``, ``reward_forgetting_rate``, ``reward_window``; returns (kind, γ, w)."""
    return check_forgetting(kind, rate, window, rate_name="reward_forgetting_rate", kind_name="reward_forgetting",
                            window_name="reward_window")


def forgetting_reward(forgetting: str, state, phi: jax.Array, reward: jax.Array) -> tuple[GaussianInfo, Any]:
    """The reward stage after forgetting and the observation (reward φ(z)ᵀβ + noise); and the window buffer."""
    params = state.params
    return gaussian_forget_observe(forgetting, state.reward, params.reward_prior, phi, reward, params.noise_var,
                                   getattr(params, "reward_forgetting_rate", None), getattr(state, "window", None))


def reward_window_buffer(params, window: int):
    """An empty reward-stage buffer of ``window`` rows {"x": (p,), "y": ()}."""
    return window_init({"x": params.reward_prior.info, "y": params.noise_var}, window)
