"""Power-scaling prior and likelihood sensitivity of a NumPyro program's NUTS posterior.

Raising the prior (or the likelihood) to a power alpha near 1 and measuring how far the posterior
moves tells which one the posterior listens to (Kallioinen et al., 2023). ArviZ computes it from
posterior draws by Pareto-smoothed importance sampling, with no refit, given two extra groups:
``log_prior`` (the log prior density of each draw) and ``log_likelihood`` (each observation's log
density). ``power_scaling_sensitivity`` runs NUTS on the program, evaluates both from the same
program (``numpyro.infer.util.log_likelihood`` and the prior sites' ``log_prob`` under
``handlers.substitute``), and returns ArviZ's table. A value above 0.05 is ArviZ's flag: prior
sensitivity above it means an informative prior; likelihood sensitivity below it a weak likelihood;
both above it a possible prior-data conflict.

ArviZ is imported lazily through ``arviz_adapter`` (``psens`` in 0.23.x, ``psense`` in 1.x).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
import pandas as pd
from numpyro import handlers
from numpyro.infer import MCMC
from numpyro.infer.util import log_likelihood

from structbandits.diagnostics.arviz_adapter import _arviz, _major_version
from structbandits.errors import ValidationError
from structbandits.inference.mcmc import nuts_sampler, run_nuts

__all__ = ["SENSITIVITY_THRESHOLD", "log_prior_draws", "power_scaling_sensitivity", "sensitivity_inference_data"]

SENSITIVITY_THRESHOLD = 0.05


def log_prior_draws(model: Callable, draws: Mapping[str, Any], data: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Log prior density of every latent sample site at each draw.

    Parameters
    ----------
    model : a NumPyro program.
    draws : site name -> (chains, draws, *site shape), e.g. NUTS samples grouped by chain.
    data : the program's keyword arguments.

    Returns
    -------
    site name -> (chains, draws): the site's log density summed over its elements.
    """
    shapes = {np.shape(value)[:2] for value in draws.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValidationError(f"draws: expected arrays shaped (chains, draws, ...) with one (chains, draws), got {shapes}")
    chains, num_draws = next(iter(shapes))

    def one(sample):
        trace = handlers.trace(handlers.substitute(handlers.seed(model, 0), data=sample)).get_trace(**data)
        return {name: site["fn"].log_prob(site["value"]).sum() for name, site in trace.items()
                if site["type"] == "sample" and not site["is_observed"]}

    flat = {name: np.reshape(value, (chains * num_draws, *np.shape(value)[2:])) for name, value in draws.items()}
    values = jax.jit(jax.vmap(one))(flat)
    return {name: np.asarray(value).reshape(chains, num_draws) for name, value in values.items()}


def sensitivity_inference_data(model: Callable, draws: Mapping[str, Any], data: Mapping[str, Any]) -> Any:
    """ArviZ data with the posterior, ``log_likelihood`` (per observation) and ``log_prior`` groups."""
    az = _arviz()
    posterior = {name: np.asarray(value) for name, value in draws.items()}
    likelihood = {name: np.asarray(value)
                  for name, value in log_likelihood(model, posterior, batch_ndims=2, **data).items()}
    if not likelihood:
        raise ValidationError("model: expected a program with observed sites (obs=...), got none given this data")
    prior = log_prior_draws(model, posterior, data)
    if _major_version(az) >= 1:
        return az.from_dict({"posterior": posterior, "log_likelihood": likelihood, "log_prior": prior})
    inference_data = az.from_dict(posterior=posterior, log_likelihood=likelihood)
    inference_data.add_groups({"log_prior": prior})
    return inference_data


def _table(result: Any) -> pd.Series:
    """One value per scalar component of every posterior variable, labelled like ``theta[1, 0]``."""
    dataset = result.to_dataset() if hasattr(result, "to_dataset") and not hasattr(result, "data_vars") else result
    values = {}
    for name, variable in dataset.data_vars.items():
        array = np.asarray(variable.values)
        for index in np.ndindex(array.shape):
            label = f"{name}[{', '.join(map(str, index))}]" if index else name
            values[label] = float(array[index])
    return pd.Series(values)


def power_scaling_sensitivity(
    model: Callable,
    data: Mapping[str, Any] | None = None,
    *,
    key: jax.Array | None = None,
    num_warmup: int = 500,
    num_samples: int = 1000,
    num_chains: int = 2,
    sampler: MCMC | None = None,
    var_names: list[str] | None = None,
) -> pd.DataFrame:
    """Prior and likelihood power-scaling sensitivity of the NUTS posterior of ``model`` given ``data``.

    Parameters
    ----------
    model : a NumPyro program with at least one observed site.
    data : the program's keyword arguments (hyperparameters and observations) by name.
    key : PRNG key for NUTS (default PRNGKey(0)).
    num_warmup, num_samples, num_chains : NUTS settings (ignored when ``sampler`` is given).
    sampler : a ``structbandits.inference.mcmc.nuts_sampler(model)`` to reuse; with
        ``jit_model_args`` it compiles once for data of the same shapes.
    var_names : posterior variables to report (default: every latent site).

    Returns
    -------
    A DataFrame indexed by scalar component (``mu``, ``theta[2, 1]``) with columns ``prior`` and
    ``likelihood`` (ArviZ's sensitivity, >= 0) and ``diagnosis``: "prior-data conflict" (both above
    0.05), "strong prior / weak likelihood" (prior above, likelihood below), "weak likelihood"
    (likelihood below 0.05) or "-".
    """
    data = dict(data or {})
    if sampler is None:
        sampler = nuts_sampler(model, num_warmup=num_warmup, num_samples=num_samples, num_chains=num_chains)
    elif sampler.sampler.model is not model:
        raise ValidationError("sampler: expected a NUTS sampler built for this model, got one for another program")
    draws = run_nuts(sampler, jax.random.PRNGKey(0) if key is None else key, **data)
    draws = {name: value for name, value in draws.items() if var_names is None or name in var_names}
    inference_data = sensitivity_inference_data(model, draws, data)
    az = _arviz()
    if _major_version(az) >= 1:
        prior, likelihood = (az.psense(inference_data, group=group) for group in ("prior", "likelihood"))
    else:
        prior, likelihood = (az.psens(inference_data, component=group) for group in ("prior", "likelihood"))
    table = pd.DataFrame({"prior": _table(prior), "likelihood": _table(likelihood)})
    strong_prior = table["prior"] >= SENSITIVITY_THRESHOLD
    strong_likelihood = table["likelihood"] >= SENSITIVITY_THRESHOLD
    table["diagnosis"] = np.select(
        [strong_prior & strong_likelihood, strong_prior & ~strong_likelihood, ~strong_likelihood],
        ["prior-data conflict", "strong prior / weak likelihood", "weak likelihood"], default="-")
    return table
