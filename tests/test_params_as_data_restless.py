"""Restless policies' hyperparameters are data: ``tests/params_as_data.py``'s check for ``RestlessContext``.

For every numeric hyperparameter of ``restless_policy`` (γ, the index search's interval and
tolerance, the tie tolerance, the HR risk set) and of ``bayes_restless_policy`` (the Dirichlet prior
under each pooling, κ, the planner's γ), two policies differing only in that value are built and
played for a few rounds on a tiny instance (5 arms, 3 states, 2 groups) by a round loop written here
(not the package's runner). The check asserts that

1. the params have one structure and one set of shapes and dtypes, and differ in value;
2. policy A's functions and policy B's are the same program as functions of the params (jaxpr text
   and captured constants equal) — a value left in a closure shows up as another literal or constant;
3. for a few cases (``RUN_CASES``) also end to end: one jitted program (traced once) runs both,
   policy A's functions given policy B's params reproduce policy B bit for bit, the two values give
   different runs (so the check is not vacuous), and ``init(key)`` without params uses the
   constructor's own.

The oracle is policy B built from scratch by its constructor.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from params_as_data import check_comparable_params, same_leaves, same_program

from structbandits.agents.bayes_restless import RestlessOutcome, bayes_restless_policy
from structbandits.agents.restless import PlannerSettings, RestlessContext, restless_policy
from structbandits.planning.whittle import REFERENCE_SEARCH

GROUPS = np.array([0, 0, 0, 1, 1])
BUDGET = 2
ROUNDS = 5


def _instance():
    """(transitions (5, 3, 2, 3), rewards (5, 3)): acting moves an arm up, resting lets it slide down."""
    rng = np.random.default_rng(7)
    rest = np.array([[0.8, 0.15, 0.05], [0.5, 0.4, 0.1], [0.2, 0.4, 0.4]])
    act = np.array([[0.2, 0.6, 0.2], [0.1, 0.3, 0.6], [0.05, 0.15, 0.8]])
    rows = rng.gamma(50 * np.stack([rest, act], axis=1), size=(len(GROUPS), 3, 2, 3)) + 1e-3
    rewards = np.tile([0.0, 0.5, 1.0], (len(GROUPS), 1)) * rng.uniform(0.5, 1.5, (len(GROUPS), 1))
    return rows / rows.sum(-1, keepdims=True), rewards


TRANSITIONS, REWARDS = _instance()


def _play(policy, params, key):
    """``ROUNDS`` rounds of ``policy`` from ``params``: (actions (T, N), final state without its params)."""
    transitions, rewards = jnp.asarray(TRANSITIONS), jnp.asarray(REWARDS)
    groups = jnp.asarray(GROUPS)
    arms = jnp.arange(len(GROUPS))
    start_key, dynamics_key, init_key, act_key = jax.random.split(key, 4)

    def step(carry, t):
        state, states = carry
        ctx = RestlessContext(states, t, ROUNDS - t, jnp.asarray(BUDGET), transitions, rewards, groups)
        action, _ = policy.act(state, jax.random.fold_in(act_key, t), ctx)
        rows = transitions[arms, states, action.astype(jnp.int32)]
        uniform = jax.random.uniform(jax.random.fold_in(dynamics_key, t), (len(GROUPS),))
        next_states = jnp.minimum((uniform[:, None] > jnp.cumsum(rows, axis=1)[:, :-1]).sum(axis=1), 2)
        state = policy.update(state, ctx, action, RestlessOutcome(rewards[arms, states], next_states))
        return (state, next_states), action

    states = jax.random.randint(start_key, (len(GROUPS),), 0, 3)
    (state, _), actions = jax.lax.scan(step, (policy.init(init_key, params), states), jnp.arange(ROUNDS))
    return actions, state._replace(params=None)


def _program(policy, seed: int):
    """The closed jaxpr of ``_play`` as a function of the params: (text, constants)."""
    closed = jax.make_jaxpr(lambda params, key: _play(policy, params, key))(policy.params, jax.random.PRNGKey(seed))
    return str(closed.jaxpr), [np.asarray(c) for c in closed.consts]


def check_restless_params_are_data(build, value_a, value_b, seed: int = 0, run: bool = False) -> None:
    policy_a, policy_b = build(value_a), build(value_b)
    check_comparable_params(policy_a, policy_b)
    assert same_program(_program(policy_a, seed), _program(policy_b, seed)), \
        "policy A's functions and policy B's differ beyond the params: a value is baked into a closure"
    if not run:  # equal programs give equal runs; the end-to-end run is checked for a few cases
        return

    traces = []

    def run_a(params, key):
        traces.append(1)
        return _play(policy_a, params, key)

    program = jax.jit(run_a)
    key = jax.random.PRNGKey(seed)
    a_with_a = program(policy_a.params, key)
    a_with_b = program(policy_b.params, key)
    assert len(traces) == 1, f"the program was traced {len(traces)} times for two values of the params"
    b_with_b = jax.jit(lambda params, k: _play(policy_b, params, k))(policy_b.params, key)
    assert same_leaves(a_with_b, b_with_b), "policy A's functions with B's params do not reproduce policy B"
    assert not same_leaves(a_with_a, a_with_b), "the two hyperparameter values give the same run: the check is vacuous"
    assert same_leaves(policy_b.init(key).params, policy_b.params), "init(key) does not use the constructor's params"


def _known(name, settings=PlannerSettings(), risk=None):
    return restless_policy(name, len(GROUPS), np.bincount(GROUPS), BUDGET, settings, risk)


def _search(**values):
    return PlannerSettings(search=REFERENCE_SEARCH._replace(**values))


# Also checked end to end (one jitted program for both values, B reproduced bit for bit, the values
# change the run): one index planner, the round-robin policy, one learner.
RUN_CASES = {("MNW-EG", "gamma"), ("HR-RR", "high_risk_states"), ("MNW", "prior/partial")}

# (planner, what, build(value), value_a, value_b). γ reaches the indices of every planner and the
# curves at two call sites (MNW-EG's; MMR's, shared by MNW and the exact allocators); the search's
# numbers reach the indices (one call site for all planners); the tie tolerance has two call sites.
KNOWN_CASES = [
    *[(name, "gamma", lambda v, name=name: _known(name, PlannerSettings(gamma=v)), 0.9999, 0.05)
      for name in ("Opt", "MMR", "MNW-EG", "MNW-exact")],
    ("MMR", "search.tolerance", lambda v: _known("MMR", _search(tolerance=v)), 0.01, 0.9),
    ("Opt", "search.lower", lambda v: _known("Opt", _search(lower=v)), -1.0, 0.9),
    ("MNW", "search.upper", lambda v: _known("MNW", _search(upper=v)), 1.0, -0.9),
    ("Opt", "tie_tolerance", lambda v: _known("Opt", PlannerSettings(tie_tolerance=v)), 1e-4, 10.0),
    ("MNW-EG", "tie_tolerance", lambda v: _known("MNW-EG", PlannerSettings(tie_tolerance=v)), 1e-4, 10.0),
    ("HR-RR", "high_risk_states", lambda v: _known("HR-RR", risk=v), (True, False, False), (False, True, True)),
    ("HR-Rand", "high_risk_states", lambda v: _known("HR-Rand", risk=v), (True, False, False), (False, True, True)),
]


@pytest.mark.parametrize("name, what, build, value_a, value_b", KNOWN_CASES,
                         ids=[f"{c[0]}-{c[1]}" for c in KNOWN_CASES])
def test_known_model_hyperparameters_are_data(name, what, build, value_a, value_b):
    check_restless_params_are_data(build, value_a, value_b, run=(name, what) in RUN_CASES)


def _prior(spread):
    """(5, 3, 2, 3) Dirichlet concentrations: the instance's rows times ``spread``."""
    return TRANSITIONS * spread


