"""Forgetting for the conjugate posteriors, once for all: Gaussian information form, NIG, Dirichlet.

A drifting truth makes an old observation worth less than a new one. Every rule here reweights the
*data* part of a posterior and never touches the prior, so uncertainty never collapses below the
prior's and a rate γ = 1 (or a window longer than the run) leaves the posterior unchanged, bit for
bit (the functions return their input where nothing is forgotten). Each rule is applied before the
round's new observation is added.

**Exponential forgetting toward the prior** (each round, every posterior of the agent):

    Λ ← γΛ + (1 − γ)Λ₀,   h ← γh + (1 − γ)h₀          (Gaussian, precision Λ, information h)

i.e. the data part Λ − Λ₀ = Σ_s x_s x_sᵀ/σ² is multiplied by γ, so after t rounds an observation of
round s carries the weight γ^(t−s): the posterior is the weighted batch posterior. This is the
"stabilized forgetting" of Kulhavý & Zarrop (1993, "On a general concept of forgetting", Int. J.
Control 58(4)), the geometric mixture p^γ p₀^(1−γ) of the posterior with the prior; the bayesianbandits
package ships the same rule for an isotropic prior (``StabilizedForgetting``: R ← λR + (1 − λ)αI).
The NIG version decays every natural statistic the same way: κ (or Λ), the information, α and the
quadratic statistic 2β + mᵀΛm; β itself then has a closed form without cancellation (``nig_forget``).
Dirichlet concentrations: α ← α₀ + γ(α − α₀).

**Stabilised (directional) forgetting** (once per observation, only the posterior it updates): decay
only along the direction the new regressor x excites. This is the directional forgetting of Kulhavý
(1987, "Restricted exponential forgetting in real-time identification", Automatica 23(5)) in the
information-matrix form of Cao & Schwartz (2000, Automatica 36(11)), the rank-one case of the SIFt-RLS
rule that bayesianbandits ships (``SiftForgetting``, Lai & Bernstein 2024):

    D̄ = D − (1 − γ) D x xᵀ D / (xᵀ D x),   applied to the DATA part D = Λ − Λ₀ only,

with the information's data part d = h − h₀ treated alike (d̄ = d − (1 − γ) D x (xᵀd) / (xᵀDx)).
Applying the rule to D instead of Λ is what stabilises it: the prior is never forgotten, so

    Λ̄ − Λ₀ = D̄ ≥ γ D ≥ 0,

because D − Dx xᵀD/(xᵀDx) ≥ 0 for D ≥ 0 (Cauchy–Schwarz: (vᵀDx)² ≤ (vᵀDv)(xᵀDx)). Directions
that no data excited (D x = 0), and posteriors that receive no observation, are left alone.
Written with v = Dx/√(xᵀDx) and r = xᵀd/√(xᵀDx), the step removes the pseudo-observation (v, r)
with weight 1 − γ: with D = Xᵀ W X (W the current weights of past rounds), it is the data reweighted by
W^½ (I − (1 − γ) ûûᵀ) W^½ with û ∝ W^½ X x. So the NIG version is the same removal, with α
reduced by (1 − γ)/2 and β by that pseudo-observation's residual term; scalar NIG arms are the
case x = 1 (where D x xᵀD/(xᵀDx) = D); a Dirichlet row decays only where a transition was observed.

**Sliding window of w rounds**: the agent keeps the last w observations in a ring buffer
(``window_push``), and removes the one leaving the window (``gaussian_remove``, ``nig_remove``,
``regression_nig_remove_block``: the exact reverse of the conjugate update) before adding the new one,
so its posterior is the batch posterior on the last w rounds.

All functions are jittable and take γ as data (a traced scalar): one compiled program serves every γ.
Gaussian functions act on one Gaussian ((d, d), (d,)); ``jax.vmap`` them for stacks. Every refactorised
precision costs one O(d³) Cholesky.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax.scipy.linalg import cho_solve

from structbandits.errors import ValidationError, check_finite, check_integer
from structbandits.inference.conjugate import GaussianInfo, gaussian_mean, linear_regression_observe
from structbandits.inference.nig import NIG, RegressionNIG, regression_observe
from structbandits.inference.ring_buffer import RingBuffer, ring_append, ring_evicted, ring_init

__all__ = [
    "FORGETTING",
    "check_forgetting",
    "data_direction",
    "dirichlet_forget",
    "gaussian_forget",
    "gaussian_forget_directional",
    "gaussian_forget_observe",
    "gaussian_remove",
    "nig_forget",
    "nig_forget_directional",
    "nig_remove",
    "regression_nig_forget",
    "regression_nig_forget_directional_block",
    "regression_nig_remove_block",
    "window_init",
    "window_push",
]

FORGETTING = ("exponential", "stabilised", "window")

# A direction whose data information xᵀDx is below this share of xᵀΛx received no data: D = Λ − Λ₀ of
# Cholesky factors is known only up to rounding, and nothing is forgotten along such an x.
_DIRECTION_TOL = 1e-9


def check_forgetting(forgetting: str | None, forgetting_rate: float, window: int | None, *,
                     rate_name: str = "forgetting_rate", kind_name: str = "forgetting",
                     window_name: str = "window") -> tuple[str | None, float, int | None]:
    """Validate an agent's forgetting options at its public boundary; returns (kind, γ, w).

    ``forgetting`` None (off), "exponential", "stabilised" or "window"; ``forgetting_rate`` γ in (0, 1],
    used by the first two (1 otherwise); ``window`` w >= 1, required by "window" and only by it. The
    ``*_name`` arguments are the agent's own option names, used in the messages.
    """
    if forgetting is not None and forgetting not in FORGETTING:
        raise ValidationError(f"{kind_name}: expected None or one of {', '.join(map(repr, FORGETTING))}, "
                              f"got {forgetting!r}")
    rate = float(check_finite(rate_name, forgetting_rate))
    if not 0.0 < rate <= 1.0:
        raise ValidationError(f"{rate_name}: expected a forgetting rate γ in (0, 1], got {forgetting_rate!r}")
    if rate != 1.0 and forgetting not in ("exponential", "stabilised"):
        raise ValidationError(f"{rate_name}: only used with {kind_name}='exponential' or 'stabilised', got "
                              f"{rate_name}={forgetting_rate!r} with {kind_name}={forgetting!r}")
    if forgetting == "window":
        if window is None:
            raise ValidationError(f"{window_name}: expected the window length (an integer >= 1) with "
                                  f"{kind_name}='window', got None")
        window = check_integer(window_name, window, minimum=1)
    elif window is not None:
        raise ValidationError(f"{window_name}: only used with {kind_name}='window', got {window_name}={window!r} "
                              f"with {kind_name}={forgetting!r}")
    return forgetting, rate, window


def _keep_where(unchanged: jax.Array, old: Any, new: Any) -> Any:
    """``old`` (bit for bit) where ``unchanged``, else ``new``; leaf by leaf."""
    return jax.tree.map(lambda a, b: jnp.where(unchanged, a, b), old, new)


def _precision(g: GaussianInfo) -> jax.Array:
    return g.precision_chol @ jnp.swapaxes(g.precision_chol, -1, -2)


def _factor(precision: jax.Array) -> jax.Array:
    return jnp.linalg.cholesky(0.5 * (precision + jnp.swapaxes(precision, -1, -2)))


# --- Gaussian information form ---------------------------------------------------------------


def gaussian_forget(g: GaussianInfo, prior: GaussianInfo, rate: jax.Array) -> GaussianInfo:
    """Exponential forgetting toward ``prior``: Λ ← γΛ + (1 − γ)Λ₀, h ← γh + (1 − γ)h₀.

    ``g``, ``prior`` one Gaussian ((d, d), (d,)); ``rate`` γ () in (0, 1]. γ = 1 returns ``g``. O(d³).
    """
    precision = rate * _precision(g) + (1.0 - rate) * _precision(prior)
    decayed = GaussianInfo(_factor(precision), rate * g.info + (1.0 - rate) * prior.info)
    return _keep_where(rate == 1.0, g, decayed)


def gaussian_remove(g: GaussianInfo, x: jax.Array, y: jax.Array, noise_var: jax.Array,
                    weight: jax.Array = 1.0) -> GaussianInfo:
    """Remove the observation y = xᵀθ + N(0, noise_var) with ``weight`` w (1: one whole observation, as
    ``conjugate.linear_regression_observe`` added it): Λ − w x xᵀ/σ², h − w x y/σ². ``weight`` 0 returns
    ``g``. The reverse of the conjugate update, for a sliding window. O(d³) (refactorised, no downdate)."""
    precision = _precision(g) - weight * jnp.outer(x, x) / noise_var
    removed = GaussianInfo(_factor(precision), g.info - weight * x * (y / noise_var))
    return _keep_where(weight == 0.0, g, removed)


def data_direction(data_precision: jax.Array, data_info: jax.Array, x: jax.Array,
                   precision: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The pseudo-observation that directional forgetting along ``x`` removes (module docstring).

    ``data_precision`` D (d, d) and ``data_info`` d (d,) are the data parts Λ − Λ₀, h − h₀; ``precision``
    (d, d) is the whole Λ, the scale of rounding in D. Returns v = Dx/√(xᵀDx) (d,), r = xᵀd/√(xᵀDx) ()
    and ``excited`` (): whether the data excite x at all (xᵀDx > 1e-9 xᵀΛx; below that D x is rounding);
    where they do not, v and r are zeros.
    """
    dx = data_precision @ x
    q = x @ dx
    excited = q > _DIRECTION_TOL * (x @ (precision @ x))
    scale = jnp.where(excited, jax.lax.rsqrt(jnp.where(excited, q, 1.0)), 0.0)
    return dx * scale, (x @ data_info) * scale, excited


