"""Mixed-effect Thompson sampling (meTS) and HierTS on the program ``models.mixed_effect_linear``.

Each round meTS samples hierarchically: Ψ̃ ~ Q_t (the effect posterior), then θ̃_i ~ N(μ̃_i, Σ̃_i)
given Ψ̃ for every arm, and plays argmax_i x_iᵀθ̃_i. The state keeps per-arm sufficient statistics,
the Cholesky factor of every arm's conditional precision C_i = Σ0_i⁻¹ + G_i (and its inverse, for
sampling), and the effect precision and information as sums of per-arm terms, so an update touches only
the pulled arm:

    C_a: rank-one Cholesky update                      O(d²)
    (P_a, u_a) before and after, from C_a's factors    O(d³) (triangular solves, no refactorisation)
    effect precision += (b_a b_aᵀ) ⊗ (P_a' − P_a)      O(L² d²)   (factored: per block, O(L d²))

The arm's old evidence (P_a, u_a) is recomputed from its stored G_a, B_a and factor rather than kept per
arm: a (K, d, d) array written at one arm inside ``lax.scan`` whose old slice is read but whose new value
does not depend on it was copied whole by XLA every round (twice), which at K = 10,000 cost more than the
O(d³) recomputation. Old and new evidence go through one batched call, so the recomputed old terms equal
the ones the previous update added, bit for bit.

and an action costs one Cholesky of the effect precision, O((L d)³) (factored: O(L d³)), plus
O(K d²) for the arms. Contexts are (d,) shared by all arms or (K, d), one per arm.

Forgetting (``mets(..., forgetting=...)``, off by default: then exactly the stationary agent) acts on
the per-arm statistics G_i = Σ x xᵀ/σ², B_i = Σ x y/σ², which are the data parts of the arms'
information-form posteriors (θ_i | Ψ has precision Σ0_i⁻¹ + G_i), so ``inference.forgetting``'s algebra
applies to them as to any Gaussian: "exponential" multiplies them by γ each round, "stabilised" removes
the share 1 − γ of the pulled arm's information along the pulled context, "window" removes the round
leaving the last w. The two levels forget separately: the effects Ψ change slowly and the arms fast, so
the state keeps the statistics twice, decayed at ``effect_forgetting_rate`` (they give the evidence
P_i, u_i of each arm about Ψ, hence the effect posterior Q_t) and at ``forgetting_rate`` (they give each
arm's conditional θ_i | Ψ, C_i and B_i). With both rates equal this is the exact posterior of the
mixed-effect model with every observation weighted γ^(t−s). A round with forgetting recomputes every
arm's factors, O(K d³ + K L² d²).
"""

from __future__ import annotations

import jax
import numpy as np

from structbandits.agents.mets_core import (
    METS_SAMPLING,
    METSCore,
    METSParams,
    METSState,
    _observe,
    _thompson_action,
    check_effect_prior,
    mets_core,
    mets_params,
    validate_mixed_effect_prior,
)
from structbandits.agents.mets_forgetting import METSForgettingParams, METSForgettingState, _forgetting_mets
from structbandits.agents.protocol import ActInfo, Policy
from structbandits.agents.thompson import arm_features
from structbandits.errors import ValidationError, check_integer, check_positive
from structbandits.inference.forgetting import check_forgetting

__all__ = ["METS_SAMPLING", "METSCore", "METSForgettingParams", "METSForgettingState", "METSParams", "METSState",
           "average_effect_prior",
           "check_effect_prior", "hier_ts", "mets", "mets_core", "mets_params", "validate_mixed_effect_prior"]


