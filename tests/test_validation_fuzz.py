"""Malformed inputs at every public entry point give a ValidationError naming the argument, never a
deeper crash or a silently wrong answer.

Each entry point starts from valid arguments; hypothesis breaks one of them in a way that is
always invalid (a NaN or infinity, an axis of the wrong length, a dropped axis, a negative scale, a
matrix that is not positive definite, probabilities that do not sum to one, a count that is
negative or not an integer, a budget above the number of arms, an empty group, an arm index out of
range) and the call must raise ``ValidationError`` whose message names the broken argument.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from structbandits import ValidationError
from structbandits.agents import hier_ts, lin_ts, lin_ucb, mets, uniform_random
from structbandits.study import OnlineAgent
from structbandits.agents.standard_ts import standard_ts
from structbandits.envs import linear_contextual_bandit, mixed_effect_bandit
from structbandits.experiments import run_experiment
from structbandits.inference import posterior
from structbandits.models import linear_bandit, mixed_effect_linear
from structbandits.planning.equity import mnw_greedy, select_within_groups, top_index_allocation, water_filling
from structbandits.planning.whittle import whittle_indices

K, L, D, N = 3, 2, 2, 5
RNG = np.random.default_rng(0)
SPD = np.array([[1.0, 0.3], [0.3, 0.8]])
KEY = jax.random.PRNGKey(0)
TRANSITIONS = RNG.dirichlet(np.ones(3), size=(4, 3, 2))  # (arms, states, actions, next states)

# name -> (call(**args), valid args, {argument: [mutations]})
ENTRY_POINTS = {
    "lin_ts": (lambda **a: lin_ts(a["prior_mean"], a["prior_cov"], a["noise_scale"], num_actions=a["num_actions"],
                                  propensity_draws=a["propensity_draws"]),
               {"prior_mean": np.zeros((K, D)), "prior_cov": np.stack([SPD] * K), "noise_scale": 0.5,
                "num_actions": K, "propensity_draws": 4},
               {"prior_mean": ["nonfinite", "grow:0", "grow:1"], "prior_cov": ["nonfinite", "grow:0", "grow:2",
                                                                               "not_pd", "asymmetric"],
                "noise_scale": ["nonfinite", "nonpositive"], "num_actions": ["count"],
                "propensity_draws": ["count"]}),
    "lin_ucb": (lambda **a: lin_ucb(a["prior_mean"], a["prior_cov"], a["noise_scale"], delta=a["delta"]),
                {"prior_mean": np.zeros((K, D)), "prior_cov": np.stack([SPD] * K), "noise_scale": 0.5, "delta": 0.1},
                {"prior_mean": ["nonfinite", "grow:0"], "prior_cov": ["not_pd", "grow:1"],
                 "noise_scale": ["nonpositive"], "delta": ["nonfinite", "probability"]}),
    "mets": (lambda **a: mets(a["mixing"], a["effect_mean"], a["effect_cov"], a["action_cov"], a["noise_scale"]),
             {"mixing": RNG.uniform(-1, 1, (K, L)), "effect_mean": np.zeros((L, D)), "effect_cov": 2 * np.eye(L * D),
              "action_cov": np.stack([SPD] * K), "noise_scale": 1.0},
             {"mixing": ["nonfinite", "grow:0", "grow:1", "drop"], "effect_mean": ["nonfinite", "grow:0", "grow:1"],
              "effect_cov": ["nonfinite", "grow:0", "not_pd"], "action_cov": ["nonfinite", "grow:0", "not_pd"],
              "noise_scale": ["nonfinite", "nonpositive"]}),
    "hier_ts": (lambda **a: hier_ts(a["effect_mean"], a["effect_cov"], a["action_cov"], a["noise_scale"],
                                    num_actions=a["num_actions"]),
                {"effect_mean": np.zeros((L, D)), "effect_cov": 2 * np.eye(L * D), "action_cov": np.stack([SPD] * K),
                 "noise_scale": 1.0, "num_actions": K},
                {"effect_mean": ["nonfinite", "grow:1"], "effect_cov": ["not_pd", "grow:1"],
                 "action_cov": ["grow:0", "not_pd"], "noise_scale": ["nonpositive"], "num_actions": ["count"]}),
    "standard_ts": (lambda **a: standard_ts(a["num_actions"], num_cells=a["num_cells"], prior_kappa=a["prior_kappa"],
                                            prior_mean=a["prior_mean"]),
                    {"num_actions": K, "num_cells": 2, "prior_kappa": 5.0, "prior_mean": 1.0},
                    {"num_actions": ["count"], "num_cells": ["count"], "prior_kappa": ["nonpositive", "nonfinite"],
                     "prior_mean": ["nonfinite"]}),
    "uniform_random": (lambda **a: uniform_random(a["num_actions"]), {"num_actions": K}, {"num_actions": ["count"]}),
    "posterior(linear_bandit)": (
        lambda **a: posterior(linear_bandit, a, num_draws=10),
        {"prior_mean": np.zeros((K, D)), "prior_cov": np.stack([SPD] * K), "noise_scale": 0.5,
         "contexts": RNG.normal(size=(N, D)), "actions": RNG.integers(0, K, N), "rewards": RNG.normal(size=N)},
        {"prior_mean": ["nonfinite", "grow:1"], "prior_cov": ["not_pd", "grow:0"], "noise_scale": ["nonpositive"],
         "contexts": ["nonfinite", "grow:0", "grow:1", "drop"], "actions": ["arm", "grow:0"],
         "rewards": ["nonfinite", "grow:0"]}),
    "posterior(mixed_effect_linear)": (
        lambda **a: posterior(mixed_effect_linear, a, num_draws=10),
        {"mixing": RNG.uniform(-1, 1, (K, L)), "effect_mean": np.zeros((L, D)), "effect_cov": 2 * np.eye(L * D),
         "action_cov": np.stack([SPD] * K), "noise_scale": 1.0, "contexts": RNG.normal(size=(N, D)),
         "actions": RNG.integers(0, K, N), "rewards": RNG.normal(size=N)},
        {"mixing": ["grow:0", "grow:1"], "effect_mean": ["grow:1"], "effect_cov": ["not_pd", "grow:0"],
         "action_cov": ["grow:0"], "contexts": ["grow:1", "nonfinite"], "actions": ["arm"], "rewards": ["grow:0"]}),
    "linear_contextual_bandit": (
        lambda **a: linear_contextual_bandit(a["num_actions"], a["num_features"], prior_scale=a["prior_scale"],
                                             noise_scale=a["noise_scale"]),
        {"num_actions": K, "num_features": D, "prior_scale": 1.0, "noise_scale": 0.5},
        {"num_actions": ["count", "huge"], "num_features": ["count", "huge"], "prior_scale": ["nonpositive", "nonfinite"],
         "noise_scale": ["nonfinite"]}),
    "mixed_effect_bandit": (
        lambda **a: mixed_effect_bandit(a["num_actions"], a["num_effects"], a["num_features"],
                                        context_pool=a["context_pool"], effect_scale=a["effect_scale"]),
        {"num_actions": K, "num_effects": L, "num_features": D, "context_pool": 4, "effect_scale": 1.0},
        {"num_actions": ["count", "huge"], "num_effects": ["count"], "num_features": ["count"],
         "context_pool": ["count", "huge"], "effect_scale": ["nonpositive"]}),
    "water_filling": (lambda **a: water_filling(a["curves"], a["sizes"], a["budget"]),
                      {"curves": np.cumsum(RNG.uniform(0, 1, (3, 4)), axis=1), "sizes": np.array([3, 2, 4]), "budget": 4},
                      {"curves": ["nonfinite", "grow:0"], "sizes": ["empty_group", "grow:0", "non_integer_entry"],
                       "budget": ["count", "above"]}),
    "mnw_greedy": (lambda **a: mnw_greedy(a["curves"], a["caps"], a["budget"]),
                   {"curves": 1 + np.cumsum(RNG.uniform(0, 1, (3, 4)), axis=1), "caps": np.array([3, 2, 3]), "budget": 3},
                   {"curves": ["nonfinite", "drop"], "caps": ["empty_group", "grow:0"], "budget": ["count", "above"]}),
    "top_index_allocation": (lambda **a: top_index_allocation(a["indices"], a["groups"], a["budget"], KEY),
                             {"indices": RNG.normal(size=6), "groups": np.array([0, 0, 1, 1, 2, 2]), "budget": 3},
                             {"indices": ["nonfinite", "grow:0"], "groups": ["arm", "grow:0"], "budget": ["count", "above"]}),
    "select_within_groups": (lambda **a: select_within_groups(a["indices"], a["groups"], a["budgets"], KEY),
                             {"indices": RNG.normal(size=6), "groups": np.array([0, 0, 1, 1, 2, 2]),
                              "budgets": np.array([1, 2, 0])},
                             {"indices": ["nonfinite"], "groups": ["grow:0"], "budgets": ["non_integer_entry", "grow:0",
                                                                                          "negative_entry", "above"]}),
    "whittle_indices": (lambda **a: whittle_indices(a["transitions"], a["rewards"], a["states"], a["horizon"],
                                                    a["gamma"]),
                        {"transitions": TRANSITIONS, "rewards": RNG.uniform(size=(4, 3)), "states": np.array([0, 2, 1, 0]),
                         "horizon": 3, "gamma": 0.9},
                        {"transitions": ["nonfinite", "unnormalised", "negative_entry", "grow:1"],
                         "rewards": ["nonfinite", "grow:0"], "states": ["arm", "grow:0"], "horizon": ["count"],
                         "gamma": ["probability", "nonfinite"]}),
    "run_experiment": (lambda **a: run_experiment({"random": uniform_random(K)}, linear_contextual_bandit(K, D),
                                                  horizon=a["horizon"], num_seeds=a["num_seeds"], seed=a["seed"],
                                                  progress=False),
                       {"horizon": 3, "num_seeds": 2, "seed": 0},
                       {"horizon": ["count", "huge"], "num_seeds": ["count"], "seed": ["count"]}),
}


def _upper(name: str, args: dict) -> int:
    """The first out-of-range index for an index argument (arms for actions, states for states)."""
    return K if name == "actions" else args["transitions"].shape[1]


@st.composite
def broken_arguments(draw, entry: str):
    call, valid, mutations = ENTRY_POINTS[entry]
    name = draw(st.sampled_from(sorted(mutations)))
    kind = draw(st.sampled_from(mutations[name]))
    args = {key: (value.copy() if isinstance(value, np.ndarray) else value) for key, value in valid.items()}
    value = args[name]
    if kind == "nonfinite":
        array = np.array(value, dtype=float)
        flat = array.reshape(-1)
        flat[draw(st.integers(0, flat.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        value = array
    elif kind.startswith("grow:"):
        axis = int(kind.split(":")[1])
        value = np.concatenate([value, np.take(value, [-1], axis=axis)], axis=axis)
    elif kind == "drop":
        value = value[0]
    elif kind == "nonpositive":
        value = draw(st.sampled_from([0.0, -abs(value) - 1.0, -1e-300]))
    elif kind == "probability":
        value = draw(st.sampled_from([0.0, 1.5, -0.1, 2.0]))
    elif kind == "not_pd":
        eigenvalues, vectors = np.linalg.eigh(value)
        eigenvalues[..., 0] = -draw(st.floats(1e-3, 10.0))
        value = (vectors * eigenvalues[..., None, :]) @ np.swapaxes(vectors, -1, -2)
    elif kind == "asymmetric":
        value = value.copy()
        value[..., 0, -1] += 0.5
    elif kind == "count":
        value = draw(st.sampled_from([-1, -10**9, 2.5, "3", True, 1e300, 2**64]))
    elif kind == "huge":
        value = draw(st.sampled_from([10**12, 2**62, 2**70]))
    elif kind == "above":
        if name == "budgets":
            value = value.copy()
            value[0] = np.bincount(args["groups"])[0] + 1
        else:
            value = draw(st.integers(100, 10**6))
    elif kind == "arm":  # an index out of range (or, for group labels, negative or fractional)
        bad = [-1, 0.5] if name == "groups" else [-1, _upper(name, args)]
        value = value.astype(float) if name == "groups" else value.copy()
        value[draw(st.integers(0, value.size - 1))] = draw(st.sampled_from(bad))
    elif kind == "empty_group":
        value = value.copy()
        value[draw(st.integers(0, value.size - 1))] = 0
    elif kind == "non_integer_entry":
        value = value.astype(float)
        value[0] += 0.5
    elif kind == "negative_entry":
        value = np.array(value, dtype=float if value.dtype.kind == "f" else value.dtype)
        value.reshape(-1)[0] = -abs(value.reshape(-1)[0]) - 0.1 if value.dtype.kind == "f" else -1
    elif kind == "unnormalised":
        value = value.copy()
        value.reshape(-1, value.shape[-1])[draw(st.integers(0, value.size // value.shape[-1] - 1))] *= 1.001
    else:  # pragma: no cover - a typo in the table above
        raise AssertionError(kind)
    args[name] = value
    return name, kind, args


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_malformed_input_is_a_validation_error_naming_the_argument(entry, data):
    call = ENTRY_POINTS[entry][0]
    name, kind, args = data.draw(broken_arguments(entry), label="broken")
    with pytest.raises(ValidationError) as raised:
        call(**args)
    message = str(raised.value)
    assert "expected" in message, message
    # it names the broken argument, or the argument it disagrees with
    assert any(word in message for word in ENTRY_POINTS[entry][1]), f"{kind} of {name}: {message}"


def test_valid_baselines_are_accepted(tmp_path):
    """The oracle of the suite above: the unbroken arguments are valid, so each error is the mutation's."""
    for entry, (call, valid, _) in ENTRY_POINTS.items():
        if entry.startswith(("posterior", "run_experiment")):
            continue  # compiled and checked by their own tests
        call(**{key: (value.copy() if isinstance(value, np.ndarray) else value) for key, value in valid.items()})


def test_online_agent_rejects_malformed_contexts_and_rewards(tmp_path):
    agent = OnlineAgent(uniform_random(K), key=0, log_dir=tmp_path, name="random")
    decision = agent.select(np.zeros(D))

    @settings(max_examples=40, deadline=None)
    @given(st.one_of(st.just(np.nan), st.just(np.inf), st.just("x"), st.lists(st.floats(), min_size=1, max_size=3)))
    def bad_reward(reward):
        with pytest.raises(ValidationError, match="reward"):
            agent.observe(decision.decision_id, reward)

    @settings(max_examples=40, deadline=None)
    @given(st.one_of(st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=4).filter(lambda v: len(v) != D),
                     st.lists(st.sampled_from([np.nan, np.inf, -np.inf]), min_size=D, max_size=D),
                     st.just({"x": 1.0}), st.just("text")))
    def bad_context(context):
        with pytest.raises(ValidationError, match="context"):
            agent.select(context)

    bad_reward()
    bad_context()
    assert agent.num_decisions == 1 and agent.pending == {0: decision.action}  # nothing half-applied
