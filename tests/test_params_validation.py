"""Wrong-shaped hyperparameters (a policy's ``params``) are refused at the public boundaries.

A user review found that ``batched_simulator``'s function, given a K=4 LinTS's params for a K=5
policy, ran without error and never picked arm 4; other misuses gave raw JAX errors. Here every
misuse must raise ``ValidationError`` naming ``params``, the offending leaf (its key path) and the
expected and actual shapes or types, and correct params must still run, equal bit for bit to the
default-params run where their values are equal, through the same compiled program.

Oracles: the expected shapes and messages are written out by hand from the constructors' documented
shapes (LinTS ``precision_chol`` (K, d, d); standard TS's NIG fields (C, K); the restless prior
(N, S, 2, S)), never computed by the package.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from structbandits.agents import (
    LinTSParams,
    Policy,
    bayes_restless_policy,
    check_params,
    init_state,
    lin_ts,
    stack_params,
    standard_ts,
)
from structbandits.envs import linear_contextual_bandit
from structbandits.envs.rmab.instance import RestlessInstance
from structbandits.errors import ValidationError
from structbandits.experiments import batched_simulator, seed_keys
from structbandits.experiments import runner as runner_module
from structbandits.experiments.restless_runner import simulate_restless, simulate_restless_learning

K, D, HORIZON, SEEDS = 5, 3, 8, 4
ENV = linear_contextual_bandit(K, D, noise_scale=0.5)


def _lints(num_actions=K, dim=D, sigma=1.0, noise=0.5):
    return lin_ts(jnp.zeros(dim), sigma**2 * jnp.eye(dim), noise, num_actions=num_actions)


POLICY = _lints()
KEYS = seed_keys(0, SEEDS)


def _raises(pattern):
    return pytest.raises(ValidationError, match=re.escape(pattern))


@pytest.fixture(scope="module")
def run():
    return batched_simulator(POLICY, ENV, HORIZON)


@pytest.fixture(scope="module")
def default_run(run):
    return run(KEYS)


# --- the misuses the review reported ---------------------------------------------------------------

def test_params_of_another_number_of_arms_are_refused(run):
    # Without a shape check this ran and never picked arm 4 (only the structure matched).
    with _raises("params.prior.precision_chol: expected shape (5, 3, 3) (the policy's params), got shape (4, 3, 3)"):
        run(KEYS, _lints(num_actions=4).params)


def test_params_of_another_dimension_are_refused(run):
    with _raises("params.prior.precision_chol: expected shape (5, 3, 3) (the policy's params), got shape (5, 2, 2)"):
        run(KEYS, _lints(dim=2).params)


def test_a_dict_instead_of_the_params_namedtuple_is_refused(run):
    with _raises("params: expected hyperparameters of the structure of the policy's params; expected "
                 "LinTSParams(prior, noise_var), got dict with keys ['noise_var', 'prior']"):
        run(KEYS, POLICY.params._asdict())


def test_a_nested_structure_difference_names_its_path(run):
    wrong = POLICY.params._replace(prior=tuple(POLICY.params.prior))
    with _raises("params.prior: expected hyperparameters of the structure of the policy's params; expected "
                 "GaussianInfo(precision_chol, info), got tuple of length 2"):
        run(KEYS, wrong)


def test_an_integer_leaf_where_a_float_is_expected_is_refused(run):
    with _raises("params.noise_var: expected a floating dtype (the policy's params), got integer (shape ())"):
        run(KEYS, POLICY.params._replace(noise_var=jnp.asarray(1)))


def test_batched_params_not_repeated_over_the_keys_are_refused(run):
    # 3 cells for 4 keys: was "vmap got inconsistent sizes" from inside the runner.
    cells = stack_params([_lints(sigma=s).params for s in (0.5, 1.0, 2.0)])
    with _raises("params.prior.precision_chol: params_batched=True expects a leading axis of 4 (one entry per key) "
                 "on every leaf, shape (4, 5, 3, 3); got shape (3, 5, 3, 3)"):
        run(KEYS, cells, params_batched=True)


def test_unbatched_params_with_params_batched_are_refused(run):
    with _raises("params.prior.precision_chol: params_batched=True expects a leading axis of 4 (one entry per key) "
                 "on every leaf, shape (4, 5, 3, 3); got shape (5, 3, 3)"):
        run(KEYS, POLICY.params, params_batched=True)


def test_stacked_params_without_params_batched_are_refused(run):
    # Was "too many values to unpack" inside the agent.
    stacked = stack_params([POLICY.params] * SEEDS)
    with _raises("params.prior.precision_chol: expected shape (5, 3, 3) (the policy's params), got shape "
                 "(4, 5, 3, 3); params stacked over a leading axis need params_batched=True"):
        run(KEYS, stacked)


@pytest.mark.parametrize("wrong, message", [
    (_lints(num_actions=4).params, "params.prior.precision_chol: expected shape (5, 3, 3) (the policy's params), "
                                   "got shape (4, 3, 3)"),
    (_lints(dim=2).params, "params.prior.precision_chol: expected shape (5, 3, 3) (the policy's params), "
                           "got shape (5, 2, 2)"),
])
def test_init_state_refuses_params_of_other_shapes(wrong, message):
    with _raises(message):
        init_state(POLICY, jax.random.PRNGKey(0), wrong)


def test_shared_policy_init_refuses_params_of_other_shapes():
    # standard_ts is built on shared functions: its own init(key, params) checks against its defaults.
    policy = standard_ts(4, propensity_draws=0)
    with _raises("params.prior.mean: expected shape (1, 4) (the policy's params), got shape (1, 3)"):
        policy.init(jax.random.PRNGKey(0), standard_ts(3, propensity_draws=0).params)
    with _raises("params: expected hyperparameters of the structure of the policy's params; expected "
                 "StandardTSParams(prior), got dict with keys ['prior']"):
        policy.init(jax.random.PRNGKey(0), policy.params._asdict())


def test_a_policy_without_params_is_not_checked():
    # params None on the policy: nothing to compare with, so whatever init accepts runs.
    policy = Policy(lambda key, params=None: {"params": params}, lambda s, k, x: (0, None), lambda s, x, a, r: s)
    assert init_state(policy, jax.random.PRNGKey(0), {"anything": jnp.ones(7)})["params"]["anything"].shape == (7,)


# --- the restless runners --------------------------------------------------------------------------

def _restless(num_arms):
    groups = np.arange(num_arms) % 2
    rest = np.array([[0.8, 0.2], [0.4, 0.6]])
    act = np.array([[0.3, 0.7], [0.1, 0.9]])
    transitions = np.broadcast_to(np.stack([rest, act], axis=1), (num_arms, 2, 2, 2)).copy()
    instance = RestlessInstance(transitions, np.tile([0.0, 1.0], (num_arms, 1)), groups,
                                np.tile([1.0, 0.0], (num_arms, 1)), horizon=3, budget=1)
    policy = bayes_restless_policy("NoAct", np.ones((num_arms, 2, 2, 2)), groups, max_budget=1)
    return instance, policy


RESTLESS, RESTLESS_POLICY = _restless(4)


@pytest.mark.parametrize("simulate", [
    lambda params: simulate_restless(RESTLESS, RESTLESS_POLICY, jax.random.PRNGKey(0), 2, params=params),
    lambda params: simulate_restless_learning(RESTLESS, RESTLESS_POLICY, jax.random.PRNGKey(0), 2, 2, params=params),
], ids=["simulate_restless", "simulate_restless_learning"])
def test_restless_runners_refuse_params_of_another_number_of_arms(simulate):
    with _raises("params.prior: expected shape (4, 2, 2, 2) (the policy's params), got shape (3, 2, 2, 2)"):
        simulate(_restless(3)[1].params)
    with _raises("params: expected hyperparameters of the structure of the policy's params; expected "
                 "BayesRestlessParams(prior, group_prior, arm_concentration, model, planner), got dict"):
        simulate(RESTLESS_POLICY.params._asdict())


def test_restless_runner_with_equal_params_equals_the_default_run_bit_for_bit():
    key = jax.random.PRNGKey(1)
    default = simulate_restless(RESTLESS, RESTLESS_POLICY, key, 2)
    rebuilt = _restless(4)[1].params  # another construction, equal values
    again = simulate_restless(RESTLESS, RESTLESS_POLICY, key, 2, params=rebuilt)
    for a, b in zip(jax.tree.leaves(default), jax.tree.leaves(again)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# --- correct params still run, through the same program --------------------------------------------

def test_params_of_equal_values_give_the_default_run_bit_for_bit_and_compile_nothing(run, default_run):
    programs = runner_module._simulate_batch._cache_size()
    again = run(KEYS, _lints().params)  # another construction: equal values, other arrays
    assert runner_module._simulate_batch._cache_size() == programs
    for a, b in zip(default_run, again):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_params_of_other_values_run_and_matter(run, default_run):
    other = run(KEYS, _lints(sigma=0.1, noise=2.0).params)
    assert other.action.shape == (SEEDS, HORIZON)
    assert not np.array_equal(np.asarray(other.expected_regret), np.asarray(default_run.expected_regret))


def test_stacked_params_with_the_right_leading_axis_equal_the_default_run(run, default_run):
    stacked = stack_params([_lints().params] * SEEDS)
    batched = run(KEYS, stacked, params_batched=True)
    for a, b in zip(default_run, batched):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# --- the checker itself: metadata only, so abstract values and tracers work -----------------------

def test_check_params_reads_shapes_only_and_runs_under_jit():
    reference = POLICY.params
    abstract = jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(jnp.shape(leaf), jnp.result_type(leaf)), reference)
    assert check_params(abstract, reference) is abstract
    wrong = jax.tree.map(lambda leaf: jax.ShapeDtypeStruct((2,) + jnp.shape(leaf), jnp.result_type(leaf)), reference)
    check_params(wrong, reference, batch_size=2)
    with _raises("settings.prior.precision_chol: params_batched=True expects a leading axis of 3"):
        check_params(wrong, reference, batch_size=3, name="settings")
    # Traced: the error is raised while tracing, naming the leaf.
    with _raises("params.prior.precision_chol: expected shape (5, 3, 3) (the policy's params), got shape (4, 3, 3)"):
        jax.eval_shape(lambda p: check_params(p, reference), _lints(num_actions=4).params)
    jitted = jax.jit(lambda p: check_params(p, reference).noise_var * 2)
    assert float(jitted(reference)) == 0.5


def test_check_params_names_an_extra_or_missing_field():
    reference = LinTSParams(POLICY.params.prior, POLICY.params.noise_var)
    with _raises("params.prior: expected hyperparameters of the structure of the policy's params; expected "
                 "GaussianInfo(precision_chol, info), got None"):
        check_params(reference._replace(prior=None), reference)
    with _raises("params: expected hyperparameters of the structure of the policy's params; expected dict with keys "
                 "['a', 'b'], got dict with keys ['a', 'c']"):
        check_params({"a": 1.0, "c": 2.0}, {"a": 1.0, "b": 2.0})


def test_stack_params_names_the_entry_and_leaf_that_differ():
    good = _lints().params
    with _raises("params[2].prior.precision_chol: expected shape (5, 3, 3) (the policy's params), got shape "
                 "(4, 3, 3)"):
        stack_params([good, good, _lints(num_actions=4).params])
    with _raises("params[1]: expected hyperparameters of the structure of the policy's params; expected "
                 "LinTSParams("):
        stack_params([good, standard_ts(3).params])
    with _raises("params: expected a non-empty list of policies' params to stack, got LinTSParams"):
        stack_params(good)  # one params, not a list of them
    with _raises("params: expected a non-empty list of policies' params to stack, got list (empty)"):
        stack_params([])
    single = good._replace(noise_var=jnp.asarray(good.noise_var, dtype=jnp.float32))
    with _raises("params: expected hyperparameters of one set of shapes and dtypes to stack"):
        stack_params([good, single])  # float32 next to float64 would upcast silently
    stacked = stack_params([good, good])
    assert all(leaf.shape[0] == 2 for leaf in jax.tree.leaves(stacked))
