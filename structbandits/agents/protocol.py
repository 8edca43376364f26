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

__all__ = ["ActInfo", "Policy", "check_params", "init_state", "no_propensity", "stack_params", "without_params"]

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

    ``init(key, params=None)`` starts a state holding ``params`` (None: this policy's ``params``). Most
    constructors' ``init`` does not check the shapes of given ``params``: call ``init_state(policy, key,
    params)`` (as the runners do), which checks them against ``policy.params`` (``check_params``).
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
    ``init`` takes only the key (no hyperparameters as data) runs unchanged. Where both ``params`` and
    ``policy.params`` are given, ``params`` must match the structure, shapes and dtype kinds of
    ``policy.params`` (``check_params``; ValidationError naming ``params`` otherwise)."""
    if params is None:
        return policy.init(key)
    if policy.params is not None:
        check_params(params, policy.params)
    return policy.init(key, params)


def _kind(dtype) -> str:
    """The dtype's kind as the checks compare it: bool, integer, floating, complex, key (or its name)."""
    for kind, parent in (("bool", jnp.bool_), ("integer", jnp.integer), ("floating", jnp.floating),
                         ("complex", jnp.complexfloating), ("key", jax.dtypes.prng_key)):
        if jnp.issubdtype(dtype, parent):
            return kind
    return str(dtype)


def _shape_and_kind(leaf) -> tuple[tuple[int, ...], str | None]:
    """A leaf's shape and dtype kind from its metadata only (arrays, tracers, ShapeDtypeStructs, Python
    numbers); no values are read. Kind None where the leaf has no numeric dtype (then it is not compared)."""
    shape = getattr(leaf, "shape", None)
    dtype = getattr(leaf, "dtype", None)
    try:
        shape = tuple(shape) if shape is not None else tuple(jnp.shape(leaf))
        return shape, _kind(dtype if dtype is not None else jnp.result_type(leaf))
    except (TypeError, ValueError):
        return tuple(shape or ()), None


def _describe(node) -> str:
    """A pytree node for a message: the type name with its fields, keys or length; "a leaf (type)" for a leaf."""
    if node is None:
        return "None"
    treedef = jax.tree.structure(node)
    if jax.tree_util.treedef_is_leaf(treedef):
        return f"a leaf ({type(node).__name__})"
    kind, aux = treedef.node_data()
    if hasattr(node, "_fields"):
        return f"{kind.__name__}({', '.join(node._fields)})"
    if isinstance(node, dict):
        return f"dict with keys {sorted(node, key=str)}"
    if isinstance(node, (tuple, list)):
        return f"{kind.__name__} of length {len(node)}"
    return kind.__name__ if aux is None else f"{kind.__name__} {aux}"


def _structure_difference(params: Any, reference: Any, path: tuple = ()) -> tuple[tuple, str] | None:
    """(key path, description) of the first node where ``params``' pytree structure departs from
    ``reference``'s, or None where the structures are equal."""
    got, expected = jax.tree.structure(params), jax.tree.structure(reference)
    if got == expected:
        return None
    if got.node_data() != expected.node_data() or jax.tree_util.treedef_is_leaf(got) \
            or jax.tree_util.treedef_is_leaf(expected):
        return path, f"expected {_describe(reference)}, got {_describe(params)}"

    def children(node):  # one level of the tree, with the children's keys
        return jax.tree_util.tree_flatten_with_path(node, is_leaf=lambda child: child is not node)[0]

    for (key, got_child), (_, expected_child) in zip(children(params), children(reference)):
        difference = _structure_difference(got_child, expected_child, path + key)
        if difference is not None:
            return difference
    return path, f"expected {_describe(reference)}, got {_describe(params)}"


def check_params(params: Any, reference: Any, *, batch_size: int | None = None, name: str = "params") -> Any:
    """Check that ``params`` are hyperparameters of the kind of ``reference`` (a policy's ``params``).

    Only metadata is read (pytree structure, leaf shapes and dtypes), never values, so ``params`` may
    be arrays, tracers or ``jax.ShapeDtypeStruct`` s and the check may run while a program is traced.

    Parameters
    ----------
    params : the pytree to check.
    reference : the pytree it must match, e.g. ``policy.params``.
    batch_size : None: every leaf has the reference leaf's shape. S: every leaf has a leading axis of S
        in front of it, (S, *reference shape), as the runners' ``params_batched=True`` takes (one entry
        per key).
    name : the argument named in the error.

    Returns
    -------
    ``params`` unchanged.

    Raises
    ------
    ValidationError, naming ``name`` and the offending leaf (``jax.tree_util.keystr`` path), where the
    structures differ (the node's expected and actual type, fields or keys), a leaf's shape differs
    (expected vs got), a leaf lacks the leading batch axis, or a leaf's dtype kind differs (bool,
    integer, floating, complex).
    """
    difference = _structure_difference(params, reference)
    if difference is not None:
        path, what = difference
        raise ValidationError(f"{name}{jax.tree_util.keystr(path)}: expected hyperparameters of the structure of "
                              f"the policy's params; {what}")
    batch = () if batch_size is None else (int(batch_size),)
    got_leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    for (path, leaf), expected_leaf in zip(got_leaves, jax.tree.leaves(reference)):
        where = f"{name}{jax.tree_util.keystr(path)}"
        (shape, kind), (expected_shape, expected_kind) = _shape_and_kind(leaf), _shape_and_kind(expected_leaf)
        expected_shape = batch + expected_shape
        if shape != expected_shape:
            if batch:
                raise ValidationError(f"{where}: params_batched=True expects a leading axis of {batch[0]} (one entry "
                                      f"per key) on every leaf, shape {expected_shape}; got shape {shape}")
            stacked = len(shape) == len(expected_shape) + 1 and shape[1:] == expected_shape
            raise ValidationError(f"{where}: expected shape {expected_shape} (the policy's params), got shape {shape}"
                                  + ("; params stacked over a leading axis need params_batched=True (runners) or "
                                     "jax.vmap" if stacked else ""))
        if kind is not None and expected_kind is not None and kind != expected_kind:
            raise ValidationError(f"{where}: expected a {expected_kind} dtype (the policy's params), got {kind} "
                                  f"(shape {shape})")
    return params


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
    leading axis (cells), for ``jax.vmap``. A ``ValidationError`` names the first entry and leaf that
    differ from ``params[0]`` (``check_params``), or a leaf whose dtype differs."""
    if not isinstance(params, (list, tuple)) or hasattr(params, "_fields") or not params:  # a NamedTuple is one
        raise ValidationError(f"params: expected a non-empty list of policies' params to stack, got "
                              f"{type(params).__name__}{'' if params else ' (empty)'}")
    for i, entry in enumerate(params[1:], start=1):
        check_params(entry, params[0], name=f"params[{i}]")
    shapes = {tuple((jnp.shape(leaf), jnp.result_type(leaf)) for leaf in jax.tree.leaves(p)) for p in params}
    if len(shapes) != 1:
        raise ValidationError("params: expected hyperparameters of one set of shapes and dtypes to stack "
                              f"(params[0]'s); got {len(shapes)} different sets (a leaf's dtype differs)")
    # Strongly typed, so that a Python-float hyperparameter (weak type) and an array one share a program.
    return jax.tree.map(lambda *leaves: jnp.stack([jnp.asarray(leaf, dtype=jnp.result_type(leaf)) for leaf in leaves]),
                        *params)
