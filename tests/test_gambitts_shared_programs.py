"""GAMBITTS agents that differ only in values share their functions and one compiled program.

``po_gambitts``, ``fo_gambitts``, ``ens_po_gambitts``, ``ens_fo_gambitts`` and ``standard_ts`` build
their functions through a cache keyed on structure only; the working-embedding columns
(``feature_index``), priors, rates and offline draws are params. Two agents on different styles (same
d) with different values must therefore have the same ``act`` / ``update`` / ``posterior_draws``, one
``_simulate_batch`` program for both, and each must still play exactly as the same agent built alone
(the builder's cache cleared first, so its functions are new closures and its program its own); po,
fo and ens-po are played, ens-fo and standard TS checked for shared functions only.
For the linear reward stage (po, fo) the independent oracle is the closed-form Bayesian linear
regression of the observed rewards on [1, z_S], computed here with NumPy from the replayed contexts:
it fails if a shared program reads another agent's columns.

Tiny instances: K = 3 prompts, C = 2 cells, S = 3 treatment columns, 6 rounds, 2 seeds.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from params_as_data import same_leaves
from structbandits.agents import ens_gambitts, gambitts
from structbandits.agents.ens_gambitts import ens_fo_gambitts, ens_po_gambitts
from structbandits.agents.gambitts import fo_gambitts, po_gambitts
from structbandits.agents.protocol import init_state, without_params
from structbandits.agents.standard_ts import standard_ts
from structbandits.envs.protocol import Environment
from structbandits.experiments import runner
from structbandits.seeding import seed_keys


K, C, S, N, T, SEEDS = 3, 2, 3, 4, 6, 2
DRAWS = np.random.default_rng(0).normal(size=(K, C, N, S))
ENSEMBLE = dict(num_members=2, num_hidden=3, warmup=2, batch_size=4, buffer_size=8, mc_draws=3, propensity_draws=2)
SMALL = {**ENSEMBLE, "num_hidden": 0, "propensity_draws": 0}  # a linear ensemble: a quarter of the compile time
WEIGHTS = jnp.array([1.5, -0.5, 0.8])
NOISE = 0.3


class Ctx(NamedTuple):
    cell: jax.Array
    treatments: jax.Array


def _init(key):
    return jnp.zeros(())


def _context(state, key):
    cell_key, z_key = jax.random.split(key)
    return Ctx(jax.random.randint(cell_key, (), 0, C), jax.random.normal(z_key, (K, S)))


def _means(state, context):
    return 2.0 + context.treatments @ WEIGHTS


def _reward(state, key, context, action):
    return _means(state, context)[action] + NOISE * jax.random.normal(key, ())


ENV = Environment(K, (), _init, _context, _means, _reward)

# family -> (build(style, value), the builder cache to clear for the "built alone" oracle)
FAMILIES = {
    "po": (lambda style, v: po_gambitts(DRAWS, [style], reward_noise_scale=v, propensity_draws=0),
           gambitts._po_functions),
    "fo": (lambda style, v: fo_gambitts(K, C, [style], reward_noise_scale=v, niw_kappa=v, propensity_draws=0),
           gambitts._fo_functions),
    "ens_po": (lambda style, v: ens_po_gambitts(DRAWS, [style], perturbation_scale=v, **SMALL),
               ens_gambitts._ens_po_functions),
}


def _functions(policy):
    return policy.init.shared, policy.act, policy.update, policy.posterior_draws


def _simulate(policy):
    return runner.batched_simulator(policy, ENV, T)(seed_keys(0, SEEDS), return_state=True)


def _closed_form_beta(columns, states_and_records, scale):
    """β's posterior mean after the run, by NumPy: prior N((77, 0), diag(1/0.01, 1)), noise sd ``scale``."""
    _, records = states_and_records
    actions = np.asarray(records.action)
    rewards = np.asarray(records.reward)
    contexts = runner._context_columns(ENV, seed_keys(0, SEEDS), T, actions)
    treatments = np.stack([contexts[f"context_{1 + i}"] for i in range(K * S)], axis=1).reshape(SEEDS, T, K, S)
    means = []
    for seed in range(SEEDS):
        z = treatments[seed, np.arange(T), actions[seed]][:, columns]  # (T, d): the delivered treatments
        x = np.column_stack([np.ones(T), z])
        precision = np.diag([0.01] + [1.0] * len(columns)) + x.T @ x / scale**2
        info = np.array([0.01 * 77.0] + [0.0] * len(columns)) + x.T @ rewards[seed] / scale**2
        means.append(np.linalg.solve(precision, info))
    return np.array(means)


def _posterior_mean(state_and_records):
    reward = state_and_records[0].reward
    root, info = np.asarray(reward.precision_chol), np.asarray(reward.info)
    return np.array([np.linalg.solve(r @ r.T, i) for r, i in zip(root, info)])


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_values_share_one_program_and_each_plays_as_built_alone(family):
    build, cache = FAMILIES[family]
    a, b = build(0, 1.0), build(2, 2.5)  # another style (same d) and other values
    assert all(f is g for f, g in zip(_functions(a), _functions(b)))
    assert without_params(a) == without_params(b) and hash(without_params(a)) == hash(without_params(b))
    key = jax.random.PRNGKey(3)
    with pytest.raises(TypeError):  # the static policy's init needs its params: never one construction's defaults
        init_state(without_params(a), key, None)
    assert same_leaves(a.init(key).params, a.params) and same_leaves(b.init(key).params, b.params)
    compiled = runner._simulate_batch._cache_size()
    run_a, run_b = _simulate(a), _simulate(b)
    assert runner._simulate_batch._cache_size() == compiled + 1, "the two agents compiled separate programs"
    cache.cache_clear()
    alone = build(2, 2.5)
    assert alone.update is not a.update  # new closures: its own program
    run_alone = _simulate(alone)
    assert same_leaves(run_b, run_alone), "the shared program does not reproduce the agent built alone"
    assert not same_leaves(run_a[1], run_b[1]), "the two agents play identically: the check is vacuous"
    if family in ("po", "fo"):  # the linear reward stage learned on each agent's own column
        for style, scale, run in ((0, 1.0, run_a), (2, 2.5, run_b)):
            np.testing.assert_allclose(_posterior_mean(run), _closed_form_beta([style], run, scale), rtol=1e-9)


