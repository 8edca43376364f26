"""The single place that calls ArviZ.

ArviZ 0.23.x (Python 3.11) returns ``InferenceData``; ArviZ 1.x (Python >= 3.12) returns a
``DataTree`` and moved plotting to arviz-plots. The functions here use only the API common to both
(``from_numpyro``, ``from_dict``, ``summary`` with the mean/sd/ess/r_hat columns), and return
summaries restricted to those columns so callers see the same table from either line.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["SUMMARY_COLUMNS", "from_draws", "from_mcmc", "summary"]

SUMMARY_COLUMNS = ["mean", "sd", "ess_bulk", "ess_tail", "r_hat"]


def _arviz():
    import arviz  # several seconds to import: only when a diagnostic is asked for

    return arviz


def from_mcmc(mcmc: Any, *, dims: Mapping[str, list[str]] | None = None,
              coords: Mapping[str, Any] | None = None) -> Any:
    """ArviZ data (posterior and sample stats) from a finished ``numpyro.infer.MCMC`` run."""
    return _arviz().from_numpyro(mcmc, dims=dict(dims or {}), coords=dict(coords or {}))


def from_draws(draws: Mapping[str, Any], *, dims: Mapping[str, list[str]] | None = None,
               coords: Mapping[str, Any] | None = None) -> Any:
    """ArviZ data from named draws shaped (chain, draw, ...)."""
    posterior = {name: np.asarray(value) for name, value in draws.items()}
    return _arviz().from_dict(posterior=posterior, dims=dict(dims or {}), coords=dict(coords or {}))


def summary(data: Any, var_names: list[str] | None = None) -> pd.DataFrame:
    """mean, sd, bulk and tail ESS and R-hat per scalar component, as a DataFrame."""
    table = _arviz().summary(data, var_names=var_names)
    return pd.DataFrame(table)[SUMMARY_COLUMNS].astype(float)