def mets(mixing, effect_mean, effect_cov, action_cov, noise_scale: float, *, factored: bool = False,
         forgetting: str | None = None, forgetting_rate: float = 1.0, effect_forgetting_rate: float = 1.0,
         window: int | None = None, sampling: str = "arms") -> Policy:
    """meTS for linear-Gaussian rewards.

    Parameters
    ----------
    mixing : (K, L) mixing weights b (any sign), known to the agent.
    effect_mean : (L, d) prior means μ_Ψ of the effects.
    effect_cov : (L·d, L·d) prior covariance Σ_Ψ of vec Ψ (ψ_1 first).
    action_cov : (d, d) shared or (K, d, d) per-arm Σ0_i.
    noise_scale : known reward noise σ > 0.
    factored : use the factored effect posterior (block-diagonal per effect: only the diagonal
        (d, d) blocks of Σ_Ψ are used, and each block is updated and sampled on its own).
    forgetting : None (default: the stationary posterior), "exponential" (every arm's statistics decay
        by γ each round), "stabilised" (the pulled arm's, along the pulled context only) or "window"
        (the last ``window`` rounds); see the module docstring. State ``METSForgettingState``.
    forgetting_rate : γ in (0, 1] of the arms' θ_i (fast), for "exponential" and "stabilised".
    effect_forgetting_rate : γ_Ψ in (0, 1] of the effects Ψ (slow: typically closer to 1), likewise.
        Both rates are data (``METSForgettingParams``): a sweep over them runs one program.
    window : w >= 1 rounds, with ``forgetting="window"`` only (both levels; a buffer shape: structural).
    sampling : "arms" (default): each round draws θ̃_i (d normals per arm) and scores x_iᵀθ̃_i, the paper's
        sampler, K·d normals a round. "scores": draws each arm's score x_iᵀθ̃_i given Ψ̃ directly, N(x_iᵀμ̃_i,
        x_iᵀΣ̃_i x_i), with one normal per arm (``conjugate.stacked_gaussian_score_draws``): the same law of
        the action, K normals a round (at K = 10,000, d = 5 the normals are most of a round's cost), but
        other draws, so runs differ from "arms" runs seed by seed (not in distribution). ``posterior_draws``
        is the same under both.
    """
    if sampling not in METS_SAMPLING:
        raise ValidationError(f"sampling: expected one of {list(METS_SAMPLING)}, got {sampling!r}")
    mixing, effect_mean, effect_cov, action_cov = validate_mixed_effect_prior(mixing, effect_mean, effect_cov, action_cov)
    noise_var = float(check_positive("noise_scale", noise_scale)) ** 2
    forgetting, rate, window = check_forgetting(forgetting, forgetting_rate, window)
    _, effect_rate, _ = check_forgetting(forgetting, effect_forgetting_rate, window, rate_name="effect_forgetting_rate")
    core = mets_core(mixing, effect_mean, effect_cov, action_cov, factored, noise_var)
    if forgetting is not None:
        return _forgetting_mets(core, forgetting, rate, effect_rate, window, sampling)

    def init(key: jax.Array, params: METSParams | None = None) -> METSState:
        return core.init(core.params if params is None else params)

    def act(state: METSState, key: jax.Array, context: jax.Array) -> tuple[jax.Array, ActInfo]:
        return _thompson_action(core, sampling, state, key, context)

    def update(state: METSState, context: jax.Array, action: jax.Array, reward: jax.Array) -> METSState:
        return _observe(core, state, arm_features(context, action), action, reward)

    return Policy(init, act, update, core.posterior_draws, core.params)



def average_effect_prior(effect_mean: np.ndarray, effect_cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """HierTS's single hyper-parameter prior: the law of (1/L) Σ_l ψ_l, as (1, d) mean and (d, d) cov."""
    num_effects, d = effect_mean.shape
    average_cov = effect_cov.reshape(num_effects, d, num_effects, d).sum(axis=(0, 2)) / num_effects**2
    return effect_mean.mean(axis=0, keepdims=True), average_cov


def hier_ts(effect_mean, effect_cov, action_cov, noise_scale: float, *, num_actions: int, **forgetting) -> Policy:
    """HierTS (Hong et al., 2022) as the meTS baseline: one shared hyper-parameter μ ∈ R^d.

    The arms' mixing weights are ignored: θ_i | μ ~ N(μ, Σ0_i), with μ's prior the distribution of
    the average effect (1/L) Σ_l ψ_l, i.e. mean (1/L) Σ_l μ_l and covariance (1/L²) Σ_{l,m} Σ_Ψ[l, m].
    This is meTS with a single effect and all weights equal to one. ``forgetting`` takes ``mets``'
    forgetting options (``forgetting``, ``forgetting_rate``, ``effect_forgetting_rate``, ``window``) and its
    ``sampling``.
    """
    num_actions = check_integer("num_actions", num_actions, minimum=2)
    options = {"forgetting", "forgetting_rate", "effect_forgetting_rate", "window", "sampling"}
    if set(forgetting) - options:
        raise ValidationError(f"{sorted(set(forgetting) - options)[0]}: unknown option of hier_ts; expected "
                              f"num_actions or one of {sorted(options)}")
    return mets(np.ones((num_actions, 1)), *average_effect_prior(*check_effect_prior(effect_mean, effect_cov)),
                action_cov, noise_scale, **forgetting)