def gaussian_forget_directional(g: GaussianInfo, prior: GaussianInfo, x: jax.Array, rate: jax.Array) -> GaussianInfo:
    """Stabilised directional forgetting along the regressor ``x`` (d,) (module docstring): the data part
    D = Λ − Λ₀ loses the share 1 − γ of its information along x; Λ̄ − Λ₀ ≥ γ(Λ − Λ₀) ≥ 0. γ = 1, or no
    data along x, returns ``g``. O(d³)."""
    precision = _precision(g)
    v, r, excited = data_direction(precision - _precision(prior), g.info - prior.info, x, precision)
    return gaussian_remove(g, v, r, 1.0, jnp.where(excited, 1.0 - rate, 0.0))


def gaussian_forget_observe(forgetting: str, g: GaussianInfo, prior: GaussianInfo, x: jax.Array, y: jax.Array,
                            noise_var: jax.Array, rate: jax.Array | None = None,
                            buffer: RingBuffer | None = None) -> tuple[GaussianInfo, RingBuffer | None]:
    """One round of a single Gaussian regression posterior with forgetting: forget ("exponential" or
    "stabilised" at ``rate`` γ, or "window": remove the observation leaving ``buffer``, whose rows are
    {"x": (d,), "y": ()}), then condition on y = xᵀθ + N(0, noise_var). Returns the posterior and the
    buffer (None without a window). O(d³)."""
    if forgetting == "exponential":
        g = gaussian_forget(g, prior, rate)
    elif forgetting == "stabilised":
        g = gaussian_forget_directional(g, prior, x, rate)
    else:
        buffer, leaving, weight = window_push(buffer, {"x": x, "y": y}, g.info.dtype)
        g = gaussian_remove(g, leaving["x"], leaving["y"], noise_var, weight)
    return linear_regression_observe(g, x, y, noise_var), buffer


