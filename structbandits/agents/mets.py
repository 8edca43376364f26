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

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from structbandits.agents.protocol import ActInfo, Policy, no_propensity
from structbandits.agents.thompson import arm_draws, arm_features, arm_scores
from structbandits.errors import ValidationError, check_finite, check_integer, check_positive, check_positive_definite
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
from structbandits.inference.forgetting import check_forgetting, data_direction, window_init, window_push

__all__ = ["METS_SAMPLING", "METSCore", "METSForgettingParams", "METSForgettingState", "METSParams", "METSState",
           "average_effect_prior",
           "check_effect_prior", "hier_ts", "mets", "mets_core", "mets_params", "validate_mixed_effect_prior"]


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
