"""The components a config file can name: environment kinds and agent kinds.

Each kind is a builder function whose keyword arguments are exactly the keys its config table
accepts (besides ``kind``); the annotations give the types and the defaults are the documented
defaults. Agent builders receive the environment first, so that arm counts and context sizes come
from the environment instead of being repeated in every agent table.

Adding a kind: write a builder here and add it to ``ENVIRONMENTS`` or ``AGENTS``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp

from structbandits.agents import Policy, lin_ts, uniform_random
from structbandits.envs import Environment, linear_contextual_bandit
from structbandits.errors import check_positive

__all__ = ["AGENTS", "ENVIRONMENTS"]


def linear_env(num_actions: int = 10, num_features: int = 5, prior_scale: float = 1.0,
               noise_scale: float = 1.0) -> Environment:
    """Synthetic linear contextual bandit, θ_a ~ N(0, prior_scale² I), contexts ~ U[-1, 1]^d."""
    return linear_contextual_bandit(num_actions, num_features, prior_scale=prior_scale, noise_scale=noise_scale)


def lints_agent(env: Environment, sigma0: float = 1.0, prior_mean: float = 0.0, noise_scale: float = 1.0,
                propensity_draws: int = 0) -> Policy:
    """Linear TS with prior N(prior_mean·1, sigma0² I) per arm and known noise noise_scale."""
    (d,) = env.context_shape
    check_positive("sigma0", sigma0)
    return lin_ts(jnp.full(d, prior_mean), sigma0**2 * jnp.eye(d), noise_scale,
                  num_actions=env.num_actions, propensity_draws=propensity_draws)


def random_agent(env: Environment) -> Policy:
    """Uniform-random baseline."""
    return uniform_random(env.num_actions)


ENVIRONMENTS: dict[str, Callable[..., Environment]] = {"linear": linear_env}
AGENTS: dict[str, Callable[..., Policy]] = {"lints": lints_agent, "random": random_agent}
