"""The registry's VALUE_KEYS: keys that change only Policy.params, so a sweep over them compiles once.

Oracle: for every agent kind and every declared value key, two policies built from scratch with two
values of that key must give the *same program* as a function of the params — the jaxpr of one
simulated round (``runner.simulate_seed`` with the params as an argument) must be equal as text and
in every captured constant. A value baked into a closure shows up as a different literal or constant
(planted: LinTS's noise variance read from the closure fails it; a structural key — ``factored``,
``propensity_draws`` — is shown to fail it too). Then a sweep over value keys is checked to compile
nothing new for new values.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from structbandits.experiments import load_sweep, run_sweep
from structbandits.experiments.registry import AGENTS, ENVIRONMENTS, VALUE_KEYS
from structbandits.experiments.runner import simulate_seed

SMALL_ENVS = {
    "linear": lambda: ENVIRONMENTS["linear"](num_actions=3, num_features=2, noise_scale=0.5),
    "mixed_linear": lambda: ENVIRONMENTS["mixed_effect"](num_actions=4, num_effects=2, num_features=2, context_pool=5),
    "mixed_logistic": lambda: ENVIRONMENTS["mixed_effect"](num_actions=4, num_effects=2, num_features=2, context_pool=5,
                                                           rewards="logistic"),
}
ENV_OF = {"lints": "linear", "lints-matched": "linear", "lints-nig": "linear", "linucb-matched": "mixed_linear", "random": "linear",
          "mets": "mixed_linear", "hierts": "mixed_linear", "mets-glm": "mixed_logistic",
          "hierts-glm": "mixed_logistic", "glmts-matched": "mixed_logistic"}
# Two values of each value key (the first differs from the builder's default).
VALUES = {"sigma0": (0.5, 2.0), "prior_mean": (0.3, -1.0), "noise_scale": (0.7, 2.0), "delta": (0.05, 0.2),
          "effect_scale": (0.5, 3.0), "action_scale": (0.5, 2.0), "noise_alpha": (3.0, 5.0), "noise_beta": (0.5, 2.0),
          "forgetting_rate": (0.5, 0.9), "effect_forgetting_rate": (0.5, 0.9)}
HORIZON = 3


def build(kind, env, **settings):
    builder = AGENTS[kind]
    extra = {"horizon": HORIZON} if "horizon" in builder.__code__.co_varnames else {}
    if {"forgetting_rate", "effect_forgetting_rate"} & set(settings):  # a rate is a value of a forgetting agent
        extra["forgetting"] = "exponential"
    return builder(env, **extra, **settings)


def program(policy, env):
    """The closed jaxpr of a short simulation as a function of (key, params): (text, constants)."""
    closed = jax.make_jaxpr(lambda key, params: simulate_seed(policy, env, key, HORIZON, params))(
        jax.random.PRNGKey(0), policy.params)
    return str(closed.jaxpr), [np.asarray(c) for c in closed.consts]


def same_program(a, b) -> bool:
    (text_a, consts_a), (text_b, consts_b) = a, b
    return text_a == text_b and len(consts_a) == len(consts_b) and all(
        x.shape == y.shape and np.array_equal(x, y, equal_nan=True) for x, y in zip(consts_a, consts_b))


def test_every_agent_kind_declares_its_value_keys():
    assert set(VALUE_KEYS) == set(AGENTS) == set(ENV_OF)
    for kind, keys in VALUE_KEYS.items():
        assert keys <= set(AGENTS[kind].__code__.co_varnames), kind
        assert keys <= set(VALUES), kind


CASES = [(kind, key) for kind, keys in sorted(VALUE_KEYS.items()) for key in sorted(keys)]


@pytest.mark.parametrize("kind,key", CASES)
def test_a_value_key_changes_only_the_params(kind, key):
    env = SMALL_ENVS[ENV_OF[kind]]()
    a, b = (build(kind, env, **{key: value}) for value in VALUES[key])
    assert not all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params))), \
        f"{kind}.{key}: the two values give the same params"
    assert same_program(program(a, env), program(b, env)), f"{kind}.{key} changes the compiled program"


@pytest.mark.parametrize("kind,key,values", [("mets", "factored", (False, True)),
                                             ("lints", "propensity_draws", (0, 4))])
def test_a_structural_key_changes_the_program(kind, key, values):
    # The check above can fail: a key that is not a value key gives another program.
    env = SMALL_ENVS[ENV_OF[kind]]()
    a, b = (build(kind, env, **{key: value}) for value in values)
    assert not same_program(program(a, env), program(b, env))


SWEEP = """name = "values"
horizon = 5
seeds = 2
[envs.small]
kind = "linear"
num_actions = 3
num_features = 2
[agents.lints]
kind = "lints"
"""


def test_a_sweep_over_value_keys_compiles_nothing_for_new_values(tmp_path):
    from jax import monitoring

    config = tmp_path / "values.toml"
    config.write_text(SWEEP)
    compiled = []
    # A program is compiled, or loaded from the suite's persistent compilation cache (tests/conftest.py).
    monitoring.register_event_duration_secs_listener(
        lambda name, seconds, **_: compiled.append(name) if name == "/jax/core/compile/backend_compile_duration" else None)
    monitoring.register_event_listener(
        lambda name, **_: compiled.append(name) if name == "/jax/compilation_cache/cache_hits" else None)
    first = run_sweep(load_sweep(config, grid=["agents.lints.sigma0=0.5,2", "agents.lints.noise_scale=0.5,1"]),
                      tmp_path / "a", progress=False)
    before = len(compiled)
    second = run_sweep(load_sweep(config, grid=["agents.lints.sigma0=0.25,4", "agents.lints.noise_scale=0.3,3"]),
                       tmp_path / "b", progress=False)
    assert before > 0 and len(compiled) == before, f"new values compiled {len(compiled) - before} programs"
    # ... and the values were used: different priors, different regret.
    regret = [r.dataset["final_cumulative_regret"].sel(agent="lints").values for r in (first, second)]
    assert not np.array_equal(regret[0], regret[1])


def test_a_vmapped_grid_of_params_plays_each_cell_as_its_own_policy_does():
    # The README's example: three LinTS priors stacked and vmapped over cells x seeds in one program
    # must reproduce each policy run alone with its own functions and constants.
    from structbandits.agents import lin_ts, stack_params
    from structbandits.envs import linear_contextual_bandit
    from structbandits.experiments import batched_simulator, seed_keys

    env = linear_contextual_bandit(num_actions=4, num_features=3, noise_scale=0.5)
    policies = [lin_ts(jnp.zeros(3), s**2 * jnp.eye(3), 0.5, num_actions=4) for s in (0.1, 1.0, 10.0)]
    seeds, horizon = 3, 12
    grid = stack_params([p.params for p in policies])
    params = jax.tree.map(lambda leaf: jnp.repeat(leaf, seeds, axis=0), grid)
    keys = jnp.tile(seed_keys(0, seeds), (3, 1))
    together = batched_simulator(policies[0], env, horizon)(keys, params, params_batched=True)
    for cell, policy in enumerate(policies):
        alone = batched_simulator(policy, env, horizon)(seed_keys(0, seeds))
        rows = slice(cell * seeds, (cell + 1) * seeds)
        np.testing.assert_array_equal(np.asarray(together.action[rows]), np.asarray(alone.action))
        np.testing.assert_allclose(np.asarray(together.expected_regret[rows]), np.asarray(alone.expected_regret),
                                   rtol=0, atol=1e-12)
    # The priors matter: the cells' decisions differ.
    assert not np.array_equal(np.asarray(together.action[:seeds]), np.asarray(together.action[-seeds:]))
