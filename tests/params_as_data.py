"""A shared check that a policy's hyperparameters are data (the agents package docstring).

``check_params_are_data(build, value_a, value_b, context, reward)`` builds two policies that differ
only in a hyperparameter value and asserts that

1. their ``params`` have one structure and one set of shapes and dtypes, and differ in value;
2. policy A's functions and policy B's functions are the *same program* as functions of the params:
   the jaxpr of a few simulated rounds (``play``, params as an argument) is equal as text and in every
   captured constant. A value baked into a closure shows up as a different literal or constant, so
   A's functions given B's params would play like A. Equal programs need no compiling to compare, so
   the check costs a trace, not a compilation;
3. with ``run=True`` also, end to end: one jitted program (traced once) runs both params, A's
   functions with B's params reproduce policy B's own functions bit for bit, the two values give
   different runs (so the check is not vacuous), and ``init(key)`` uses the constructor's params.

The oracle is policy B itself, built from scratch by its constructor: no package code computes the
expected value.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def play(policy, params, key: jax.Array, context: Callable, reward: Callable, rounds: int):
    """``rounds`` rounds of ``policy`` from ``params``: (actions (T,), propensities (T,), final state
    without its params). ``context(key) -> context``; ``reward(key, context, action) -> scalar``."""
    init_key, round_key = jax.random.split(key)

    def step(state, t):
        context_key, act_key, reward_key = jax.random.split(jax.random.fold_in(round_key, t), 3)
        x = context(context_key)
        action, info = policy.act(state, act_key, x)
        state = policy.update(state, x, action, reward(reward_key, x, action))
        return state, (action, info.propensity)

    state, (actions, propensities) = jax.lax.scan(step, policy.init(init_key, params), jnp.arange(rounds))
    inner = state._replace(params=None) if hasattr(state, "_replace") and "params" in state._fields else state
    return actions, propensities, inner


def same_leaves(a, b) -> bool:
    """Whether two pytrees have equal leaves (NaN equal to NaN)."""
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(leaves_a) == len(leaves_b) and all(
        np.array_equal(np.asarray(x), np.asarray(y), equal_nan=True) for x, y in zip(leaves_a, leaves_b))


def program(policy, context: Callable, reward: Callable, rounds: int, seed: int = 0):
    """The closed jaxpr of ``play`` as a function of the params: (text, constants as NumPy arrays)."""
    closed = jax.make_jaxpr(lambda params, key: play(policy, params, key, context, reward, rounds))(
        policy.params, jax.random.PRNGKey(seed))
    return str(closed.jaxpr), [np.asarray(c) for c in closed.consts]


def same_program(a, b) -> bool:
    (text_a, consts_a), (text_b, consts_b) = a, b
    return text_a == text_b and len(consts_a) == len(consts_b) and all(
        x.shape == y.shape and x.dtype == y.dtype and np.array_equal(x, y, equal_nan=True)
        for x, y in zip(consts_a, consts_b))


def check_comparable_params(policy_a, policy_b) -> None:
    """Both policies have params, of one structure and one set of shapes and dtypes, differing in value."""
    assert policy_a.params is not None and policy_b.params is not None, "the constructor sets no params"
    assert jax.tree.structure(policy_a.params) == jax.tree.structure(policy_b.params)
    shapes = [jax.tree.map(lambda leaf: (jnp.shape(leaf), jnp.result_type(leaf)), p.params)
              for p in (policy_a, policy_b)]
    assert shapes[0] == shapes[1], f"params shapes differ: {shapes}"
    assert not same_leaves(policy_a.params, policy_b.params), "the two values give identical params"


def check_params_are_data(build: Callable[[Any], Any], value_a: Any, value_b: Any, context: Callable,
                          reward: Callable, *, rounds: int = 8, seed: int = 0, run: bool = False) -> None:
    policy_a, policy_b = build(value_a), build(value_b)
    check_comparable_params(policy_a, policy_b)
    assert same_program(program(policy_a, context, reward, rounds, seed), program(policy_b, context, reward, rounds, seed)), \
        "policy A's functions and policy B's differ beyond the params: a value is baked into a closure"
    if not run:
        return

    traces = []

    def run_a(params, key):
        traces.append(1)
        return play(policy_a, params, key, context, reward, rounds)

    jitted = jax.jit(run_a)
    key = jax.random.PRNGKey(seed)
    a_with_a = jitted(policy_a.params, key)
    a_with_b = jitted(policy_b.params, key)
    assert len(traces) == 1, f"the program was traced {len(traces)} times for two values of the params"
    b_with_b = jax.jit(lambda params, k: play(policy_b, params, k, context, reward, rounds))(policy_b.params, key)
    assert same_leaves(a_with_b, b_with_b), "policy A's functions with B's params do not reproduce policy B"
    assert not same_leaves(a_with_a, a_with_b), "the two hyperparameter values give the same run: the check is vacuous"
    # init(key) without params uses the constructor's own
    default_b = jax.jit(lambda k: play(policy_b, None, k, context, reward, rounds))(key)
    np.testing.assert_array_equal(np.asarray(default_b[0]), np.asarray(b_with_b[0]))