# --- Normal-Inverse-Gamma: scalar arms (the d = 1 case, elementwise) -------------------------------


def nig_forget(p: NIG, prior: NIG, rate: jax.Array) -> NIG:
    """Exponential forgetting of scalar NIG arms toward ``prior`` (fields broadcast elementwise).

    κ, κm, α and 2β + κm² decay toward the prior's as κ ← κ₀ + γ(κ − κ₀) etc., which gives
    β' = (1 − γ)β₀ + γβ + (1 − γ)γ κ₀κ (m − m₀)² / (2κ') (the pooled form; no cancellation).
    γ = 1 returns ``p``.
    """
    kappa = prior.kappa + rate * (p.kappa - prior.kappa)
    info = prior.kappa * prior.mean + rate * (p.kappa * p.mean - prior.kappa * prior.mean)
    beta = ((1.0 - rate) * prior.beta + rate * p.beta
            + 0.5 * (1.0 - rate) * rate * prior.kappa * p.kappa * (p.mean - prior.mean) ** 2 / kappa)
    decayed = NIG(info / kappa, kappa, prior.alpha + rate * (p.alpha - prior.alpha), beta)
    return _keep_where(rate == 1.0, p, decayed)


def _nig_remove_weighted(p: NIG, x: jax.Array, y: jax.Array, weight: jax.Array) -> NIG:
    """Remove the observation y = xμ + N(0, σ²/w) (the scalar regression form): κ − w x², κm − w x y,
    α − w/2 and β − ½ w κ̄ (y − x m̄)² / (κ̄ + w x²) with the removed κ̄, m̄."""
    kappa = p.kappa - weight * x * x
    mean = (p.kappa * p.mean - weight * x * y) / kappa
    beta = p.beta - 0.5 * weight * kappa * (y - x * mean) ** 2 / (kappa + weight * x * x)
    return _keep_where(weight == 0.0, p, NIG(mean, kappa, p.alpha - 0.5 * weight, beta))


