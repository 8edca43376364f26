"""The conjugate Dirichlet-multinomial posterior of transition rows (``models.restless_dirichlet``).

One transition row P[i, s, a] (a distribution over next states s') with prior Dirichlet(α) and
n[s'] observed moves to each s' has the posterior

    P | n ~ Dirichlet(α + n),   mean m = (α + n) / α₀,   Cov = (diag(m) − m mᵀ) / (α₀ + 1),

with α₀ = Σ (α + n). So a restless arm's posterior is its prior concentrations plus its transition
counts, and an online learner's state is just those counts. Functions act on the last axis (one
row) and broadcast over any leading axes, (N, S, A, S) for N arms.

Draws use the boosted Gamma representation in log space: a Dirichlet(c) row is the normalised
vector of Gamma(c_k) variables, and Gamma(c) = Gamma(c + 1) · U^{1/c} for small c, so
log G = log G(c + 1) + log(U) / c is finite even where G itself underflows (concentrations of
1e-2 on structurally impossible moves); the row is then a softmax of the log-Gammas.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from structbandits.errors import ValidationError, check_finite, check_positive
from structbandits.inference.sampling import gamma

__all__ = [
    "check_transition_data",
    "dirichlet_covariance",
    "dirichlet_mean",
    "dirichlet_sample",
    "group_concentration",
    "transition_counts",
]


def dirichlet_mean(concentration: jax.Array) -> jax.Array:
    """Mean of Dirichlet(c) along the last axis: c / Σc. Same shape as ``concentration``."""
    return concentration / jnp.sum(concentration, axis=-1, keepdims=True)


def dirichlet_covariance(concentration: jax.Array) -> jax.Array:
    """Covariance of Dirichlet(c): (diag(m) − m mᵀ) / (Σc + 1). Shape ``concentration.shape + (S,)``."""
    mean = dirichlet_mean(concentration)
    total = jnp.sum(concentration, axis=-1)[..., None, None]
    outer = mean[..., :, None] * mean[..., None, :]
    return (mean[..., :, None] * jnp.eye(mean.shape[-1], dtype=mean.dtype) - outer) / (total + 1.0)


@partial(jax.jit, static_argnames="shape")
def dirichlet_sample(key: jax.Array, concentration: jax.Array, shape: tuple[int, ...] = ()) -> jax.Array:
    """Draws of Dirichlet(c) rows, shaped ``shape + concentration.shape`` (every row on the simplex)."""
    full = tuple(shape) + tuple(concentration.shape)
    conc = jnp.broadcast_to(concentration, full)
    gamma_key, boost_key = jax.random.split(key)
    shifted = gamma(gamma_key, conc + 1.0, full, conc.dtype)  # shape >= 1: no boost inside
    uniform = jax.random.uniform(boost_key, full, conc.dtype, minval=jnp.finfo(conc.dtype).tiny)
    return jax.nn.softmax(jnp.log(shifted) + jnp.log(uniform) / conc, axis=-1)


def transition_counts(arms: jax.Array, states: jax.Array, actions: jax.Array, next_states: jax.Array,
                      shape: tuple[int, int, int, int], dtype=jnp.float64) -> jax.Array:
    """Counts n[i, s, a, s'] of the observed transitions (n,) each; returns an array of ``shape`` (N, S, A, S)."""
    return jnp.zeros(shape, dtype).at[arms, states, actions, next_states].add(1.0)


def group_concentration(concentration: jax.Array, counts: jax.Array, groups: jax.Array, num_groups: int) -> jax.Array:
    """A group's pooled posterior: group prior (G, S, A, S) plus the counts (N, S, A, S) of all its arms.

    This is the flat model's posterior when every arm of a group shares one transition model
    (complete pooling); returns (G, S, A, S).
    """
    return concentration + jax.ops.segment_sum(counts, groups, num_segments=num_groups)


def _integer_labels(name: str, value, upper: int, length: int | None) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim != 1 or (length is not None and arr.shape[0] != length):
        expected = f"({length},)" if length is not None else "(n,)"
        raise ValidationError(f"{name}: expected shape {expected}, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValidationError(f"{name}: expected integers, got dtype {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() >= upper):
        raise ValidationError(f"{name}: expected values in 0..{upper - 1}, got the range {arr.min()}..{arr.max()}")
    return arr


def check_transition_data(concentration, counts=None, arms=None, states=None, actions=None, next_states=None,
                          groups=None, arm_concentration=None, *, num_arms: int | None = None) -> dict[str, Any]:
    """Validate the arguments of ``models.restless_dirichlet`` and return them as NumPy arrays.

    Checks: ``concentration`` (N or G, S, A, S) finite and > 0; ``counts`` (N, S, A, S) finite and
    >= 0; the transition list all four (n,) integer arrays in range, or none of them; ``groups``
    (N,) integer labels covering 0..G-1 with a positive ``arm_concentration`` (scalar or (N,)).
    ``num_arms`` is N when the concentration is group-level and no counts or groups say it.
    Returns the validated non-None arguments by name.
    """
    conc = check_positive("concentration", concentration)
    if conc.ndim != 4 or conc.shape[1] != conc.shape[3] or conc.shape[2] < 1:
        raise ValidationError(f"concentration: expected shape (N, S, A, S), got shape {conc.shape}")
    _, num_states, num_actions, _ = conc.shape
    out: dict[str, Any] = {"concentration": conc}
    hierarchical = groups is not None
    if hierarchical:
        labels = np.asarray(groups)
        out["groups"] = _integer_labels("groups", labels, conc.shape[0], num_arms)
        missing = np.setdiff1d(np.arange(conc.shape[0]), out["groups"])
        if missing.size:
            raise ValidationError(f"groups: expected every group 0..{conc.shape[0] - 1} to have an arm, "
                                  f"got none in group {int(missing[0])}")
        num_arms = out["groups"].shape[0]
        if arm_concentration is None:
            raise ValidationError("arm_concentration: required with groups (the hierarchical prior), got None")
        kappa = check_positive("arm_concentration", arm_concentration)
        if kappa.ndim not in (0, 1) or (kappa.ndim == 1 and kappa.shape[0] != num_arms):
            raise ValidationError(f"arm_concentration: expected a scalar or shape ({num_arms},), got shape {kappa.shape}")
        out["arm_concentration"] = kappa
    elif arm_concentration is not None:
        raise ValidationError("arm_concentration: only meaningful with groups (hierarchical prior); got groups=None")
    else:
        num_arms = conc.shape[0]
    if counts is not None:
        n = check_finite("counts", counts)
        if num_arms is None:
            num_arms = n.shape[0] if n.ndim == 4 else None
        if n.shape != (num_arms, num_states, num_actions, num_states):
            raise ValidationError(f"counts: expected shape {(num_arms, num_states, num_actions, num_states)}, "
                                  f"got shape {n.shape}")
        if np.any(n < 0):
            raise ValidationError(f"counts: expected non-negative counts, got a minimum of {n.min()}")
        out["counts"] = n
    listed = {"arms": arms, "states": states, "actions": actions, "next_states": next_states}
    given = [name for name, value in listed.items() if value is not None]
    if given and len(given) != 4:
        missing_name = next(name for name in listed if listed[name] is None)
        raise ValidationError(f"{missing_name}: a transition list needs arms, states, actions and next_states; "
                              f"got only {', '.join(given)}")
    if given:
        if num_arms is None:
            raise ValidationError("num_arms: needed with a group-level concentration and a transition list, got None")
        length = np.asarray(arms).shape[0] if np.asarray(arms).ndim == 1 else None
        bounds = {"arms": num_arms, "states": num_states, "actions": num_actions, "next_states": num_states}
        for name, value in listed.items():
            out[name] = _integer_labels(name, value, bounds[name], length)
    return out
