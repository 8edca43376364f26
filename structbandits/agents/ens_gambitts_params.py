"""Ensemble GAMBITTS options (moved from ``agents.ens_gambitts``, which re-exports the public names): the
hyperparameters ``EnsGambittsParams`` (data), the agent state ``EnsGambittsState``, the structural options
``_EnsembleOptions`` (the function builders' cache key) and their validation ``_ensemble_options``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from structbandits.errors import ValidationError, check_integer, check_positive
from structbandits.inference.ensemble import Ensemble
from structbandits.inference.ring_buffer import RingBuffer

__all__ = ["EnsGambittsParams", "EnsGambittsState"]


class EnsGambittsParams(NamedTuple):
    """Ensemble GAMBITTS hyperparameters (scalars in the networks' dtype).

    Attributes
    ----------
    learning_rate : () Adam's learning rate; None when a custom ``optimizer`` was given.
    perturbation_scale : () sd σ of the target perturbations.
    perturbation_var : () σ², rounded once from double precision (the anchor weight's numerator).
    prior_var : () σ0² of the anchor term; None without it (``prior_scale`` None).
    treatment : ens-po: the offline draws of the working columns (``EmpiricalTreatment``, (K, C, N, d));
        ens-fo: the NIW prior of every (cell, prompt), fields (d,) ....
    feature_index : (d,) int32 the working-embedding columns of ``context.treatments``.
    """

    learning_rate: jax.Array | None
    perturbation_scale: jax.Array
    perturbation_var: jax.Array
    prior_var: jax.Array | None
    treatment: object
    feature_index: jax.Array


class EnsGambittsState(NamedTuple):
    """Ensemble agent state.

    Attributes
    ----------
    ensemble : the M reward models (``inference.ensemble.Ensemble``).
    buffer : the replay buffer of (z_S, y, perturbations).
    round : () rounds observed so far.
    key : the agent's own PRNG key for perturbations and minibatches.
    treatment : ens-po: this seed's offline draws (``EmpiricalTreatment``) when subsampled, else None;
        ens-fo: NIW posteriors per (cell, prompt), fields (C, K, ...).
    params : ``EnsGambittsParams``.
    """

    ensemble: Ensemble
    buffer: RingBuffer
    round: jax.Array
    key: jax.Array
    treatment: object
    params: EnsGambittsParams


class _EnsembleOptions(NamedTuple):
    """The structural options: the functions' cache key (hashable; no arrays)."""

    members: int
    hidden: int
    optimizer: optax.GradientTransformation | None  # None: Adam at the params' learning rate
    buffer_size: int
    batch_size: int
    warmup: int
    mc_draws: int
    reset_optimizer: bool
    anchored: bool  # prior_scale given: the anchor term is on
    propensity_draws: int
    dtype: object


def _ensemble_options(num_members, num_hidden, learning_rate, buffer_size, batch_size, warmup, perturbation_scale,
                      mc_draws, reset_optimizer, prior_scale, propensity_draws, optimizer, dtype,
                      treatment, index: tuple[int, ...]) -> tuple[_EnsembleOptions, EnsGambittsParams]:
    """The validated structural options and the hyperparameters (``treatment``: the treatment model's params;
    ``index``: the validated working columns)."""
    if dtype not in ("float32", "float64"):
        raise ValidationError(f"dtype: expected \"float32\" or \"float64\", got {dtype!r}")
    net = jnp.dtype(dtype)
    rate = None
    if optimizer is None:
        rate = float(check_positive("learning_rate", learning_rate))
        # None: ``init`` and ``update`` build Adam from the traced rate (Adam's state does not depend on
        # it; the traced rate multiplies the update exactly as the constant did).
    elif not isinstance(optimizer, optax.GradientTransformation):
        raise ValidationError(f"optimizer: expected an optax.GradientTransformation, got {type(optimizer).__name__}")
    scale = float(check_positive("perturbation_scale", perturbation_scale, allow_zero=True))
    prior_scale = None if prior_scale is None else float(check_positive("prior_scale", prior_scale))
    # Squares in double precision, then rounded to the networks' dtype: as the Python constants were.
    params = EnsGambittsParams(
        learning_rate=None if rate is None else jnp.asarray(rate, net),
        perturbation_scale=jnp.asarray(scale, net),
        perturbation_var=jnp.asarray(scale**2, net),
        prior_var=None if prior_scale is None else jnp.asarray(prior_scale**2, net),
        treatment=treatment,
        feature_index=jnp.asarray(index, jnp.int32),
    )
    return _EnsembleOptions(
        members=check_integer("num_members", num_members, minimum=1),
        hidden=check_integer("num_hidden", num_hidden, minimum=0),
        optimizer=optimizer,
        buffer_size=check_integer("buffer_size", buffer_size, minimum=1),
        batch_size=check_integer("batch_size", batch_size, minimum=1),
        warmup=check_integer("warmup", warmup, minimum=0),
        mc_draws=check_integer("mc_draws", mc_draws, minimum=1),
        reset_optimizer=bool(reset_optimizer),
        anchored=prior_scale is not None,
        propensity_draws=check_integer("propensity_draws", propensity_draws, minimum=0),
        dtype=net,
    ), params
