"""GAMBITTS building blocks shared by the linear and ensemble agents (moved from ``agents.gambitts``,
which re-exports them): the working-column check ``check_feature_index``, the reference prior on β
``reward_prior``, the Normal-Inverse-Wishart treatment prior of one cell (``niw_cell_prior``) or of
every (cell, prompt) (``niw_cells_prior``), and joint draws of the NIW treatment posteriors
(``niw_cell_draws``, for ``Policy.posterior_draws``).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from structbandits.errors import ValidationError, check_finite, check_integer, check_positive, check_positive_definite
from structbandits.inference.conjugate import GaussianInfo
from structbandits.inference.niw import NIW, niw_prior, niw_sample

__all__ = ["check_feature_index", "niw_cell_draws", "niw_cell_prior", "niw_cells_prior", "reward_prior"]


def check_feature_index(feature_index: Sequence[int], num_styles: int | None = None) -> tuple[int, ...]:
    """Validate the agent's working-embedding columns: distinct integers in [0, num_styles)."""
    try:
        index = tuple(check_integer("feature_index", i, minimum=0) for i in feature_index)
    except TypeError:
        raise ValidationError(f"feature_index: expected a sequence of column indices, got {feature_index!r}") from None
    if not index or len(set(index)) != len(index):
        raise ValidationError(f"feature_index: expected distinct column indices, at least one, got {index}")
    if num_styles is not None and max(index) >= num_styles:
        raise ValidationError(f"feature_index: expected indices below the {num_styles} treatment columns, got {index}")
    return index


def reward_prior(num_styles: int, *, intercept_mean: float = 77.0, intercept_precision: float = 0.01,
                 coef_mean: float = 0.0, coef_precision: float = 1.0) -> GaussianInfo:
    """The reference prior on β for φ(z) = [1, z] (intercept first): independent Gaussians.

    Defaults: intercept N(77, 1/0.01), coefficients N(0, 1).
    """
    check_positive("intercept_precision", intercept_precision)
    check_positive("coef_precision", coef_precision)
    check_finite("intercept_mean", intercept_mean)
    check_finite("coef_mean", coef_mean)
    precision = jnp.concatenate([jnp.full(1, intercept_precision), jnp.full(num_styles, coef_precision)])
    mean = jnp.concatenate([jnp.full(1, intercept_mean), jnp.full(num_styles, coef_mean)])
    return GaussianInfo(jnp.diag(jnp.sqrt(precision)), precision * mean)


def niw_cell_prior(num_styles: int, *, mean0=None, kappa0: float = 1.0, psi0=None, nu0: float | None = None) -> NIW:
    """The validated NIW(m0, κ0, Ψ0, ν0) of one treatment cell, fields (d,) ... (Ψ0 as its Cholesky
    factor). Defaults: m0 = 0, κ0 = 1, Ψ0 = I, ν0 = d."""
    mean0 = np.zeros(num_styles) if mean0 is None else check_finite("niw_mean", mean0)
    psi0 = np.eye(num_styles) if psi0 is None else check_positive_definite("niw_psi", psi0)
    nu0 = float(num_styles) if nu0 is None else float(check_finite("niw_nu", nu0))
    check_positive("niw_kappa", kappa0)
    if mean0.shape != (num_styles,) or psi0.shape != (num_styles, num_styles):
        raise ValidationError(f"niw_mean / niw_psi: expected shapes ({num_styles},) and ({num_styles}, {num_styles}), "
                              f"got {mean0.shape} and {psi0.shape}")
    if nu0 <= num_styles - 1:
        raise ValidationError(f"niw_nu: expected degrees of freedom > d - 1 = {num_styles - 1}, got {nu0}")
    return niw_prior(jnp.asarray(mean0), kappa0, jnp.asarray(psi0), nu0)


def _replicate_cells(one: NIW, num_cells: int, num_actions: int) -> NIW:
    return jax.tree.map(lambda leaf: jnp.broadcast_to(leaf, (num_cells, num_actions) + leaf.shape), one)


def niw_cells_prior(num_cells: int, num_actions: int, num_styles: int, *, mean0=None, kappa0: float = 1.0,
                    psi0=None, nu0: float | None = None) -> NIW:
    """NIW(m0, κ0, Ψ0, ν0) replicated over (C, K) treatment cells. Defaults: m0 = 0, κ0 = 1, Ψ0 = I, ν0 = d."""
    one = niw_cell_prior(num_styles, mean0=mean0, kappa0=kappa0, psi0=psi0, nu0=nu0)
    return _replicate_cells(one, num_cells, num_actions)


def niw_cell_draws(treatment: NIW, key: jax.Array, num_draws: int) -> dict[str, jax.Array]:
    """Joint draws of every (cell, prompt) treatment distribution from its NIW posterior.

    ``treatment`` has fields (C, K, ...). Returns ``mu`` (num_draws, C, K, d) and ``Sigma``
    (num_draws, C, K, d, d), the ``mean`` / ``cov`` sites of ``models.mediated.treatment_stage``
    per (context cell, prompt), for diagnostics (``Policy.posterior_draws``).
    """
    num_cells, num_actions = treatment.mean.shape[:2]
    flat = jax.tree.map(lambda leaf: leaf.reshape((num_cells * num_actions,) + leaf.shape[2:]), treatment)
    mean, root = jax.vmap(niw_sample, (0, 0, None))(flat, jax.random.split(key, num_cells * num_actions), (num_draws,))
    cov = root @ jnp.swapaxes(root, -1, -2)
    d = treatment.mean.shape[-1]
    return {"mu": jnp.moveaxis(mean, 1, 0).reshape(num_draws, num_cells, num_actions, d),
            "Sigma": jnp.moveaxis(cov, 1, 0).reshape(num_draws, num_cells, num_actions, d, d)}
