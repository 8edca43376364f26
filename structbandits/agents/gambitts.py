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

Layout: this module holds the constructors ``fo_gambitts`` / ``po_gambitts`` and their option checks;
the params / state types and the ``lru_cache``-d function builders are in ``agents.gambitts_functions``,
the priors, ``check_feature_index`` and ``niw_cell_draws`` in ``agents.gambitts_priors``; every name
listed in ``__all__`` still imports from here.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from structbandits.agents.gambitts_functions import (  # re-exported: imports from here keep working
    FOGambittsParams,
    FOGambittsState,
    POGambittsParams,
    POGambittsState,
    _fo_functions,
    _po_functions,
)
from structbandits.agents.gambitts_priors import (  # re-exported: imports from here keep working
    check_feature_index,
    niw_cell_draws,
    niw_cell_prior,
    niw_cells_prior,
    reward_prior,
)
from structbandits.agents.propensity import thompson_choice  # re-exported: the agents' shared helper
from structbandits.agents.optional_prompting import (  # re-exported: imports from here keep working
    OptionalPromptingParams,
    OptionalPromptingState,
    optional_prompting,
)
from structbandits.agents.protocol import Policy
from structbandits.agents.reward_forgetting import (
    FOGambittsForgettingParams,
    FOGambittsWindowState,
    POGambittsForgettingParams,
    POGambittsWindowState,
    reward_forgetting_options,
)
from structbandits.agents.shared_functions import shared_policy
from structbandits.errors import ValidationError, check_finite, check_integer, check_positive
from structbandits.inference.conjugate import GaussianInfo
from structbandits.inference.empirical import EmpiricalTreatment, empirical_means, empirical_treatment

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
