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
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from structbandits.agents.gambitts import check_feature_index, niw_cell_draws, niw_cell_prior
from structbandits.agents.propensity import choice_frequency
from structbandits.agents.protocol import ActInfo, Policy, no_propensity
from structbandits.agents.shared_functions import shared_policy
from structbandits.errors import ValidationError, check_integer, check_positive
from structbandits.inference.empirical import (
    EmpiricalTreatment,
    empirical_sample,
    empirical_subsample,
    empirical_treatment,
    empirical_weights,
)
from structbandits.inference.ensemble import (
    Ensemble,
    buffer_add,
    buffer_init,
    ensemble_init,
    ensemble_step,
    model_apply,
)
from structbandits.inference.niw import NIW, niw_observe, niw_sample
from structbandits.inference.ring_buffer import RingBuffer, ring_size

__all__ = ["EnsGambittsParams", "EnsGambittsState", "ens_fo_gambitts", "ens_po_gambitts", "member_draws"]


class EnsGambittsParams(NamedTuple):
    """Ensemble GAMBITTS hyperparameters (scalars in the networks' dtype).

    Attributes
    ----------
    learning_rate : () Adam's learning rate; None when a custom ``optimizer`` was given.
    perturbation_scale : () sd σ of the target perturbations.
    perturbation_var : () σ², rounded once from double precision (the anchor weight's numerator).
    prior_var : () σ0² of the anchor term; None without it (``prior_scale`` None).
    treatment : ens-po: the offline draws of the working columns (``EmpiricalTreatment``, (K, C, N, d));
        ens-fo: the NIW prior of every (cell, prompt), fields (d,) ....
    feature_index : (d,) int32 the working-embedding columns of ``context.treatments``.
    """

    learning_rate: jax.Array | None
    perturbation_scale: jax.Array
    perturbation_var: jax.Array
    prior_var: jax.Array | None
    treatment: object
    feature_index: jax.Array


class EnsGambittsState(NamedTuple):
    """Ensemble agent state.

    Attributes
    ----------
    ensemble : the M reward models (``inference.ensemble.Ensemble``).
    buffer : the replay buffer of (z_S, y, perturbations).
    round : () rounds observed so far.
    key : the agent's own PRNG key for perturbations and minibatches.
    treatment : ens-po: this seed's offline draws (``EmpiricalTreatment``) when subsampled, else None;
        ens-fo: NIW posteriors per (cell, prompt), fields (C, K, ...).
    params : ``EnsGambittsParams``.
    """

    ensemble: Ensemble
    buffer: RingBuffer
    round: jax.Array
    key: jax.Array
    treatment: object
    params: EnsGambittsParams


class _EnsembleOptions(NamedTuple):
    """The structural options: the functions' cache key (hashable; no arrays)."""

    members: int
    hidden: int
    optimizer: optax.GradientTransformation | None  # None: Adam at the params' learning rate
    buffer_size: int
    batch_size: int
    warmup: int
    mc_draws: int
    reset_optimizer: bool
    anchored: bool  # prior_scale given: the anchor term is on
    propensity_draws: int
    dtype: object


def _ensemble_options(num_members, num_hidden, learning_rate, buffer_size, batch_size, warmup, perturbation_scale,
                      mc_draws, reset_optimizer, prior_scale, propensity_draws, optimizer, dtype,
                      treatment, index: tuple[int, ...]) -> tuple[_EnsembleOptions, EnsGambittsParams]:
    """The validated structural options and the hyperparameters (``treatment``: the treatment model's params;
    ``index``: the validated working columns)."""
    if dtype not in ("float32", "float64"):
        raise ValidationError(f"dtype: expected \"float32\" or \"float64\", got {dtype!r}")
    net = jnp.dtype(dtype)
    rate = None
    if optimizer is None:
        rate = float(check_positive("learning_rate", learning_rate))
        # None: ``init`` and ``update`` build Adam from the traced rate (Adam's state does not depend on
        # it; the traced rate multiplies the update exactly as the constant did).
    elif not isinstance(optimizer, optax.GradientTransformation):
        raise ValidationError(f"optimizer: expected an optax.GradientTransformation, got {type(optimizer).__name__}")
    scale = float(check_positive("perturbation_scale", perturbation_scale, allow_zero=True))
    prior_scale = None if prior_scale is None else float(check_positive("prior_scale", prior_scale))
    # Squares in double precision, then rounded to the networks' dtype: as the Python constants were.
    params = EnsGambittsParams(
        learning_rate=None if rate is None else jnp.asarray(rate, net),
        perturbation_scale=jnp.asarray(scale, net),
        perturbation_var=jnp.asarray(scale**2, net),
        prior_var=None if prior_scale is None else jnp.asarray(prior_scale**2, net),
        treatment=treatment,
        feature_index=jnp.asarray(index, jnp.int32),
    )
    return _EnsembleOptions(
        members=check_integer("num_members", num_members, minimum=1),
        hidden=check_integer("num_hidden", num_hidden, minimum=0),
        optimizer=optimizer,
        buffer_size=check_integer("buffer_size", buffer_size, minimum=1),
        batch_size=check_integer("batch_size", batch_size, minimum=1),
        warmup=check_integer("warmup", warmup, minimum=0),
        mc_draws=check_integer("mc_draws", mc_draws, minimum=1),
        reset_optimizer=bool(reset_optimizer),
        anchored=prior_scale is not None,
        propensity_draws=check_integer("propensity_draws", propensity_draws, minimum=0),
        dtype=net,
    ), params


