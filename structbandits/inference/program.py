"""Posteriors of an arbitrary NumPyro reward program on a fixed-size, masked data buffer, inside ``jit``.

The generic Thompson sampler (``agents.numpyro_ts``) refits a user's program every few rounds while
its data grow. To keep shapes static, the data live in a buffer of T rounds and the observed reward
site is masked to the rounds filled so far (``observed_mask``), so one compiled refit serves every
round. The program is called as ``model(contexts=..., actions=..., rewards=...)`` with a leading
round axis on each.

Two refits, both over the unconstrained latent vector z (P,) that ``numpyro.infer.util.initialize_model``
defines, so they are the same approximations NumPyro's own tools compute:

- ``laplace_refit``: the MAP by L-BFGS (optax, warm-started from the previous MAP), then the Hessian
  of the negative log joint at it as the precision, i.e. ``AutoLaplaceApproximation`` evaluated on
  the current data. Directions of non-positive curvature (possible away from the optimum) are floored
  at a small positive eigenvalue (1e-6) rather than producing NaN draws. A Laplace approximation
  needs the joint mode to exist: write hierarchical scales non-centred (see
  ``models.random_effects``).
- ``nuts_refit``: NUTS through ``numpyro.infer.hmc.hmc``'s functional kernels, warm-started from the
  previous position, step size and diagonal inverse mass matrix, keeping the last ``num_draws`` draws.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree
from numpyro.infer.hmc import hmc
from numpyro.infer.util import initialize_model
from numpyro.primitives import Messenger

__all__ = ["LatentSpace", "NUTSFit", "latent_space", "laplace_refit", "nuts_refit", "observed_mask"]

CURVATURE_FLOOR = 1e-6


class observed_mask(Messenger):
    """Mask one sample site (the observed reward) with a boolean (T,) array; other sites untouched."""

    def __init__(self, fn: Callable, site: str, mask: jax.Array):
        self.site, self.mask = site, mask
        super().__init__(fn)

    def process_message(self, msg: dict) -> None:
        if msg["type"] == "sample" and msg["name"] == self.site:
            msg["fn"] = msg["fn"].mask(self.mask)  # as numpyro.handlers.mask does, for this site only


class LatentSpace(NamedTuple):
    """A program's unconstrained latent space.

    init : (P,) an initial point. potential : (z, data) -> −log p(z, data) (with Jacobians).
    constrain : (z, data) -> dict of the latent sites' constrained values.
    """

    init: jax.Array
    potential: Callable[[jax.Array, dict], jax.Array]
    constrain: Callable[[jax.Array, dict], dict[str, jax.Array]]


def latent_space(model: Callable, reward_site: str, data: dict[str, Any], key: jax.Array) -> LatentSpace:
    """Bind ``model`` to masked buffers. ``data`` has contexts, actions, rewards and a boolean ``mask``."""

    def masked_model(contexts, actions, rewards, mask):
        observed_mask(model, reward_site, mask)(contexts=contexts, actions=actions, rewards=rewards)

    info = initialize_model(key, masked_model, model_kwargs=data, dynamic_args=True)
    init, unravel = ravel_pytree(info.param_info.z)
    latent_names = [name for name, site in info.model_trace.items()
                    if site["type"] == "sample" and not site["is_observed"]]

    def potential(z: jax.Array, data: dict) -> jax.Array:
        return info.potential_fn(**data)(unravel(z))

    def constrain(z: jax.Array, data: dict) -> dict[str, jax.Array]:
        values = info.postprocess_fn(**data)(unravel(z))
        return {name: values[name] for name in latent_names}

    return LatentSpace(init, potential, constrain)


def laplace_refit(space: LatentSpace, start: jax.Array, data: dict, num_steps: int) -> tuple[jax.Array, jax.Array]:
    """MAP (P,) after ``num_steps`` L-BFGS steps from ``start``, and the Cholesky factor (P, P) of
    the precision (the Hessian of the potential at the MAP, curvature floored)."""
    objective = lambda z: space.potential(z, data)
    optimizer = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(objective)

    def step(carry, _):
        z, opt_state = carry
        value, grad = value_and_grad(z, state=opt_state)
        updates, opt_state = optimizer.update(grad, opt_state, z, value=value, grad=grad, value_fn=objective)
        return (optax.apply_updates(z, updates), opt_state), None

    (mode, _), _ = jax.lax.scan(step, (start, optimizer.init(start)), None, length=num_steps)
    hessian = jax.hessian(objective)(mode)
    values, vectors = jnp.linalg.eigh(0.5 * (hessian + hessian.T))
    precision = (vectors * jnp.maximum(values, CURVATURE_FLOOR)) @ vectors.T
    return mode, jnp.linalg.cholesky(0.5 * (precision + precision.T))


class NUTSFit(NamedTuple):
    """The result of a NUTS refit: ``draws`` (M, P), and the warm start for the next refit:
    ``position`` (P,), ``step_size`` (), ``inverse_mass_matrix`` (P,)."""

    draws: jax.Array
    position: jax.Array
    step_size: jax.Array
    inverse_mass_matrix: jax.Array


def nuts_refit(space: LatentSpace, warm: NUTSFit, data: dict, key: jax.Array, num_warmup: int,
               num_draws: int) -> NUTSFit:
    """``num_warmup`` adaptation steps from ``warm``'s position, step size and mass matrix, then
    ``num_draws`` draws (P,) each."""
    init_kernel, sample_kernel = hmc(potential_fn_gen=lambda **kw: (lambda z: space.potential(z, kw)), algo="NUTS")
    state = init_kernel(warm.position, num_warmup, step_size=warm.step_size,
                        inverse_mass_matrix=warm.inverse_mass_matrix, model_kwargs=data, rng_key=key)
    state = jax.lax.fori_loop(0, num_warmup, lambda _, s: sample_kernel(s, model_kwargs=data), state)

    def draw(s, _):
        s = sample_kernel(s, model_kwargs=data)
        return s, s.z

    state, draws = jax.lax.scan(draw, state, None, length=num_draws)
    return NUTSFit(draws, state.z, state.adapt_state.step_size, state.adapt_state.inverse_mass_matrix)
