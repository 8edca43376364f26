"""GAMBITTS: Thompson sampling for generator-mediated bandits (linear reward stage).

The agent picks a prompt a in context cell x; a generator returns a treatment whose embedding z the
agent observes with the reward y (``models.mediated``). Both agents here model y = βᵀφ(z) + ε with
φ(z) = [1, z_S] (z_S: the agent's working embedding, columns ``feature_index`` of the treatment) and
condition β in closed form (``inference.conjugate``). A prompt's Thompson score is β̃ᵀ[1, E(z | x, a)],
exact for a linear reward:

* ``fo_gambitts`` (fully online): E(z | x, a) = μ̃_{x,a}, a draw from a Normal-Inverse-Wishart posterior
  per (context cell, prompt) learned from the delivered treatments (``inference.niw``);
* ``po_gambitts`` (partially online): E(z | x, a) from offline generator draws (``inference.empirical``);
  only β is learned online.

``optional_prompting`` (``agents.optional_prompting``, re-exported here) puts a gate policy (send a
message or not) in front of any prompt policy.

Hyperparameters are data (``agents.protocol``): ``FOGambittsParams`` / ``POGambittsParams`` hold the
reward prior in information form, the noise variance σ², the treatment model the agent is told
(fo: the NIW prior of one cell; po: the offline draws and their means) and the working-embedding
columns ``feature_index``; the functions close over shapes and structural options only. They come from
an ``lru_cache``-d builder keyed on those, so two agents that differ only in values (the styles they
model, for the same d; priors; offline draws) have the same functions and share one compiled program
(``agents.shared_functions``).

Mediated context protocol. The context is a pytree with ``cell`` (), the integer context cell in
[0, C), and ``treatments`` (K, S), the embedding of the treatment each prompt would deliver this round
(``envs.mhealth``). Agents read ``treatments[action]`` in ``update`` only, never in ``act``: it is the
delivered treatment, observed after the prompt is sent.

Every agent reports ActInfo(propensity): the fraction of ``propensity_draws`` fresh posterior draws
whose argmax is the chosen action, a Monte-Carlo estimate of its selection probability for later
causal analyses (NaN with ``propensity_draws=0``).

``posterior_draws`` (for ``diagnostics.policy_to_arviz``): ``beta`` (n, d + 1), intercept first; fo
adds the treatment stage's ``mu`` (n, C, K, d) and ``Sigma`` (n, C, K, d, d) per (cell, prompt).

``reward_forgetting`` (off by default: then exactly the stationary agents) lets the reward stage track a
drifting β (``inference.forgetting``): "exponential" or "stabilised" at ``reward_forgetting_rate`` γ (data:
the params become ``FOGambittsForgettingParams`` / ``POGambittsForgettingParams``), or "window" over the
last ``reward_window`` rounds (the state then carries the buffer as ``window``).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from structbandits.agents.propensity import thompson_choice  # re-exported: the agents' shared helper
from structbandits.agents.optional_prompting import (  # re-exported: imports from here keep working
    OptionalPromptingParams,
    OptionalPromptingState,
    optional_prompting,
)
from structbandits.agents.protocol import ActInfo, Policy
from structbandits.agents.reward_forgetting import (
    FOGambittsForgettingParams,
    FOGambittsWindowState,
    POGambittsForgettingParams,
    POGambittsWindowState,
    forgetting_reward,
    reward_forgetting_options,
    reward_window_buffer,
)
from structbandits.agents.shared_functions import shared_policy
from structbandits.errors import ValidationError, check_finite, check_integer, check_positive, check_positive_definite
from structbandits.inference.conjugate import GaussianInfo, gaussian_sample, linear_regression_observe
from structbandits.inference.empirical import (
    EmpiricalTreatment,
    empirical_means,
    empirical_subsample,
    empirical_treatment,
)
from structbandits.inference.niw import NIW, niw_observe, niw_prior, niw_sample, niw_sample_mean

__all__ = [
    "FOGambittsForgettingParams",
    "FOGambittsParams",
    "FOGambittsState",
    "FOGambittsWindowState",
    "OptionalPromptingParams",
    "OptionalPromptingState",
    "POGambittsForgettingParams",
    "POGambittsParams",
    "POGambittsState",
    "POGambittsWindowState",
    "check_feature_index",
    "fo_gambitts",
    "niw_cell_draws",
    "niw_cell_prior",
    "niw_cells_prior",
    "optional_prompting",
    "po_gambitts",
    "reward_prior",
    "thompson_choice",
]


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


def _reward_options(num_styles: int, reward_prior_mean, reward_prior_precision, reward_noise_scale) -> tuple[GaussianInfo, jax.Array]:
    noise_var = float(check_positive("reward_noise_scale", reward_noise_scale)) ** 2
    mean = check_finite("reward_prior_mean", reward_prior_mean)
    precision = check_positive("reward_prior_precision", reward_prior_precision)
    for name, value in (("reward_prior_mean", mean), ("reward_prior_precision", precision)):
        if value.shape != (2,):
            raise ValidationError(f"{name}: expected (intercept, coefficient) values of shape (2,), got shape {value.shape}")
    prior = reward_prior(num_styles, intercept_mean=float(mean[0]), intercept_precision=float(precision[0]),
                         coef_mean=float(mean[1]), coef_precision=float(precision[1]))
    return prior, jnp.asarray(noise_var, prior.info.dtype)


def _index_param(index: tuple[int, ...]) -> jax.Array:
    return jnp.asarray(index, jnp.int32)


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


def fo_gambitts(
    num_actions: int,
    num_cells: int,
    feature_index: Sequence[int],
    *,
    reward_prior_mean=(77.0, 0.0),
    reward_prior_precision=(0.01, 1.0),
    reward_noise_scale: float = 1.0,
    niw_mean=None,
    niw_kappa: float = 1.0,
    niw_psi=None,
    niw_nu: float | None = None,
    propensity_draws: int = 100,
    reward_forgetting: str | None = None,
    reward_forgetting_rate: float = 1.0,
    reward_window: int | None = None,
) -> Policy:
    """Fully online GAMBITTS with a linear reward stage.

    Parameters
    ----------
    num_actions : K prompts.
    num_cells : C context cells (``context.cell`` in [0, C)).
    feature_index : the d treatment columns the agent models (its working embedding).
    reward_prior_mean, reward_prior_precision : (intercept, coefficient) prior mean and precision of β;
        default the reference's (77, 0) and (0.01, 1).
    reward_noise_scale : σ in the reward likelihood; 1 reproduces the reference (its v² = 1).
    niw_mean, niw_kappa, niw_psi, niw_nu : the NIW prior per (cell, prompt); default m0 = 0, κ0 = 1,
        Ψ0 = I, ν0 = d (the reference).
    propensity_draws : M posterior draws for the propensity estimate (0: NaN).
    reward_forgetting, reward_forgetting_rate, reward_window : forgetting of the reward stage β: None
        (default), "exponential" / "stabilised" with γ in (0, 1] (O(d³) per round), or "window" with
        w >= 1 rounds (``inference.forgetting``; the option names of ``lin_ts``' ``forgetting`` etc.).

    Returns
    -------
    Policy on mediated contexts (module docstring); state ``FOGambittsState`` (``FOGambittsWindowState``
    with a window), params ``FOGambittsParams`` (``FOGambittsForgettingParams`` with γ). Per round
    O(M K d² + d²). Calls that differ only in values (feature columns of the same d, priors) return the
    same ``act`` / ``update`` / ``posterior_draws`` and compare equal without params: one compiled program.
    """
    k = check_integer("num_actions", num_actions, minimum=2)
    c = check_integer("num_cells", num_cells, minimum=1)
    index = check_feature_index(feature_index)
    m = check_integer("propensity_draws", propensity_draws, minimum=0)
    prior, noise_var = _reward_options(len(index), reward_prior_mean, reward_prior_precision, reward_noise_scale)
    treatment_prior = niw_cell_prior(len(index), mean0=niw_mean, kappa0=niw_kappa, psi0=niw_psi, nu0=niw_nu)
    forgetting, rate, window = reward_forgetting_options(reward_forgetting, reward_forgetting_rate, reward_window)
    defaults = FOGambittsParams(prior, noise_var, treatment_prior, _index_param(index))
    if forgetting in ("exponential", "stabilised"):
        defaults = FOGambittsForgettingParams(*defaults[:3], jnp.asarray(rate, noise_var.dtype), defaults.feature_index)
    functions = _fo_functions(k, c, len(index), m, forgetting, window)
    return shared_policy(*functions, defaults)


def po_gambitts(
    treatment_draws,
    feature_index: Sequence[int],
    *,
    treatment_counts=None,
    num_draws: int | None = None,
    reward_prior_mean=(77.0, 0.0),
    reward_prior_precision=(0.01, 1.0),
    reward_noise_scale: float = 1.0,
    propensity_draws: int = 100,
    reward_forgetting: str | None = None,
    reward_forgetting_rate: float = 1.0,
    reward_window: int | None = None,
) -> Policy:
    """Partially online GAMBITTS: offline treatment model, linear reward stage learned online.

    Parameters
    ----------
    treatment_draws : (K, C, N, S) offline generator draws per (prompt, context cell), all S treatment
        columns (the same columns as ``context.treatments``).
    feature_index : the d columns the agent models.
    treatment_counts : (K, C) valid rows per cell (default all N).
    num_draws : generator queries per cell the agent may use; each seed draws its own subset of that
        size in ``init`` (None: all rows).
    reward_prior_mean, reward_prior_precision, reward_noise_scale, propensity_draws : as ``fo_gambitts``.
    reward_forgetting, reward_forgetting_rate, reward_window : as ``fo_gambitts``.

    Returns
    -------
    Policy on mediated contexts; state ``POGambittsState`` (``POGambittsWindowState`` with a window),
    params ``POGambittsParams`` (``POGambittsForgettingParams`` with γ). Per round O(M (K d + d²)).
    Calls that differ only in values (feature columns of the same d, priors, offline draws of the same
    shape) return the same functions, as ``fo_gambitts``.
    """
    offline = empirical_treatment(treatment_draws, treatment_counts)
    index = check_feature_index(feature_index, offline.draws.shape[-1])
    offline = EmpiricalTreatment(offline.draws[..., jnp.asarray(index)], offline.counts)
    num_draws = None if num_draws is None else check_integer("num_draws", num_draws, minimum=1)
    m = check_integer("propensity_draws", propensity_draws, minimum=0)
    prior, noise_var = _reward_options(len(index), reward_prior_mean, reward_prior_precision, reward_noise_scale)
    forgetting, rate, window = reward_forgetting_options(reward_forgetting, reward_forgetting_rate, reward_window)
    defaults = POGambittsParams(prior, noise_var, offline, empirical_means(offline), _index_param(index))
    if forgetting in ("exponential", "stabilised"):
        defaults = POGambittsForgettingParams(*defaults[:4], jnp.asarray(rate, noise_var.dtype), defaults.feature_index)
    k, c, n, d = (int(size) for size in offline.draws.shape)
    functions = _po_functions(k, c, n, d, num_draws, m, forgetting, window)
    return shared_policy(*functions, defaults)
