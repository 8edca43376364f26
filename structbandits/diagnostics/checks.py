"""Check a fast posterior against NUTS on the same program: ``check_posterior(model, data)``.

The fast posterior is the one ``inference.posterior(model, data, method)`` returns ("auto": the
registered closed form, else Laplace). NUTS runs on the very same NumPyro program and data. For
every scalar component of every latent site both are summarised, and two distances are reported:

- ``mean_z``: |mean_fast − mean_nuts| / MCSE, the Monte-Carlo standard error of the difference
  (NUTS's from ArviZ's bulk ESS, the fast method's from its independent draws or exact moments);
- ``sd_ratio``: sd_fast / sd_nuts.

An exact closed form should be within ``mean_tolerance`` = 4 MCSE (about 1 in 16,000 components
fail by chance) and within ``sd_tolerance`` = 15% of the NUTS sds. A Laplace approximation is
only approximately right, so its means are compared in posterior sds instead: |Δmean| / sd_nuts
≤ 0.35 by default (logistic posteriors are skewed; their mode is not their mean).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
import pandas as pd

from structbandits.diagnostics.arviz_adapter import from_draws, summary
from structbandits.errors import ValidationError, check_positive
from structbandits.inference.posterior import posterior

__all__ = ["PosteriorCheck", "check_posterior"]

EXACT_MEAN_MCSE = 4.0
APPROXIMATE_MEAN_SD = 0.35
SD_RELATIVE = 0.15


@dataclass(frozen=True)
class PosteriorCheck:
    """Result of ``check_posterior``.

    Attributes
    ----------
    method : the fast method that was checked ("conjugate" or "laplace").
    table : one row per scalar component: site, index, mean_fast, mean_nuts, sd_fast, sd_nuts,
        ess_nuts, mean_z, mean_in_sd, sd_ratio, passed.
    passed : every component within both tolerances.
    mean_tolerance : the bound on ``mean_z`` (exact) or on ``mean_in_sd`` (Laplace).
    sd_tolerance : the bound on |sd_ratio − 1|.
    r_hat_max : the largest NUTS R-hat (a NUTS run with R-hat > 1.05 is not a trustworthy reference).
    """

    method: str
    table: pd.DataFrame
    passed: bool
    mean_tolerance: float
    sd_tolerance: float
    r_hat_max: float

    def __str__(self) -> str:
        failed = self.table[~self.table["passed"]]
        criterion = "MCSE" if self.method == "conjugate" else "posterior sd"
        lines = [f"{self.method} vs NUTS: {'PASS' if self.passed else 'FAIL'} "
                 f"(means within {self.mean_tolerance:g} {criterion}, sds within {100 * self.sd_tolerance:g}%; "
                 f"{len(self.table)} components, {len(failed)} outside; NUTS max R-hat {self.r_hat_max:.3f})"]
        if len(failed):
            lines.append(failed.to_string(index=False))
        return "\n".join(lines)


def _components(draws: np.ndarray) -> np.ndarray:
    """(chain, draw, ...) -> (chain, draw, components)."""
    return draws.reshape(draws.shape[0], draws.shape[1], -1)


def check_posterior(
    model: Callable,
    data: Mapping[str, Any],
    method: str = "auto",
    *,
    key: jax.Array | None = None,
    num_draws: int = 2000,
    num_warmup: int = 1000,
    num_chains: int = 2,
    mean_tolerance: float | None = None,
    sd_tolerance: float = SD_RELATIVE,
) -> PosteriorCheck:
    """Compare ``posterior(model, data, method)`` with NUTS on the same program and data.

    Parameters
    ----------
    model, data, method : as in ``structbandits.inference.posterior``.
    key : PRNG key (default ``PRNGKey(0)``); num_draws, num_warmup, num_chains : NUTS settings (the
        fast method draws ``num_draws · num_chains`` samples).
    mean_tolerance : default 4 (MCSE) for a closed form, 0.35 (posterior sds) for Laplace.
    sd_tolerance : relative tolerance on the posterior sds.

    Returns
    -------
    PosteriorCheck; ``print`` it for a verdict and the failing components.
    """
    sd_tolerance = float(check_positive("sd_tolerance", sd_tolerance))
    key = jax.random.PRNGKey(0) if key is None else key
    fast_key, nuts_key = jax.random.split(key)
    fast = posterior(model, data, method, key=fast_key, num_draws=num_draws, num_chains=num_chains)
    if fast.method == "nuts":
        why = f" ({fast.fallback_reason})" if fast.fallback_reason else ""
        raise ValidationError(f"method: check_posterior compares a closed form or Laplace with NUTS; got 'nuts'{why}")
    exact = fast.method == "conjugate"
    if mean_tolerance is None:
        mean_tolerance = EXACT_MEAN_MCSE if exact else APPROXIMATE_MEAN_SD
    mean_tolerance = float(check_positive("mean_tolerance", mean_tolerance))
    reference = posterior(model, data, "nuts", key=nuts_key, num_draws=num_draws, num_warmup=num_warmup,
                          num_chains=num_chains)
    rows = []
    for site in fast.draws:
        nuts_draws = _components(np.asarray(reference.draws[site]))
        stats = summary(from_draws({site: nuts_draws}), var_names=[site])
        fast_draws = _components(np.asarray(fast.draws[site])).reshape(-1, nuts_draws.shape[-1])
        if site in fast.moments:
            mean_fast = np.asarray(fast.moments[site][0]).reshape(-1)
            cov = np.asarray(fast.moments[site][1])
            sd_fast = np.sqrt(np.diagonal(cov, axis1=-2, axis2=-1)).reshape(-1)
            fast_se = np.zeros_like(mean_fast)
        else:
            mean_fast, sd_fast = fast_draws.mean(0), fast_draws.std(0)
            fast_se = sd_fast / np.sqrt(fast_draws.shape[0])
        mean_nuts, sd_nuts, ess = (stats[column].to_numpy() for column in ("mean", "sd", "ess_bulk"))
        mcse = np.sqrt(sd_nuts**2 / ess + fast_se**2)
        for i in range(mean_fast.shape[0]):
            rows.append({"site": site, "index": i, "mean_fast": mean_fast[i], "mean_nuts": mean_nuts[i],
                         "sd_fast": sd_fast[i], "sd_nuts": sd_nuts[i], "ess_nuts": ess[i],
                         "mean_z": abs(mean_fast[i] - mean_nuts[i]) / mcse[i],
                         "mean_in_sd": abs(mean_fast[i] - mean_nuts[i]) / sd_nuts[i],
                         "sd_ratio": sd_fast[i] / sd_nuts[i], "r_hat": stats["r_hat"].to_numpy()[i]})
    table = pd.DataFrame(rows)
    distance = table["mean_z"] if exact else table["mean_in_sd"]
    table["passed"] = (distance <= mean_tolerance) & ((table["sd_ratio"] - 1).abs() <= sd_tolerance)
    return PosteriorCheck(fast.method, table.drop(columns="r_hat"), bool(table["passed"].all()), mean_tolerance,
                          sd_tolerance, float(table["r_hat"].max()))