def _learner(name, prior, *, pooling, sampling="thompson", kappa=None, settings=PlannerSettings()):
    return bayes_restless_policy(name, prior, GROUPS, sampling=sampling, pooling=pooling, arm_concentration=kappa,
                                 max_budget=BUDGET, settings=settings)


BAYES_CASES = [
    ("MMR", "prior/arm", lambda v: _learner("MMR", _prior(v), pooling="arm"), 1.0, 200.0),
    ("MNW-EG", "prior/group", lambda v: _learner("MNW-EG", _prior(v), pooling="group", sampling="mean"), 0.05, 20.0),
    ("MNW", "prior/partial", lambda v: _learner("MNW", _prior(v), pooling="partial", kappa=3.0), 1.0, 200.0),
    ("Opt", "arm_concentration", lambda v: _learner("Opt", _prior(1.0), pooling="partial", sampling="mean",
                                                    kappa=v), 0.1, 100.0),
    ("MMR", "planner gamma", lambda v: _learner("MMR", _prior(1.0), pooling="arm", sampling="mean",
                                                settings=PlannerSettings(gamma=v)), 0.9999, 0.2),
]


@pytest.mark.parametrize("name, what, build, value_a, value_b", BAYES_CASES,
                         ids=[f"{c[0]}-{c[1]}" for c in BAYES_CASES])
def test_learning_hyperparameters_are_data(name, what, build, value_a, value_b):
    check_restless_params_are_data(build, value_a, value_b, run=(name, what) in RUN_CASES)


def test_the_restless_runner_compiles_once_for_budgets_and_hyperparameter_values():
    from structbandits.envs.rmab.domains import synthetic_domain
    from structbandits.experiments import restless_runner

    instance = synthetic_domain(num_arms=20, budget=2, horizon=4)
    def build(gamma):
        return restless_policy("Opt", 20, instance.group_sizes, 3, PlannerSettings(gamma=gamma))

    key = jax.random.PRNGKey(0)
    restless_runner.simulate_restless(instance, build(0.9999), key, 2)
    compiled = restless_runner._simulate_batch._cache_size()
    other_budget = restless_runner.simulate_restless(instance, build(0.9999), key, 2, budget=3)
    borrowed = restless_runner.simulate_restless(instance, build(0.9999), key, 2, budget=3, params=build(0.05).params)
    assert restless_runner._simulate_batch._cache_size() == compiled  # a new budget and new values: no new program
    own = restless_runner.simulate_restless(instance, build(0.05), key, 2, budget=3)
    assert same_leaves(borrowed, own) and not same_leaves(borrowed, other_budget)


def test_policies_share_functions_across_what_they_ignore():
    # NoAct / Random / HR-* ignore groups and budgets, Opt ignores groups and curves: their functions
    # (and so their compiled programs) are shared; the equitable planners' are not (the curve length
    # and group layout are shapes).
    from structbandits.agents.protocol import without_params
    from structbandits.agents.restless import restless_policy

    risk = np.array([True, False, False])
    for name, extra in (("NoAct", {}), ("Random", {}), ("HR-RR", {"high_risk_states": risk}), ("Opt", {})):
        a = restless_policy(name, 6, [2, 4], 3, **extra)
        b = restless_policy(name, 6, [3, 3], 5, **extra)
        assert without_params(a) == without_params(b), name
    assert without_params(restless_policy("MMR", 6, [2, 4], 3)) != without_params(restless_policy("MMR", 6, [2, 4], 5))
    assert without_params(restless_policy("NoAct", 6, [2, 4], 3)) != without_params(restless_policy("NoAct", 7, [3, 4], 3))
