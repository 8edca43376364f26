"""The agent protocol: a policy is three pure functions over an explicit pytree state.

    init(key, params=None) -> state
    act(state, key, context) -> (action, ActInfo)
    update(state, context, action, reward) -> state

All three are jittable; the experiment runner ``jax.vmap``-s them over seeds and ``lax.scan``-s them
over rounds. State is a NamedTuple of arrays, never an object with hidden mutable state.

Hyperparameters are data (Optax's ``inject_hyperparams`` idea). A constructor validates its
arguments and puts every numeric hyperparameter — in the form the policy computes with, e.g. a prior
in information form, a noise variance, Dirichlet concentrations — into ``Policy.params``, a pytree of
arrays. ``init(key, params)`` stores them in the state (``state.params``), and ``act`` / ``update``
read them from there; the functions close over shapes and structural options only (numbers of arms,
features, draws, steps). So one compiled program serves every value of the hyperparameters:

    program = jax.jit(lambda key, params: policy.init(key, params))
    grid = stack_params([build(sigma).params for sigma in sigmas])   # same constructor, same shapes
    states = jax.vmap(program, (None, 0))(key, grid)                 # one compilation, every cell

``init(key)`` (params None) uses the constructor's own ``policy.params``. Two policies may share a
program only when they come from the same constructor with the same structural arguments (the
experiment registry declares which config keys are values: ``registry.VALUE_KEYS``). Because
``Policy.params`` holds arrays, a Policy with params is not hashable: code that passes a policy to
``jax.jit`` as a static argument passes ``without_params(policy)`` and the params as a traced argument.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from structbandits.errors import ValidationError

__all__ = ["ActInfo", "Policy", "init_state", "no_propensity", "stack_params", "without_params"]

State = Any


class ActInfo(NamedTuple):
    """What an agent reports about one decision.

    Attributes
    ----------
    propensity : scalar, the probability with which the agent picked the action it picked
        (exact, or a Monte-Carlo estimate); NaN when the agent does not report one.
    """

    propensity: jax.Array


def no_propensity(dtype=None) -> ActInfo:
    """ActInfo of a decision whose selection probability is not reported: propensity NaN, shape ().

    ``dtype`` None is JAX's default float (float64 only after ``structbandits.configure()``). A function
    rather than a module constant, so the dtype follows the configuration at call time.
    """
    return ActInfo(propensity=jnp.asarray(jnp.nan, dtype=dtype))


class Policy(NamedTuple):
    """A bandit policy as pure functions (Optax / BlackJAX style).

    ``init(key, params=None)`` starts a state holding ``params`` (None: this policy's ``params``).
    ``posterior_draws(state, key, num_draws) -> {site: (num_draws, ...)}``, when a policy has a
    posterior, returns draws of its parameters by site name (``theta`` (n, K, d), ``psi`` (n, L, d),
    ...) for diagnostics (``diagnostics.policy_to_arviz``); None otherwise.
    ``params`` is the pytree of numeric hyperparameters the constructor validated (None for a policy
    without any); see the module docstring.
    """

    init: Callable[..., State]
    act: Callable[[State, jax.Array, jax.Array], tuple[jax.Array, ActInfo]]
    update: Callable[[State, jax.Array, jax.Array, jax.Array], State]
    posterior_draws: Callable[[State, jax.Array, int], dict[str, jax.Array]] | None = None
    params: Any = None


def init_state(policy: Policy, key: jax.Array, params: Any = None) -> State:
    """``policy.init(key, params)``; with params None, ``policy.init(key)``, so a user's policy whose
    ``init`` takes only the key (no hyperparameters as data) runs unchanged."""
    return policy.init(key) if params is None else policy.init(key, params)


def without_params(policy: Policy) -> Policy:
    """``policy`` with ``params`` None: hashable, so it can be a static argument of ``jax.jit``
    (pass the params as a traced argument beside it).

    Where ``policy.init`` wraps a shared initialiser (``init.shared``: ``agents.shared_functions``),
    that one replaces it: it takes the params as a required argument, so policies built on the same
    shared functions give equal static policies (one compiled program), and a program traced without
    params fails instead of holding one construction's defaults."""
    return policy._replace(init=getattr(policy.init, "shared", policy.init), params=None)


def stack_params(params: list[Any]) -> Any:
    """Stack the params of policies built by the same constructor with the same shapes along a new
    leading axis (cells), for ``jax.vmap``."""
    structures = {str(jax.tree.structure(p)) for p in params}
    shapes = {tuple((jnp.shape(leaf), jnp.result_type(leaf)) for leaf in jax.tree.leaves(p)) for p in params}
    if len(structures) != 1 or len(shapes) != 1:
        raise ValidationError("params: expected hyperparameters of one structure and one set of shapes to stack; "
                         f"got {len(structures)} structures and {len(shapes)} shape sets")
    # Strongly typed, so that a Python-float hyperparameter (weak type) and an array one share a program.
    return jax.tree.map(lambda *leaves: jnp.stack([jnp.asarray(leaf, dtype=jnp.result_type(leaf)) for leaf in leaves]),
                        *params)
