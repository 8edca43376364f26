"""Thompson sampling for any NumPyro reward program: declare the model, get a policy.

The program is called as ``model(contexts=..., actions=..., rewards=...)`` with a leading round
axis on each argument (contexts may be any pytree of arrays), samples its parameters as latent
sites and the reward as an observed site (``reward_site``, default "reward"); hyperparameters are
bound beforehand, e.g. with ``functools.partial``: they live inside the program, so they are
compiled in as constants and ``Policy.params`` is None (``init(key, params=None)``; a new value of a
model hyperparameter means a new program). Every ``refit_every`` rounds the posterior is
refitted on all data so far (``inference.program``):

- ``method="laplace"`` (default): a Gaussian at the MAP with the Hessian's covariance, in the
  program's unconstrained space (``inference.laplace``, the same engine as
  ``posterior(..., method="laplace")``), L-BFGS warm-started from the previous MAP; each round
  draws afresh from it. The state keeps the last fit's convergence report (``state.laplace
  .diagnostics``) and counts the refits that did not converge (``state.failed_refits``): such a
  refit is still used (its curvature floored), never silently — check the count after a run.
- ``method="nuts"``: NUTS warm-started from the previous run's position, step size and mass
  matrix; each round uses one of the refit's ``num_draws`` draws, chosen at random.

To act, the sampled parameters are substituted into the program and the reward site's
distribution mean is evaluated for every arm at this round's context; the policy plays the
argmax. Propensities are Monte-Carlo estimates from ``propensity_draws`` extra posterior draws.
Data live in a buffer of ``history_size`` rounds (static shapes; a sliding window beyond it).
Everything is jittable and runs under the experiment runner's ``vmap`` over seeds.

For the conjugate programs in ``structbandits.models`` prefer the closed-form agents (``lin_ts``,
``mets``), which are exact and much faster.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from numpyro.handlers import seed, substitute, trace

from structbandits.agents.propensity import keyed_draws, thompson_choice
from structbandits.agents.protocol import ActInfo, Policy
from structbandits.errors import ValidationError, check_integer
from structbandits.inference.laplace import LaplaceFit, laplace_sample, laplace_unfitted
from structbandits.inference.program import NUTSFit, latent_space, laplace_refit, masked_program, nuts_refit
from structbandits.inference.ring_buffer import RingBuffer, ring_append, ring_filled, ring_init

__all__ = ["NumPyroTSState", "numpyro_ts", "program_data"]

METHODS = ("laplace", "nuts")


class NumPyroTSState(NamedTuple):
    """Generic TS state.

    history : RingBuffer of rows ``contexts`` (pytree), ``actions`` (), ``rewards`` (), the last T rounds.
    laplace : LaplaceFit, the last Laplace refit (method "laplace"): mode (P,), precision_chol (P, P),
        diagnostics (its convergence report).
    failed_refits : () int, Laplace refits so far that did not converge (``inference.laplace``).
    nuts : NUTSFit, the last NUTS refit (method "nuts").
    key : PRNG key for the refits (the protocol's update takes no key).
    params : None; the program's hyperparameters are bound inside ``model`` (module docstring).
    """

    history: RingBuffer
    laplace: LaplaceFit
    failed_refits: jax.Array
    nuts: NUTSFit
    key: jax.Array
    params: None = None


def numpyro_ts(
    model: Callable,
    *,
    num_actions: int,
    example_context: Any,
    history_size: int,
    refit_every: int = 10,
    method: str = "laplace",
    reward_site: str = "reward",
    per_arm_context: bool = False,
    laplace_steps: int = 100,
    num_warmup: int = 100,
    num_draws: int = 50,
    propensity_draws: int = 0,
) -> Policy:
    """Thompson sampling with a refitted Laplace or NUTS posterior of ``model``.

    Parameters
    ----------
    model : NumPyro program ``model(contexts, actions, rewards)`` (see the module docstring).
    num_actions : K.
    example_context : one round's context (any pytree of arrays), for the buffer's shapes; with
        ``per_arm_context`` its leaves have a leading K axis and the pulled arm's slice is stored.
    history_size : T, rounds kept for refits.
    refit_every : m >= 1, refit after every m-th observation.
    method : "laplace" or "nuts".
    reward_site : name of the observed reward site.
    laplace_steps : at most this many L-BFGS steps per Laplace refit (it stops earlier at the mode). num_warmup, num_draws : NUTS per refit.
    propensity_draws : Monte-Carlo draws for the reported selection probability (0: NaN).

    The refit settings are structural (static); the policy has no params (``Policy.params`` None).
    """
    if method not in METHODS:
        raise ValidationError(f"method: expected one of {', '.join(METHODS)}, got {method!r}")
    k = check_integer("num_actions", num_actions, minimum=1)
    history_size = check_integer("history_size", history_size, minimum=1)
    refit_every = check_integer("refit_every", refit_every, minimum=1)
    laplace_steps = check_integer("laplace_steps", laplace_steps, minimum=1)
    num_warmup = check_integer("num_warmup", num_warmup, minimum=1)
    num_draws = check_integer("num_draws", num_draws, minimum=1)
    propensity_draws = check_integer("propensity_draws", propensity_draws, minimum=0)
    example_context = jax.tree.map(jnp.asarray, example_context)
    if per_arm_context:
        bad = [leaf.shape for leaf in jax.tree.leaves(example_context) if leaf.ndim == 0 or leaf.shape[0] != k]
        if bad:
            raise ValidationError(f"example_context: per_arm_context needs a leading axis of {k} arms on every leaf, got {bad[0]}")
        row_example = jax.tree.map(lambda leaf: leaf[0], example_context)
    else:
        row_example = example_context
    empty = ring_init({"contexts": row_example, "actions": jnp.zeros((), jnp.int32), "rewards": jnp.zeros(())},
                      history_size)
    try:
        space = latent_space(masked_program(model, reward_site), program_data(empty), jax.random.PRNGKey(0))
        _ = _arm_means(model, reward_site, space.constrain(space.init, program_data(empty)),
                       _all_arms(example_context, k, per_arm_context), k)
    except Exception as err:  # a program that does not fit the calling convention
        raise ValidationError(f"model: expected a NumPyro program model(contexts, actions, rewards) with an observed "
                              f"site {reward_site!r} whose mean is the expected reward; calling it failed: {err}") from err
    size = space.init.shape[0]

    def refit(state: NumPyroTSState) -> NumPyroTSState:
        key, refit_key = jax.random.split(state.key)
        state = state._replace(key=key)
        if method == "laplace":
            fit = laplace_refit(space, state.laplace.mode, program_data(state.history), laplace_steps)
            return state._replace(laplace=fit, failed_refits=state.failed_refits + ~fit.diagnostics.converged)
        return state._replace(nuts=nuts_refit(space, state.nuts, program_data(state.history), refit_key, num_warmup,
                                              num_draws))

    def draw_latent(state: NumPyroTSState, key: jax.Array) -> jax.Array:
        if method == "laplace":
            return laplace_sample(state.laplace, key)
        return state.nuts.draws[jax.random.randint(key, (), 0, num_draws)]

    def init(key: jax.Array, params: None = None) -> NumPyroTSState:
        warm = NUTSFit(jnp.zeros((num_draws, size)), space.init, jnp.asarray(1.0), jnp.ones(size))
        state = NumPyroTSState(empty, laplace_unfitted(space.init), jnp.asarray(0), warm, key)
        return refit(state)  # the prior's approximation, before any data

    def scores(state: NumPyroTSState, key: jax.Array, context: Any) -> jax.Array:
        params = space.constrain(draw_latent(state, key), program_data(state.history))
        return _arm_means(model, reward_site, params, _all_arms(context, k, per_arm_context), k)

    def act(state: NumPyroTSState, key: jax.Array, context: Any) -> tuple[jax.Array, ActInfo]:
        return thompson_choice(keyed_draws(lambda k_: scores(state, k_, context)), key, propensity_draws)

    def update(state: NumPyroTSState, context: Any, action: jax.Array, reward: jax.Array) -> NumPyroTSState:
        row = jax.tree.map(lambda leaf: leaf[action], context) if per_arm_context else context
        history = ring_append(state.history, {"contexts": row, "actions": action, "rewards": reward})
        state = state._replace(history=history)
        return jax.lax.cond(history.count % refit_every == 0, refit, lambda s: s, state)

    def posterior_draws(state: NumPyroTSState, key: jax.Array, num_draws: int) -> dict[str, jax.Array]:
        latents = jax.vmap(lambda k: draw_latent(state, k))(jax.random.split(key, num_draws))
        return jax.vmap(lambda z: space.constrain(z, program_data(state.history)))(latents)

    return Policy(init, act, update, posterior_draws)


def program_data(history: RingBuffer) -> dict[str, Any]:
    """The program's keyword arguments from the buffer: contexts, actions, rewards and ``mask`` (T,) bool (filled slots)."""
    return {**history.rows, "mask": ring_filled(history)}


def _all_arms(context: Any, k: int, per_arm_context: bool) -> Any:
    """The round's context for every arm: leaves (K, ...)."""
    if per_arm_context:
        return context
    return jax.tree.map(lambda leaf: jnp.broadcast_to(leaf, (k, *jnp.shape(leaf))), context)


def _arm_means(model: Callable, reward_site: str, params: dict, contexts: Any, k: int) -> jax.Array:
    """Expected reward (K,) of every arm under ``params``: the reward site's distribution mean."""
    traced = trace(seed(substitute(model, data=params), rng_seed=0)).get_trace(
        contexts=contexts, actions=jnp.arange(k), rewards=None)
    return jnp.broadcast_to(traced[reward_site]["fn"].mean, (k,))