def member_draws(key: jax.Array, num_members: int, num_draws: int) -> jax.Array:
    """(num_draws,) member indices: random permutations of the M members, repeated as needed.

    The ensemble's posterior is uniform over its members; drawing without replacement within each
    block of M makes ``num_draws = M`` return every member exactly once (no Monte-Carlo duplication).
    """
    blocks = -(-num_draws // num_members)
    orders = jax.vmap(lambda k: jax.random.permutation(k, num_members))(jax.random.split(key, blocks))
    return orders.reshape(-1)[:num_draws]


def _equal_weights(z: jax.Array) -> tuple[jax.Array, jax.Array]:
    """A batch of mc treatments z (mc, K, d), each of weight 1/mc."""
    return z, jnp.full(z.shape[:2], 1.0 / z.shape[0], z.dtype)


def _prompt_scores(member, batch) -> jax.Array:
    """One member's Monte-Carlo score of every prompt: Σ_r weights[r, a] f(z[r, a]) for a batch (z, weights) → (K,)."""
    z, weights = batch
    return jnp.sum(weights * model_apply(member, z), axis=0)


def _ensemble_functions(opts: _EnsembleOptions, num_actions: int, d: int, init_treatment, treatment_draws,
                        observe_treatment, treatment_posterior=None) -> tuple:
    """(init(key, params), act, update, posterior_draws): the parts shared by ens-po and ens-fo; they
    differ in how treatments are drawn and learned.

    ``init_treatment(key, treatment_params)`` → the state's treatment;
    ``treatment_draws(treatment, treatment_params, key, cell)`` → a Monte-Carlo batch (z (R, K, d), weights (R, K)), the
    weights of each prompt summing to 1 (R = mc draws of weight 1/mc, or a cell's stored rows weighted
    by how often a resample of mc draws picked them);
    ``observe_treatment(treatment, cell, action, z)`` → treatment;
    ``treatment_posterior(treatment, key, num_draws)`` → named draws of a learned treatment stage, or None.
    """
    k = num_actions

    def optimizer(params: EnsGambittsParams) -> optax.GradientTransformation:
        return opts.optimizer if opts.optimizer is not None else optax.adam(params.learning_rate)

    def init(key: jax.Array, params: EnsGambittsParams) -> EnsGambittsState:
        ens_key, treatment_key, own_key = jax.random.split(key, 3)
        return EnsGambittsState(
            ensemble_init(ens_key, opts.members, d, opts.hidden, optimizer(params), opts.dtype),
            buffer_init(opts.buffer_size, d, opts.members, opts.dtype),
            jnp.zeros((), jnp.int32), own_key, init_treatment(treatment_key, params.treatment), params,
        )

    def act(state: EnsGambittsState, key: jax.Array, context) -> tuple[jax.Array, ActInfo]:
        uniform_key, member_key, z_key, propensity_key = jax.random.split(key, 4)
        params = state.ensemble.params
        member = jax.tree.map(lambda leaf: leaf[jax.random.randint(member_key, (), 0, opts.members)], params)
        action = jnp.argmax(_prompt_scores(
            member, treatment_draws(state.treatment, state.params.treatment, z_key, context.cell)))
        warming = state.round < opts.warmup
        action = jnp.where(warming, jax.random.randint(uniform_key, (), 0, k), action)
        if opts.propensity_draws == 0:
            return action, no_propensity(jnp.float64)
        # M' members drawn with replacement, all scored on one fresh batch of treatments.
        draw_key, batch_key = jax.random.split(propensity_key)
        members = jax.random.randint(draw_key, (opts.propensity_draws,), 0, opts.members)
        batch = treatment_draws(state.treatment, state.params.treatment, batch_key, context.cell)
        # lax.map, not vmap, over members: per-member intermediates stay in cache (about 10x faster on CPU).
        # With M' >= M draws, each of the M members is scored once and the draws look their choice up.
        every_member = opts.propensity_draws >= opts.members
        choices = jnp.argmax(jax.lax.map(
            lambda m: _prompt_scores(jax.tree.map(lambda leaf: leaf[m], params), batch),
            jnp.arange(opts.members) if every_member else members), axis=-1)
        chosen = choices[members] if every_member else choices
        propensity = choice_frequency(chosen, action, jnp.float64)
        return action, ActInfo(jnp.where(warming, 1.0 / k, propensity))

    def update(state: EnsGambittsState, context, action: jax.Array, reward: jax.Array) -> EnsGambittsState:
        z = context.treatments[action, state.params.feature_index]
        own_key, noise_key, batch_key = jax.random.split(state.key, 3)
        hyper = state.params
        perturbation = hyper.perturbation_scale * jax.random.normal(noise_key, (opts.members,), opts.dtype)
        buffer = buffer_add(state.buffer, z.astype(opts.dtype), reward.astype(opts.dtype), perturbation)
        if opts.anchored:
            seen = ring_size(buffer).astype(opts.dtype)
            regularization = hyper.perturbation_var / (seen * hyper.prior_var)
        else:
            regularization = 0.0
        ensemble = jax.lax.cond(
            state.round + 1 >= opts.warmup,
            lambda e: ensemble_step(e, buffer, batch_key, optimizer(hyper), batch_size=opts.batch_size,
                                    reset_optimizer=opts.reset_optimizer, regularization=regularization),
            lambda e: e,
            state.ensemble,
        )
        treatment = observe_treatment(state.treatment, context.cell, action, z)
        return EnsGambittsState(ensemble, buffer, state.round + 1, own_key, treatment, state.params)

    def posterior_draws(state: EnsGambittsState, key: jax.Array, num_draws: int) -> dict[str, jax.Array]:
        member_key, treatment_key = jax.random.split(key)
        members = member_draws(member_key, opts.members, num_draws)
        draws = {name: leaf[members] for name, leaf in state.ensemble.params.items()}
        if treatment_posterior is not None:
            draws.update(treatment_posterior(state.treatment, treatment_key, num_draws))
        return draws

    return init, act, update, posterior_draws


@lru_cache(maxsize=256)  # a custom optimizer is a key by identity (a NamedTuple of functions)
def _ens_po_functions(opts: _EnsembleOptions, k: int, n: int, d: int, num_draws: int | None) -> tuple:
    """ens-po's functions for offline draws (k, ·, n, d) and ``num_draws`` rows per seed (None: all)."""
    subsampled = num_draws is not None and num_draws < n

    def init_treatment(key, offline_params):
        return empirical_subsample(offline_params, key, num_draws) if subsampled else None

    rows = num_draws if subsampled else n
    score_rows = rows <= opts.mc_draws  # score the stored rows, weighted, rather than mc resampled copies

    def draws(treatment, offline_params, key, cell):
        model = treatment if subsampled else offline_params
        if score_rows:
            weights = empirical_weights(model, key, cell, opts.mc_draws).T / opts.mc_draws  # (N, K)
            return jnp.swapaxes(model.draws[:, cell], 0, 1).astype(opts.dtype), weights.astype(opts.dtype)
        return _equal_weights(empirical_sample(model, key, cell, (opts.mc_draws,)).astype(opts.dtype))

    return _ensemble_functions(opts, k, d, init_treatment, draws, lambda treatment, cell, action, z: treatment)


@lru_cache(maxsize=256)
def _ens_fo_functions(opts: _EnsembleOptions, k: int, c: int, d: int) -> tuple:
    """ens-fo's functions for K = k prompts, C = c cells, d columns."""

    def init_treatment(key, one: NIW) -> NIW:
        return jax.tree.map(lambda leaf: jnp.broadcast_to(leaf, (c, k) + leaf.shape), one)

    def draws(treatment: NIW, prior_params, key, cell):
        cell_niw = jax.tree.map(lambda leaf: leaf[cell], treatment)  # fields (K, ...)
        niw_key, eps_key = jax.random.split(key)
        mean, root = jax.vmap(niw_sample, (0, 0, None))(cell_niw, jax.random.split(niw_key, k), ())  # (K, d), (K, d, d)
        eps = jax.random.normal(eps_key, (opts.mc_draws, k, d), mean.dtype)
        return _equal_weights((mean + jnp.einsum("kij,mkj->mki", root, eps)).astype(opts.dtype))

    def observe(treatment: NIW, cell, action, z):
        one = jax.tree.map(lambda leaf: leaf[cell, action], treatment)
        return jax.tree.map(lambda leaf, new: leaf.at[cell, action].set(new), treatment, niw_observe(one, z))

    return _ensemble_functions(opts, k, d, init_treatment, draws, observe, niw_cell_draws)


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
