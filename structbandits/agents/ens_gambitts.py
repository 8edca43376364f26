"""Ensemble GAMBITTS: a perturbed MLP ensemble as the reward stage (the seed's appendix C).

The reward model y = f(z_S) + ε is a one-hidden-layer ReLU network whose posterior is approximated by
a perturbed ensemble (``inference.ensemble``, Lu and Van Roy 2017). To act, the agent picks one
member f_m uniformly at random and scores each prompt by the Monte-Carlo mean of f_m over
``mc_draws`` treatments of that prompt in this context cell:

* ``ens_po_gambitts``: treatments resampled from offline generator draws (``inference.empirical``);
  when a cell stores at most ``mc_draws`` rows, the same resample is scored as a weighted sum over
  the stored rows (``empirical_weights``: each row counted as often as it was drawn), which is the
  identical estimator at a fraction of the cost (the LLM database holds 2 rows per cell);
* ``ens_fo_gambitts``: treatments from a draw (μ̃, Σ̃) of the cell's Normal-Inverse-Wishart posterior,
  learned online as in foGAMBITTS.

Reference settings (defaults): M = 60 members, 64 hidden units, Adam with learning rate 0.1 rebuilt
every step, replay buffer 1024, minibatch 100 with replacement, 100 warm-up rounds of uniformly
random prompts with no training, perturbation sd = the environment's noise sd (pass it as
``perturbation_scale``), 100 Monte-Carlo treatments. Network inputs are the working-embedding
columns only. The propensity after warm-up is the share of ``propensity_draws`` members, drawn
with replacement and all scored on one fresh Monte-Carlo batch of treatments (independent of the
acting draw), that choose the same prompt (with at least M draws every member is scored once and
the draws look their member's choice up); during warm-up it is exactly 1/K.

The state carries its own PRNG key (``update`` takes none) for target perturbations and minibatches.

Hyperparameters are data (``agents.protocol``): ``EnsGambittsParams`` holds Adam's learning rate,
the perturbation scale, the anchor term's prior scale, the treatment model the agent is told (ens-po:
the offline draws; ens-fo: the NIW prior of one cell) and the working-embedding columns; member,
hidden-unit, buffer, batch, warm-up and Monte-Carlo sizes fix shapes and stay in the functions. A custom
``optimizer`` stays in the functions too (its numbers are its own), and then ``learning_rate`` is None.
The functions come from an ``lru_cache``-d builder keyed on the structural options only (a custom
optimizer by identity), so agents that differ only in values (styles of the same d, learning rate,
perturbation scale, offline draws of one shape) share them and one compiled program
(``agents.shared_functions``).

``posterior_draws`` treats the members as the posterior's draws: each draw is one member's
parameters (``w1``, ``b1``, ``w2``, ``b2``, the sites of ``models.mediated.mlp_reward_stage``; ``w``,
``b`` for a linear model), every member once per block of M draws; ens-fo adds the NIW treatment
posterior's ``mu`` and ``Sigma`` per (cell, prompt).

Layout: this module holds the constructors ``ens_po_gambitts`` / ``ens_fo_gambitts``; the params, state
and structural options are in ``agents.ens_gambitts_params``, the shared functions, ``member_draws`` and
the ``lru_cache``-d builders in ``agents.ens_gambitts_functions``; every name listed in ``__all__``
still imports from here.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import optax

from structbandits.agents.ens_gambitts_functions import (  # re-exported: imports from here keep working
    _ens_fo_functions,
    _ens_po_functions,
    member_draws,
)
from structbandits.agents.ens_gambitts_params import EnsGambittsParams, EnsGambittsState, _ensemble_options
from structbandits.agents.gambitts_priors import check_feature_index, niw_cell_prior
from structbandits.agents.protocol import Policy
from structbandits.agents.shared_functions import shared_policy
from structbandits.errors import check_integer
from structbandits.inference.empirical import EmpiricalTreatment, empirical_treatment

__all__ = ["EnsGambittsParams", "EnsGambittsState", "ens_fo_gambitts", "ens_po_gambitts", "member_draws"]


def ens_po_gambitts(
    treatment_draws,
    feature_index: Sequence[int],
    *,
    treatment_counts=None,
    num_draws: int | None = None,
    num_members: int = 60,
    num_hidden: int = 64,
    learning_rate: float = 0.1,
    buffer_size: int = 1024,
    batch_size: int = 100,
    warmup: int = 100,
    perturbation_scale: float = 1.0,
    mc_draws: int = 100,
    reset_optimizer: bool = False,
    prior_scale: float | None = None,
    propensity_draws: int = 100,
    optimizer: optax.GradientTransformation | None = None,
    dtype: str = "float32",
) -> Policy:
    """Partially online ensemble GAMBITTS (offline treatment draws, perturbed MLP ensemble reward).

    Parameters
    ----------
    treatment_draws, treatment_counts, num_draws, feature_index : as ``po_gambitts``.
    num_members : M ensemble members.
    num_hidden : hidden ReLU units (0: a linear model).
    learning_rate : Adam's learning rate (ignored when ``optimizer`` is given).
    buffer_size, batch_size : replay-buffer capacity and minibatch size.
    warmup : rounds of uniformly random prompts before training and Thompson acting.
    perturbation_scale : sd of each member's target perturbations (the environment's noise sd).
    mc_draws : Monte-Carlo treatments per prompt when scoring.
    reset_optimizer : rebuild the optimiser state every step (the reference) or keep it.
    prior_scale : None (reference: plain MSE) or σ0, adding the anchor term of Lu and Van Roy.
    propensity_draws : M' member draws for the propensity estimate, scored on one shared fresh batch of
        treatments (0: NaN).
    optimizer : an optax transformation replacing Adam(learning_rate).
    dtype : "float32" (default, like the reference's PyTorch networks; about twice as fast) or
        "float64" for the networks, buffer and Monte-Carlo scoring.

    Returns
    -------
    Policy on mediated contexts; state ``EnsGambittsState``, params ``EnsGambittsParams``. Per round
    O(M · batch · d · H) training + O((1 + min(M, M')) · R · K · d · H) scoring, R = min(mc, rows per cell).
    """
    offline = empirical_treatment(treatment_draws, treatment_counts)
    index = check_feature_index(feature_index, offline.draws.shape[-1])
    offline = EmpiricalTreatment(offline.draws[..., jnp.asarray(index)], offline.counts)
    num_draws = None if num_draws is None else check_integer("num_draws", num_draws, minimum=1)
    opts, defaults = _ensemble_options(num_members, num_hidden, learning_rate, buffer_size, batch_size, warmup,
                                       perturbation_scale, mc_draws, reset_optimizer, prior_scale, propensity_draws,
                                       optimizer, dtype, offline, index)
    k, _, n, d = (int(size) for size in offline.draws.shape)
    return shared_policy(*_ens_po_functions(opts, k, n, d, num_draws), defaults)


def ens_fo_gambitts(
    num_actions: int,
    num_cells: int,
    feature_index: Sequence[int],
    *,
    niw_mean=None,
    niw_kappa: float = 1.0,
    niw_psi=None,
    niw_nu: float | None = None,
    num_members: int = 60,
    num_hidden: int = 64,
    learning_rate: float = 0.1,
    buffer_size: int = 1024,
    batch_size: int = 100,
    warmup: int = 100,
    perturbation_scale: float = 1.0,
    mc_draws: int = 100,
    reset_optimizer: bool = False,
    prior_scale: float | None = None,
    propensity_draws: int = 100,
    optimizer: optax.GradientTransformation | None = None,
    dtype: str = "float32",
) -> Policy:
    """Fully online ensemble GAMBITTS: NIW treatment posteriors per (cell, prompt), MLP-ensemble reward.

    ``num_actions``, ``num_cells``, ``feature_index`` and the NIW prior as ``fo_gambitts``; the
    ensemble options as ``ens_po_gambitts``. Each scoring draw samples (μ̃, Σ̃) per prompt from the
    cell's NIW posterior and ``mc_draws`` treatments z ~ N(μ̃, Σ̃).
    """
    k = check_integer("num_actions", num_actions, minimum=2)
    c = check_integer("num_cells", num_cells, minimum=1)
    index = check_feature_index(feature_index)
    d = len(index)
    prior = niw_cell_prior(d, mean0=niw_mean, kappa0=niw_kappa, psi0=niw_psi, nu0=niw_nu)
    opts, defaults = _ensemble_options(num_members, num_hidden, learning_rate, buffer_size, batch_size, warmup,
                                       perturbation_scale, mc_draws, reset_optimizer, prior_scale, propensity_draws,
                                       optimizer, dtype, prior, index)
    return shared_policy(*_ens_fo_functions(opts, k, c, d), defaults)
