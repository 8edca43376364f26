"""The meTS posterior shared by the agents of ``agents.mets``, ``agents.mets_forgetting`` and ``agents.glm``.

The prior as data (``METSParams``) and the state (``METSState``), the checks of a mixed-effect prior at a
public boundary, ``mets_core`` (the posterior machinery: hierarchical draws, the per-arm update of the effect
posterior, the rebuild from every arm's statistics), and the Thompson action and stationary update of the
linear agents. The algebra and its costs are described in ``agents.mets``' module docstring.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from structbandits.agents.protocol import ActInfo, no_propensity
from structbandits.agents.thompson import arm_draws, arm_scores
from structbandits.errors import ValidationError, check_finite, check_positive_definite
from structbandits.inference.conjugate import (
    GaussianInfo,
    cholesky_rank_one_update,
    effect_evidence,
    effect_evidence_from_conditional,
    gaussian_from_moments,
    gaussian_sample,
    stacked_gaussian_draws,
    stacked_gaussian_score_draws,
    triangular_inverse,
)

__all__ = ["METS_SAMPLING", "METSCore", "METSParams", "METSState", "check_effect_prior", "mets_core", "mets_params",
           "validate_mixed_effect_prior"]


class METSParams(NamedTuple):
    """The meTS prior as data. K arms, L effects, d features.

    Attributes
    ----------
    mixing : (K, L) mixing weights b.
    action_precision_chol : (K, d, d) Cholesky factor of Σ0_i⁻¹.
    action_precision : (K, d, d) Σ0_i⁻¹.
    effect_precision : (L d, L d) prior precision of vec Ψ, or (L, d, d) blocks when factored.
    effect_info : (L d,) or (L, d) prior information Σ_Ψ⁻¹ μ_Ψ.
    noise_var : scalar σ² (linear rewards; 1 and unused for logistic rewards).
    """

    mixing: jax.Array
    action_precision_chol: jax.Array
    action_precision: jax.Array
    effect_precision: jax.Array
    effect_info: jax.Array
    noise_var: jax.Array


class METSState(NamedTuple):
    """meTS state. K arms, L effects, d features.

    Attributes
    ----------
    gram, moment : (K, d, d), (K, d) per-arm G_i = Σ xxᵀ/σ², B_i = Σ xy/σ².
    conditional_chol : (K, d, d) Cholesky factor L_i of C_i = Σ0_i⁻¹ + G_i.
    conditional_chol_inv : (K, d, d) L_i⁻¹, refreshed for the pulled arm only (O(d³)), so that
        sampling every arm is two batched mat-vecs instead of 2K triangular solves.
    effect_precision : (L d, L d) dense, or (L, d, d) blocks when factored.
    effect_info : (L d,) or (L, d).
    params : METSParams, the prior the posterior started from.
    """

    gram: jax.Array
    moment: jax.Array
    conditional_chol: jax.Array
    conditional_chol_inv: jax.Array
    effect_precision: jax.Array
    effect_info: jax.Array
    params: METSParams


def check_effect_prior(effect_mean, effect_cov) -> tuple[np.ndarray, np.ndarray]:
    effect_mean = check_finite("effect_mean", effect_mean)
    if effect_mean.ndim != 2:
        raise ValidationError(f"effect_mean: expected shape (L, d), got {effect_mean.shape}")
    size = effect_mean.size
    effect_cov = check_positive_definite("effect_cov", effect_cov)
    if effect_cov.shape != (size, size):
        raise ValidationError(f"effect_cov: expected shape ({size}, {size}) = (L·d, L·d), got {effect_cov.shape}")
    return effect_mean, effect_cov


def validate_mixed_effect_prior(mixing, effect_mean, effect_cov, action_cov):
    """Check the mixed-effect prior at a public boundary; returns NumPy arrays with Σ0 as (K, d, d)."""
    mixing = check_finite("mixing", mixing)
    effect_mean, effect_cov = check_effect_prior(effect_mean, effect_cov)
    if mixing.ndim != 2 or mixing.shape[1] != effect_mean.shape[0]:
        raise ValidationError(f"mixing: expected shape (K, L) with L = {effect_mean.shape[0]} effects, got {mixing.shape}")
    k, d = mixing.shape[0], effect_mean.shape[1]
    action_cov = check_positive_definite("action_cov", action_cov)
    if action_cov.shape not in ((d, d), (k, d, d)):
        raise ValidationError(f"action_cov: expected shape ({d}, {d}) or ({k}, {d}, {d}), got {action_cov.shape}")
    return mixing, effect_mean, effect_cov, np.broadcast_to(action_cov, (k, d, d)).copy()


class METSCore(NamedTuple):
    """The meTS posterior machinery shared by the linear and GLM agents (built by ``mets_core``).

    params : METSParams, the validated prior (the defaults of ``init``).
    init : (params) -> METSState with no data.
    sample_actions : (state, key) -> θ̃ (K, d), one hierarchical draw Ψ̃ ~ Q_t, θ̃_i ~ N(μ̃_i, Σ̃_i).
    sample_scores : (state, key, context) -> (K,) the scores x_iᵀθ̃_i of one hierarchical draw, drawn
        directly given Ψ̃ (one normal per arm instead of d; ``conjugate.stacked_gaussian_score_draws``).
    posterior_draws : (state, key, n) -> {"psi": (n, L, d), "theta": (n, K, d)}.
    set_arm : (state, arm, gram, moment, conditional_chol) -> state with arm's statistics replaced
        and the effect posterior refreshed by the change in its evidence.
    rebuild : (state, gram, moment, effect_gram, effect_moment) -> state recomputed from scratch from
        every arm's statistics: (gram, moment) give the conditionals θ_i | Ψ, (effect_gram,
        effect_moment) the evidence about Ψ (the two differ under forgetting). O(K d³ + K L² d²).
    """

    params: METSParams
    init: Callable[[METSParams], METSState]
    sample_actions: Callable[[METSState, jax.Array], jax.Array]
    posterior_draws: Callable[[METSState, jax.Array, int], dict[str, jax.Array]]
    set_arm: Callable[..., METSState]
    rebuild: Callable[..., METSState]
    sample_scores: Callable[[METSState, jax.Array, jax.Array], jax.Array]


METS_SAMPLING = ("arms", "scores")


def _arm_normals(key: jax.Array, num_arms: int, d: int, dtype) -> jax.Array:
    """The (K, d) standard normals of ``sampling="arms"``: the values of ``jax.random.normal(key, (K, d))``.

    Drawn flat, (K·d,), and reshaped: the same numbers (threefry counts over the flattened shape), and at
    K = 10,000, d = 5 on CPU a round about 1.1x faster, since XLA then hashes the counters in a flat loop (the
    inverse-erf transform stays fused into the (K, d) add that consumes it, and ``optimization_barrier`` does not
    change that). ``benchmarks/bench_mets.py --part normals`` swaps this function to time the layouts.
    """
    return jax.random.normal(key, (num_arms * d,), dtype=dtype).reshape(num_arms, d)


def mets_params(mixing: np.ndarray, effect_mean: np.ndarray, effect_cov: np.ndarray, action_cov: np.ndarray,
                factored: bool, noise_var: float = 1.0) -> METSParams:
    """The meTS prior in information form from validated moments (``validate_mixed_effect_prior``)."""
    num_effects, d = effect_mean.shape
    action_precision_chol = jax.vmap(lambda c: gaussian_from_moments(jnp.zeros(d), c).precision_chol)(jnp.asarray(action_cov))
    action_precision = action_precision_chol @ jnp.swapaxes(action_precision_chol, 1, 2)
    if factored:
        blocks = np.stack([effect_cov[l * d:(l + 1) * d, l * d:(l + 1) * d] for l in range(num_effects)])
        effect_prior = jax.vmap(gaussian_from_moments)(jnp.asarray(effect_mean), jnp.asarray(blocks))
    else:
        effect_prior = gaussian_from_moments(jnp.asarray(effect_mean).reshape(-1), jnp.asarray(effect_cov))
    prior_precision = effect_prior.precision_chol @ jnp.swapaxes(effect_prior.precision_chol, -1, -2)
    return METSParams(jnp.asarray(mixing), action_precision_chol, action_precision, prior_precision,
                      effect_prior.info, jnp.asarray(noise_var, dtype=prior_precision.dtype))


def mets_core(mixing: np.ndarray, effect_mean: np.ndarray, effect_cov: np.ndarray, action_cov: np.ndarray,
              factored: bool, noise_var: float = 1.0) -> METSCore:
    """The meTS posterior over validated inputs: ``mixing`` (K, L), ``effect_mean`` (L, d),
    ``effect_cov`` (L·d, L·d), ``action_cov`` (K, d, d); ``factored`` keeps only the per-effect blocks.
    The functions read the prior from ``state.params``; only the shapes and ``factored`` are fixed."""
    (k, num_effects), d = mixing.shape, effect_mean.shape[1]
    defaults = mets_params(mixing, effect_mean, effect_cov, action_cov, factored, noise_var)

    def init(params: METSParams) -> METSState:
        return METSState(jnp.zeros((k, d, d)), jnp.zeros((k, d)), params.action_precision_chol,
                         jax.vmap(triangular_inverse)(params.action_precision_chol),
                         params.effect_precision, params.effect_info, params)

    def sample_effects(state: METSState, key: jax.Array) -> jax.Array:
        """Ψ̃ ~ Q_t as (L, d)."""
        effects = GaussianInfo(jnp.linalg.cholesky(state.effect_precision), state.effect_info)
        if factored:  # the normals of vmap(gaussian_sample) over split(key, L), all blocks in one substitution
            return arm_draws(effects, key)
        return gaussian_sample(effects, key).reshape(num_effects, d)

    def conditional_information(state: METSState, key: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Ψ̃ ~ Q_t (L, d), the information h_i = Σ0_i⁻¹ Σ_l b_il ψ̃_l + B_i (K, d) of every θ_i | Ψ̃, and the
        key left for the arms' normals."""
        effect_key, action_key = jax.random.split(key)
        effects = sample_effects(state, effect_key)
        mixed_means = state.params.mixing @ effects  # (K, d): Σ_l b_il ψ̃_l
        return effects, jnp.einsum("kab,kb->ka", state.params.action_precision, mixed_means) + state.moment, action_key

    def sample_hierarchically(state: METSState, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        effects, info, action_key = conditional_information(state, key)
        # θ̃_i = C_i⁻¹ h_i + L_i⁻ᵀ z_i = L_i⁻ᵀ (L_i⁻¹ h_i + z_i): two batched mat-vecs with the stored
        # L_i⁻¹ and one (K, d) normal draw, the per-arm sampling being the hot path of a round.
        noise = _arm_normals(action_key, k, d, info.dtype)
        return effects, stacked_gaussian_draws(state.conditional_chol_inv, info, noise, inverse=True)

    def sample_actions(state: METSState, key: jax.Array) -> jax.Array:
        return sample_hierarchically(state, key)[1]

    def sample_scores(state: METSState, key: jax.Array, context: jax.Array) -> jax.Array:
        _, info, action_key = conditional_information(state, key)
        noise = jax.random.normal(action_key, (k,), dtype=info.dtype)
        return stacked_gaussian_score_draws(state.conditional_chol_inv, info, context, noise, inverse=True)

    def posterior_draws(state: METSState, key: jax.Array, num_draws: int) -> dict[str, jax.Array]:
        psi, theta = jax.vmap(sample_hierarchically, (None, 0))(state, jax.random.split(key, num_draws))
        return {"psi": psi, "theta": theta}

    def set_arm(state: METSState, arm: jax.Array, gram: jax.Array, moment: jax.Array,
                conditional_chol: jax.Array) -> METSState:
        # The arm's evidence before (its stored statistics) and after, in one batched call: the old terms
        # are then exactly those this arm's previous update added (module docstring).
        pair = jax.vmap(effect_evidence_from_conditional)(
            jnp.stack([state.conditional_chol[arm], conditional_chol]), jnp.stack([state.gram[arm], gram]),
            jnp.stack([state.moment[arm], moment]))
        (old_precision, evidence_precision), (old_info, evidence_info) = pair
        delta_precision = evidence_precision - old_precision
        delta_info = evidence_info - old_info
        b = state.params.mixing[arm]
        if factored:
            effect_precision = state.effect_precision + (b**2)[:, None, None] * delta_precision
            effect_info = state.effect_info + b[:, None] * delta_info
        else:
            effect_precision = state.effect_precision + jnp.kron(jnp.outer(b, b), delta_precision)
            effect_info = state.effect_info + jnp.kron(b, delta_info)
        return METSState(
            gram=state.gram.at[arm].set(gram),
            moment=state.moment.at[arm].set(moment),
            conditional_chol=state.conditional_chol.at[arm].set(conditional_chol),
            conditional_chol_inv=state.conditional_chol_inv.at[arm].set(triangular_inverse(conditional_chol)),
            effect_precision=0.5 * (effect_precision + jnp.swapaxes(effect_precision, -1, -2)),
            effect_info=effect_info,
            params=state.params,
        )

    def rebuild(state: METSState, gram: jax.Array, moment: jax.Array, effect_gram: jax.Array,
                effect_moment: jax.Array) -> METSState:
        params = state.params
        conditional = params.action_precision + gram
        conditional_chol = jnp.linalg.cholesky(0.5 * (conditional + jnp.swapaxes(conditional, -1, -2)))
        evidence_precision, evidence_info = jax.vmap(effect_evidence)(params.action_precision_chol, effect_gram,
                                                                      effect_moment)
        b = params.mixing
        if factored:  # Σ_i b_il² P_i per block l
            effect_precision = params.effect_precision + jnp.einsum("kl,kab->lab", b**2, evidence_precision)
            effect_info = params.effect_info + jnp.einsum("kl,ka->la", b, evidence_info)
        else:  # Σ_i (b_i b_iᵀ) ⊗ P_i
            effect_precision = params.effect_precision + jnp.einsum(
                "kl,km,kab->lamb", b, b, evidence_precision).reshape(num_effects * d, num_effects * d)
            effect_info = params.effect_info + jnp.einsum("kl,ka->la", b, evidence_info).reshape(-1)
        return METSState(gram, moment, conditional_chol, jax.vmap(triangular_inverse)(conditional_chol),
                         0.5 * (effect_precision + jnp.swapaxes(effect_precision, -1, -2)), effect_info, params)

    return METSCore(defaults, init, sample_actions, posterior_draws, set_arm, rebuild, sample_scores)


def _thompson_action(core: METSCore, sampling: str, state: METSState, key: jax.Array,
                     context: jax.Array) -> tuple[jax.Array, ActInfo]:
    """argmax_i of one hierarchical draw of the scores x_iᵀθ̃_i, through θ̃ ("arms") or directly ("scores")."""
    if sampling == "scores":
        scores = core.sample_scores(state, key, context)
    else:
        scores = arm_scores(core.sample_actions(state, key), context)
    return jnp.argmax(scores), no_propensity(scores.dtype)


def _observe(core: METSCore, state: METSState, x: jax.Array, action: jax.Array, reward: jax.Array) -> METSState:
    """The stationary update: the pulled arm's statistics, a rank-one update of its C_a and the change
    in its evidence. O(d³ + L² d²)."""
    noise_var = state.params.noise_var
    gram = state.gram[action] + jnp.outer(x, x) / noise_var
    moment = state.moment[action] + x * reward / noise_var
    conditional_chol = cholesky_rank_one_update(state.conditional_chol[action], x / jnp.sqrt(noise_var))
    return core.set_arm(state, action, gram, moment, conditional_chol)
