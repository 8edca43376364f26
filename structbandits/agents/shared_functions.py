"""Policies whose functions are shared by every construction with the same structure.

A constructor that builds its ``act`` / ``update`` / ``posterior_draws`` through an ``lru_cache``-d builder,
keyed only on structural options (shapes, numbers of draws, flags), returns the *same* function objects
for every call that differs only in hyperparameter values (``Policy.params``). ``init(key, params=None)``
cannot be shared so: with ``params`` None it uses the constructor's own params, so it is a small closure
per construction around the shared ``init(key, params)`` (kept as its ``shared`` attribute).

``agents.protocol.without_params`` (the static policy that ``jax.jit`` keys on, e.g. the experiment
runner's ``_simulate_batch``) puts the shared ``init`` back in place of the closure, so two policies built
on the same shared functions give equal static policies and one compiled program serves both. The shared
``init`` requires its params, so a program traced from the static policy without params raises instead of
holding one construction's defaults. ``jax.jit(policy.init)`` itself stays per construction (the closure
compares by identity), so ``init(key)`` under jit is always the policy's own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from structbandits.agents.protocol import Policy, check_params

__all__ = ["shared_policy"]


def shared_policy(init: Callable[[Any, Any], Any], act: Callable, update: Callable, posterior_draws: Callable | None,
                  defaults: Any) -> Policy:
    """A ``Policy`` of shared functions with ``defaults`` as its params.

    ``init(key, params)`` is the shared initialiser (``params`` required); the policy's ``init(key,
    params=None)`` calls it with ``defaults`` when ``params`` is None and keeps it as ``init.shared``.
    """

    def own_init(key, params=None):
        # Shapes and dtypes only, at trace time: the shared program is unchanged.
        return init(key, defaults if params is None else check_params(params, defaults))

    own_init.shared = init
    return Policy(own_init, act, update, posterior_draws, defaults)
