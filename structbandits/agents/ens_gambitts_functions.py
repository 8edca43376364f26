"""Ensemble GAMBITTS functions (moved from ``agents.ens_gambitts``, which re-exports ``member_draws``):
the (init, act, update, posterior_draws) shared by ens-po and ens-fo (``_ensemble_functions``), the
Monte-Carlo prompt scores, ``member_draws``, and the ``lru_cache``-d builders ``_ens_po_functions`` /
``_ens_fo_functions`` that supply each variant's treatment draws and treatment learning.
"""

from __future__ import annotations

from functools import lru_cache

import jax
import jax.numpy as jnp
import optax

from structbandits.agents.ens_gambitts_params import EnsGambittsParams, EnsGambittsState, _EnsembleOptions
from structbandits.agents.gambitts_priors import niw_cell_draws
from structbandits.agents.propensity import choice_frequency
from structbandits.agents.protocol import ActInfo, no_propensity
from structbandits.inference.empirical import empirical_sample, empirical_subsample, empirical_weights
from structbandits.inference.ensemble import buffer_add, buffer_init, ensemble_init, ensemble_step, model_apply
from structbandits.inference.niw import NIW, niw_observe, niw_sample
from structbandits.inference.ring_buffer import ring_size

__all__ = ["member_draws"]


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