def nig_remove(p: NIG, y: jax.Array, weight: jax.Array = 1.0) -> NIG:
    """Remove one observation ``y`` (weight 1, or 0 for none) that ``nig.nig_observe`` added: the exact
    reverse of the conjugate update, for a sliding window. Elementwise."""
    return _nig_remove_weighted(p, jnp.ones_like(p.mean), y, weight)


def nig_forget_directional(p: NIG, prior: NIG, rate: jax.Array) -> NIG:
    """Stabilised forgetting of the scalar NIG arms about to be observed (x = 1): removes the
    pseudo-observation (v, r) = (√(κ − κ₀), (κm − κ₀m₀)/√(κ − κ₀)) with weight 1 − γ, so κ − κ₀ and
    κm − κ₀m₀ decay by γ, α by (1 − γ)/2 and β by that pseudo-observation's residual term (the scatter
    of the arm's rewards about their mean is kept). Arms without data, and γ = 1, are returned as they are."""
    data_kappa = p.kappa - prior.kappa
    excited = data_kappa > _DIRECTION_TOL * p.kappa
    root = jnp.sqrt(jnp.where(excited, data_kappa, 1.0))
    v = jnp.where(excited, root, 0.0)
    r = jnp.where(excited, (p.kappa * p.mean - prior.kappa * prior.mean) / root, 0.0)
    return _nig_remove_weighted(p, v, r, jnp.where(excited, 1.0 - rate, 0.0))


# --- Normal-Inverse-Gamma regression (LinTS-NIG): stacks of K blocks ---------------------------------


def _flat_blocks(p: RegressionNIG) -> tuple[GaussianInfo, tuple[int, ...]]:
    batch, d = p.info.shape[:-1], p.info.shape[-1]
    return GaussianInfo(p.precision_chol.reshape(-1, d, d), p.info.reshape(-1, d)), batch


def regression_nig_forget(p: RegressionNIG, prior: RegressionNIG, rate: jax.Array) -> RegressionNIG:
    """Exponential forgetting of every block toward ``prior`` (same shapes as ``p``: blocks B + (d, d),
    B + (d,); α, β per block (B) or shared (())): Λ, η, α and 2β + mᵀΛm decay by γ toward the prior's, so

        β' = (1 − γ)β₀ + γβ + ½ (m − m₀)ᵀ (1 − γ)Λ₀ Λ'⁻¹ γΛ (m − m₀)

    per block (summed over the blocks for a shared σ²). γ = 1 returns ``p``. O(|B| d³).
    """
    blocks, batch = _flat_blocks(p)
    priors, _ = _flat_blocks(prior)

    def one(g: GaussianInfo, g0: GaussianInfo):
        decayed = gaussian_forget(g, g0, rate)
        shift = gaussian_mean(g) - gaussian_mean(g0)
        toward_prior = (1.0 - rate) * (g0.precision_chol @ (g0.precision_chol.T @ shift))
        toward_data = rate * (g.precision_chol @ (g.precision_chol.T @ shift))
        return decayed, toward_prior @ cho_solve((decayed.precision_chol, True), toward_data)

    decayed, terms = jax.vmap(one)(blocks, priors)
    terms = jnp.sum(terms) if jnp.ndim(p.alpha) == 0 else terms.reshape(batch)
    new = RegressionNIG(decayed.precision_chol.reshape(p.precision_chol.shape), decayed.info.reshape(p.info.shape),
                        prior.alpha + rate * (p.alpha - prior.alpha),
                        (1.0 - rate) * prior.beta + rate * p.beta + 0.5 * terms)
    return _keep_where(rate == 1.0, p, new)


