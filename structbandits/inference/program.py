"""Latent spaces of NumPyro programs, and refits of a program on a fixed-size masked data buffer inside ``jit``.

``latent_space(model, data, key)`` binds any program to its unconstrained latent vector z (P,) as
``numpyro.infer.util.initialize_model`` defines it: the potential −log p(z, data) and the map back to
constrained site values, with the data as a traced argument, so one compiled function serves new
data of the same shapes. ``inference.posterior`` (Laplace) and the generic Thompson sampler use it.

The generic Thompson sampler (``agents.numpyro_ts``) refits a user's program every few rounds while
its data grow. To keep shapes static, the data live in a buffer of T rounds and the observed reward
site is masked to the rounds filled so far (``masked_program``), so one compiled refit serves every
round. The program is called as ``model(contexts=..., actions=..., rewards=...)`` with a leading
round axis on each. Two refits:

- ``laplace_refit``: ``inference.laplace.laplace_fit`` (L-BFGS to the MAP, warm-started from the
  previous one, the exact Hessian, and its convergence report) on the current data. A Laplace
  approximation needs the joint mode to exist: write hierarchical scales non-centred (see
  ``models.random_effects``).
- ``nuts_refit``: NUTS through ``numpyro.infer.hmc.hmc``'s functional kernels, warm-started from the
  previous position, step size and diagonal inverse mass matrix, keeping the last ``num_draws`` draws.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
from jax.flatten_util import ravel_pytree
from numpyro.infer.hmc import hmc
from numpyro.infer.util import initialize_model
from numpyro.primitives import Messenger

from structbandits.inference.laplace import LaplaceFit, laplace_fit

__all__ = ["LatentSpace", "NUTSFit", "latent_space", "laplace_refit", "masked_program", "nuts_refit", "observed_mask"]


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
    constrain : (z, data) -> dict of the latent sites' constrained values (and the deterministic sites').
    """

    init: jax.Array
    potential: Callable[[jax.Array, dict], jax.Array]
    constrain: Callable[[jax.Array, dict], dict[str, jax.Array]]


def masked_program(model: Callable, reward_site: str) -> Callable:
    """``model(contexts, actions, rewards)`` as a program of (contexts, actions, rewards, mask) whose
    observed ``reward_site`` counts only the rounds where ``mask`` (T,) is True."""

    def masked_model(contexts, actions, rewards, mask):
        observed_mask(model, reward_site, mask)(contexts=contexts, actions=actions, rewards=rewards)

    return masked_model


def latent_space(model: Callable, data: dict[str, Any], key: jax.Array) -> LatentSpace:
    """Bind ``model`` (called with the keyword arguments ``data``) to its unconstrained latent space.

    ``key`` draws the initial point (NumPyro's default: uniform in (−2, 2) unconstrained)."""
    info = initialize_model(key, model, model_kwargs=data, dynamic_args=True)
    init, unravel = ravel_pytree(info.param_info.z)
    latent_names = [name for name, site in info.model_trace.items()
                    if (site["type"] == "sample" and not site["is_observed"]) or site["type"] == "deterministic"]

    def potential(z: jax.Array, data: dict) -> jax.Array:
        return info.potential_fn(**data)(unravel(z))

    def constrain(z: jax.Array, data: dict) -> dict[str, jax.Array]:
        values = info.postprocess_fn(**data)(unravel(z))
        return {name: values[name] for name in latent_names}

    return LatentSpace(init, potential, constrain)


def laplace_refit(space: LatentSpace, start: jax.Array, data: dict, max_steps: int) -> LaplaceFit:
    """The Laplace fit (``inference.laplace``) of the potential at ``data``, L-BFGS from ``start`` (P,)
    for at most ``max_steps`` steps."""
    return laplace_fit(lambda z: space.potential(z, data), start, max_steps=max_steps)


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