def test_ens_fo_values_share_functions():
    # Played through one program by ens_po above: the ensemble functions (and their reading of the
    # columns from the params) are the same code; ens-fo adds the NIW treatment stage, learned from the
    # columns given by the params. Not run here (its NIW draws double the compile time).
    a = ens_fo_gambitts(K, C, [0], **SMALL)
    b = ens_fo_gambitts(K, C, [2], learning_rate=0.02, niw_kappa=3.0, **SMALL)
    assert all(f is g for f, g in zip(_functions(a), _functions(b))) and without_params(a) == without_params(b)
    assert same_leaves(b.init(jax.random.PRNGKey(0)).params, b.params)


def test_init_under_jit_keeps_each_agents_own_params():
    a, b = po_gambitts(DRAWS, [0]), po_gambitts(DRAWS + 1.0, [1], reward_noise_scale=2.0)
    key = jax.random.PRNGKey(0)
    assert same_leaves(jax.jit(a.init)(key).params, a.params)
    assert same_leaves(jax.jit(b.init)(key).params, b.params)


@pytest.mark.parametrize("build_a, build_b", [
    (lambda: po_gambitts(DRAWS, [0]), lambda: po_gambitts(DRAWS, [0, 1])),  # d
    (lambda: po_gambitts(DRAWS, [0]), lambda: po_gambitts(DRAWS, [0], propensity_draws=5)),
    (lambda: po_gambitts(DRAWS, [0]), lambda: po_gambitts(DRAWS, [0], num_draws=2)),
    (lambda: po_gambitts(DRAWS, [0]), lambda: po_gambitts(DRAWS, [0], reward_forgetting="window", reward_window=3)),
    (lambda: fo_gambitts(K, C, [0]), lambda: fo_gambitts(K, C, [0, 2])),
    (lambda: fo_gambitts(K, C, [0]), lambda: fo_gambitts(K, C + 1, [0])),
    (lambda: fo_gambitts(K, C, [0], reward_forgetting="exponential", reward_forgetting_rate=0.9),
     lambda: fo_gambitts(K, C, [0], reward_forgetting="stabilised", reward_forgetting_rate=0.9)),
    (lambda: ens_po_gambitts(DRAWS, [0], **ENSEMBLE), lambda: ens_po_gambitts(DRAWS, [0, 1], **ENSEMBLE)),
    (lambda: ens_po_gambitts(DRAWS, [0], **ENSEMBLE), lambda: ens_po_gambitts(DRAWS, [0], num_draws=2, **ENSEMBLE)),
    (lambda: ens_po_gambitts(DRAWS, [0], **ENSEMBLE),
     lambda: ens_po_gambitts(DRAWS, [0], **{**ENSEMBLE, "propensity_draws": 3})),
    (lambda: ens_fo_gambitts(K, C, [0], **ENSEMBLE), lambda: ens_fo_gambitts(K, C, [0], **{**ENSEMBLE, "mc_draws": 4})),
    (lambda: ens_fo_gambitts(K, C, [0], **ENSEMBLE), lambda: ens_fo_gambitts(K, C, [0], prior_scale=1.0, **ENSEMBLE)),
    (lambda: standard_ts(K), lambda: standard_ts(K, num_cells=C)),
    (lambda: standard_ts(K), lambda: standard_ts(K, propensity_draws=5)),
])
def test_structural_options_give_other_functions(build_a, build_b):
    a, b = build_a(), build_b()
    assert a.update is not b.update and without_params(a) != without_params(b)


def test_standard_ts_values_share_functions():
    a, b = standard_ts(K, num_cells=C), standard_ts(K, num_cells=C, prior_mean=3.0, forgetting=None)
    assert all(f is g for f, g in zip(_functions(a), _functions(b))) and without_params(a) == without_params(b)
    assert same_leaves(b.init(jax.random.PRNGKey(0)).params, b.params)
    rate_a = standard_ts(K, forgetting="exponential", forgetting_rate=0.9)
    assert standard_ts(K, forgetting="exponential", forgetting_rate=0.5).act is rate_a.act


def test_custom_optimizer_is_keyed_by_identity():
    import optax

    sgd = optax.sgd(0.1)
    a = ens_fo_gambitts(K, C, [0], optimizer=sgd, **ENSEMBLE)
    assert ens_fo_gambitts(K, C, [1], optimizer=sgd, **ENSEMBLE).update is a.update
    assert ens_fo_gambitts(K, C, [0], optimizer=optax.sgd(0.1), **ENSEMBLE).update is not a.update
    assert ens_fo_gambitts(K, C, [0], **ENSEMBLE).update is not a.update


def test_forgetting_agents_on_other_columns_share_functions():
    for build in (lambda cols: fo_gambitts(K, C, cols, reward_forgetting="exponential", reward_forgetting_rate=0.9),
                  lambda cols: po_gambitts(DRAWS, cols, reward_forgetting="stabilised", reward_forgetting_rate=0.8)):
        a, b = build([0]), build([1])
        assert all(f is g for f, g in zip(_functions(a), _functions(b)))
        assert a.params.feature_index.tolist() == [0] and b.params.feature_index.tolist() == [1]
