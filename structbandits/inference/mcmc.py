"""NUTS on any NumPyro program: the reference posterior and the fallback when no closed form exists.

On a 2-core CPU NUTS is compile-bound, so ``nuts_sampler`` builds an ``MCMC`` object once with
``jit_model_args=True`` and ``run_nuts`` reuses it for new data of the same shapes without re-tracing.
Chains are vectorised (one JAX device on CPU).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
from numpyro.infer import MCMC, NUTS

from structbandits.errors import check_integer

__all__ = ["nuts_sampler", "run_nuts"]


def nuts_sampler(
    model: Callable,
    *,
    num_warmup: int = 500,
    num_samples: int = 1000,
    num_chains: int = 2,
    target_accept_prob: float = 0.8,
    progress_bar: bool = False,
) -> MCMC:
    """A reusable NUTS ``MCMC`` object for ``model`` (vectorised chains, jitted model arguments)."""
    num_warmup = check_integer("num_warmup", num_warmup, minimum=1)
    num_samples = check_integer("num_samples", num_samples, minimum=1)
    num_chains = check_integer("num_chains", num_chains, minimum=1)
    return MCMC(
        NUTS(model, target_accept_prob=target_accept_prob),
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        chain_method="vectorized",
        jit_model_args=True,
        progress_bar=progress_bar,
    )


def run_nuts(sampler: MCMC, key: jax.Array, *args, **kwargs) -> dict[str, jax.Array]:
    """Run ``sampler`` on the model's arguments and return draws grouped by chain: (chains, draws, ...)."""
    sampler.run(key, *args, **kwargs)
    return sampler.get_samples(group_by_chain=True)
