"""What keeps a warm run's compile time short (issue 20): ``envs.prior_draw``.

An environment's prior draw runs without NumPyro's second check of hyperparameters the builder already
checked, so tracing ``init`` starts no programs of its own (each would be compiled, or loaded from the
persistent cache, once per process), and it draws the same numbers as NumPyro's ``Predictive`` with
validation on.
"""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pytest
from jax import monitoring
from numpyro.distributions.distribution import Distribution
from numpyro.infer import Predictive

from structbandits.envs import linear_contextual_bandit, mixed_effect_bandit, random_walk_bandit
from structbandits.envs.prior_draw import prior_draw
from structbandits.models.linear import linear_bandit
from structbandits.models.mixed_effect import mixed_effect_linear

BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"


def programs_started(function, *args) -> int:
    """How many programs (compiled, or loaded from the persistent cache) ``function(*args)`` starts."""
    events = []

    def listener(name, seconds, **kwargs):
        if name == BACKEND_COMPILE:
            events.append(kwargs.get("fun_name"))

    monitoring.register_event_duration_secs_listener(listener)
    try:
        jax.block_until_ready(function(*args))
    finally:
        monitoring.unregister_event_duration_listener(listener)
    return len(events)


# Shapes no other test uses, so that no eager program of them is in this process's caches yet.
@pytest.mark.parametrize("build", [
    lambda: linear_contextual_bandit(7, 5, prior_scale=1.3),
    lambda: mixed_effect_bandit(11, 3, 4, context_pool=6),
    lambda: random_walk_bandit(9, 5, prior_scale=0.7),
], ids=["linear", "mixed_effect", "random_walk"])
def test_tracing_init_starts_no_programs(build):
    env = build()
    key = jax.random.PRNGKey(0)
    assert programs_started(lambda: jax.eval_shape(env.init, key)) == 0


def test_the_draw_is_numpyros_with_validation_on():
    env = linear_contextual_bandit(4, 3, prior_scale=2.0, noise_scale=0.5)
    mixed = mixed_effect_bandit(6, 2, 3, effect_scale=1.5, action_scale=0.8, context_pool=5, structure_seed=3)
    params = mixed.model.params
    assert Distribution._validate_args  # NumPyro's default: the oracle draws with the checks on
    for seed in range(2):
        key = jax.random.PRNGKey(seed)
        theta = Predictive(linear_bandit, num_samples=1, return_sites=["theta"])(
            key, jnp.zeros((4, 3)), jnp.broadcast_to(4.0 * jnp.eye(3), (4, 3, 3)), 0.5)["theta"][0]
        np.testing.assert_array_equal(env.init(key).theta, theta)
        truth_key, _ = jax.random.split(key)
        draw = Predictive(mixed_effect_linear, num_samples=1, return_sites=["psi", "theta"])(
            truth_key, *(jnp.asarray(params[name]) for name in ("mixing", "effect_mean", "effect_cov", "action_cov")),
            1.0)
        state = mixed.init(key)
        np.testing.assert_array_equal(state.psi, draw["psi"][0])
        np.testing.assert_array_equal(state.theta, draw["theta"][0])


def test_validation_is_restored_after_the_draw_and_after_an_error():
    def program(scale):
        numpyro.sample("x", numpyro.distributions.Normal(0.0, scale))

    draw = prior_draw(Predictive(program, num_samples=1))
    assert Distribution._validate_args
    assert draw(jax.random.PRNGKey(0), -1.0)["x"].shape == (1,)  # unchecked inside the draw
    assert Distribution._validate_args
    with pytest.raises(ValueError, match="invalid scale"):  # and checked again outside it
        Predictive(program, num_samples=1)(jax.random.PRNGKey(0), -1.0)

    def failing(scale):
        raise RuntimeError("the program failed")

    with pytest.raises(RuntimeError, match="the program failed"):
        prior_draw(Predictive(failing, num_samples=1))(jax.random.PRNGKey(0), 1.0)
    assert Distribution._validate_args
