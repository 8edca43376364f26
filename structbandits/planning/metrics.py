"""Equity and planning metrics: the Gini index of group outcomes, Pareto fronts, capacity planning.

    Gini(m) = Σ_x Σ_y |m_x − m_y| / (2 G² mean(m))

over G group outcomes m_g (the paper's Gini of per-group average outcomes). For nonnegative m it
lies in [0, (G−1)/G] ⊂ [0, 1]; it is 0 when all groups are equal and defined as 0 when every m_g is 0.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from structbandits.errors import ValidationError, check_finite

__all__ = ["gini_index", "gini_index_jax", "pareto_front", "smallest_sufficient_budget"]


def gini_index_jax(values):
    """Gini index over the last axis (jittable; no validation)."""
    values = jnp.asarray(values)
    count = values.shape[-1]
    spread = jnp.abs(values[..., :, None] - values[..., None, :]).sum(axis=(-1, -2))
    mean = values.mean(axis=-1)
    return jnp.where(mean > 0, spread / (2.0 * count**2 * jnp.where(mean > 0, mean, 1.0)), 0.0)


def gini_index(values) -> np.ndarray | float:
    """Gini index of nonnegative group outcomes along the last axis.

    Parameters
    ----------
    values : (..., G) nonnegative outcomes (e.g. per-arm total reward averaged within each group).

    Returns
    -------
    (...) Gini indices in [0, 1] (a float for a 1-D input).
    """
    arr = check_finite("values", values)
    if arr.ndim == 0 or arr.shape[-1] == 0:
        raise ValidationError(f"values: expected at least one group along the last axis, got shape {arr.shape}")
    if np.any(arr < 0):
        raise ValidationError(f"values: expected nonnegative outcomes, got a minimum of {arr.min()}")
    result = np.asarray(gini_index_jax(arr))
    return float(result) if result.ndim == 0 else result


def pareto_front(points) -> np.ndarray:
    """(n,) bool mask of the points (n, d) not dominated by another (larger is better in every column)."""
    pts = check_finite("points", points)
    if pts.ndim != 2:
        raise ValidationError(f"points: expected shape (n, d), got shape {pts.shape}")
    geq = np.all(pts[None, :, :] >= pts[:, None, :], axis=-1)  # geq[i, j]: j at least as good as i
    gt = np.any(pts[None, :, :] > pts[:, None, :], axis=-1)
    return ~np.any(geq & gt, axis=1)


def smallest_sufficient_budget(budgets, outcomes, target: float) -> int | None:
    """Capacity planning: the smallest budget whose outcome reaches ``target``.

    Parameters
    ----------
    budgets : (n,) budgets of a sweep (any order).
    outcomes : (n,) the outcome at each budget (e.g. the mean fraction of arms ending in a healthy
        state), assumed to grow with the budget.
    target : the desired outcome.

    Returns
    -------
    The smallest budget b with outcome(b) >= target, or None when no budget of the sweep reaches it.
    """
    b = check_finite("budgets", budgets)
    out = check_finite("outcomes", outcomes)
    if b.ndim != 1 or out.shape != b.shape:
        raise ValidationError(f"outcomes: expected the shape of budgets {b.shape}, got {out.shape}")
    target = float(check_finite("target", target))
    enough = b[out >= target]
    return int(enough.min()) if enough.size else None