def regression_nig_remove_block(p: RegressionNIG, block: jax.Array, x: jax.Array, y: jax.Array,
                                weight: jax.Array = 1.0) -> RegressionNIG:
    """A stack of K blocks (as ``nig.regression_nig_observe_block``) after removing the observation
    (``x`` (d,), ``y`` ()) of block ``block`` with ``weight`` w (1: one whole observation; 0: nothing):
    Λ − w x xᵀ, η − w x y, α − w/2, β − ½ w (y − xᵀm̄)²/(1 + w xᵀΛ̄⁻¹x) with the removed block's m̄, Λ̄,
    the exact reverse of the conjugate update. O(d³)."""
    g = GaussianInfo(p.precision_chol[block], p.info[block])
    removed = gaussian_remove(g, x, y, 1.0, weight)
    root = jnp.sqrt(weight)
    _, increment = regression_observe(removed, root * x, root * y)  # the weighted residual term of (x, y)
    chol, info = p.precision_chol.at[block].set(removed.precision_chol), p.info.at[block].set(removed.info)
    if jnp.ndim(p.alpha) == 0:
        new = RegressionNIG(chol, info, p.alpha - 0.5 * weight, p.beta - increment)
    else:
        new = RegressionNIG(chol, info, p.alpha.at[block].add(-0.5 * weight), p.beta.at[block].add(-increment))
    return _keep_where(weight == 0.0, p, new)


def regression_nig_forget_directional_block(p: RegressionNIG, prior: RegressionNIG, block: jax.Array,
                                            x: jax.Array, rate: jax.Array) -> RegressionNIG:
    """Stabilised directional forgetting of block ``block`` along ``x`` (d,) (module docstring): the
    pseudo-observation (v, r) of the block's data part is removed with weight 1 − γ (its Λ, η, and its
    own or the shared α, β). γ = 1, or no data along x, returns ``p``. O(d³)."""
    g, g0 = (GaussianInfo(q.precision_chol[block], q.info[block]) for q in (p, prior))
    precision = _precision(g)
    v, r, excited = data_direction(precision - _precision(g0), g.info - g0.info, x, precision)
    return regression_nig_remove_block(p, block, v, r, jnp.where(excited, 1.0 - rate, 0.0))


# --- Dirichlet counts --------------------------------------------------------------------------


def dirichlet_forget(concentration: jax.Array, prior: jax.Array, rate: jax.Array,
                     rows: jax.Array | None = None) -> jax.Array:
    """α ← α₀ + γ(α − α₀) on every row (exponential forgetting) or, with ``rows`` (a boolean mask
    broadcasting against ``concentration``, e.g. (N, S, A, 1)), on the rows that receive a transition
    this round only (stabilised: the other rows received no data). Pass ``prior`` 0 to decay counts
    alone (a posterior of prior + counts). γ = 1 returns ``concentration``."""
    decayed = prior + rate * (concentration - prior)
    if rows is not None:
        decayed = jnp.where(rows, decayed, concentration)
    return jnp.where(rate == 1.0, concentration, decayed)


# --- The sliding window's buffer -------------------------------------------------------------------


def window_init(example_row: Any, window: int) -> RingBuffer:
    """An empty buffer for the last ``window`` observations, rows shaped like ``example_row`` (a pytree)."""
    return ring_init(example_row, window)


def window_push(buffer: RingBuffer, row: Any, dtype=None) -> tuple[RingBuffer, Any, jax.Array]:
    """Append ``row``; returns the buffer, the row that leaves the window (the oldest, which the new one
    overwrites) and its weight () of ``dtype`` (None: JAX's default float): 1 when the buffer was full,
    0 while it is filling (the returned row is then zeros). Remove the leaving row from the posterior
    with that weight, then add ``row``."""
    leaving, full = ring_evicted(buffer)
    weight = jnp.asarray(full, dtype=dtype if dtype is not None else jnp.result_type(float))
    return ring_append(buffer, row), leaving, weight
