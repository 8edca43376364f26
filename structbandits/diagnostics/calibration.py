"""Simulation-based calibration (SBC) of a posterior: are its draws right on average over the prior?

Draw parameters θ* from the prior, data y from the model given θ*, and N posterior draws given y.
If the posterior is exact, the rank of θ* among the N draws (the number of draws below it) is
uniform on {0, ..., N} for every scalar component (Talts et al., 2018). A too-wide posterior piles
the ranks in the middle, a too-narrow one at both ends, a biased one at one end.

``simulation_based_calibration(simulate, posterior_draws, key)`` runs R replications, vectorised
with ``jax.vmap`` (``jax.lax.map`` in batches), bins the ranks of every component into B equal
bins and applies a chi-square test of uniformity per component; the check passes when every
component's p-value exceeds ``alpha`` / (number of components) (Bonferroni), so that the verdict at
a fixed seed is tolerant of the many components tested. ``program_simulator`` turns a NumPyro
program with fixed covariates into the ``simulate`` function, so the prior and the data come from
the same program the closed form claims to condition.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from scipy import stats

from structbandits.errors import ValidationError, check_integer, check_positive

__all__ = ["SBCResult", "program_simulator", "rank_uniformity", "sbc_ranks", "simulation_based_calibration"]

Draws = Mapping[str, jax.Array]


@dataclass(frozen=True)
class SBCResult:
    """The verdict of a simulation-based calibration.

    Attributes
    ----------
    ranks : (R, C) rank of the prior draw among the posterior draws, per replication and component.
    components : the C component labels (``theta[0, 1]``).
    num_draws : N posterior draws per replication (ranks are in 0..N).
    num_bins : B bins of the chi-square test.
    statistics, p_values : (C,) chi-square statistic (B − 1 dof) and its p-value per component.
    alpha : the family-wise level; each component is tested at alpha / C.
    passed : every p-value > alpha / C.
    """

    ranks: np.ndarray
    components: list[str]
    num_draws: int
    num_bins: int
    statistics: np.ndarray
    p_values: np.ndarray
    alpha: float
    passed: bool

    @property
    def table(self) -> pd.DataFrame:
        """One row per component: component, chi2, p_value, mean_rank (uniform: N / 2), passed."""
        threshold = self.alpha / len(self.components)
        return pd.DataFrame({"component": self.components, "chi2": self.statistics, "p_value": self.p_values,
                             "mean_rank": self.ranks.mean(axis=0), "passed": self.p_values > threshold})

    def __str__(self) -> str:
        table = self.table
        worst = table.loc[table["p_value"].idxmin()]
        return (f"SBC: {'PASS' if self.passed else 'FAIL'} ({len(table)} components, {self.ranks.shape[0]} replications, "
                f"{self.num_draws} draws, {self.num_bins} bins; smallest p-value {worst['p_value']:.3g} for "
                f"{worst['component']}, threshold {self.alpha / len(table):.3g})")


def program_simulator(model: Callable, latent_sites: Sequence[str], observed_site: str, data_name: str,
                      **fixed: Any) -> Callable[[jax.Array], tuple[dict[str, jax.Array], dict[str, Any]]]:
    """``simulate(key) -> (truth, data)`` from a NumPyro program with fixed covariates.

    Parameters
    ----------
    model : the program, e.g. ``models.linear_bandit``.
    latent_sites : the parameters to calibrate (``["theta"]``).
    observed_site : the site the data are drawn at (``"reward"``).
    data_name : the program argument that takes those data (``"rewards"``).
    **fixed : every other argument (hyperparameters, contexts, actions), held fixed.

    Returns
    -------
    A jittable function: ``truth`` maps each latent site to its prior draw; ``data`` is ``fixed``
    with ``data_name`` set to the simulated observations.
    """
    from numpyro import handlers

    def simulate(key: jax.Array) -> tuple[dict[str, jax.Array], dict[str, Any]]:
        trace = handlers.trace(handlers.seed(model, key)).get_trace(**fixed)
        missing = [site for site in (*latent_sites, observed_site) if site not in trace]
        if missing:
            raise ValidationError(f"latent_sites: {missing[0]!r} is not a site of {model.__name__}; "
                                  f"its sites are {', '.join(trace)}")
        return {site: trace[site]["value"] for site in latent_sites}, {**fixed, data_name: trace[observed_site]["value"]}

    return simulate


def sbc_ranks(simulate: Callable[[jax.Array], tuple[Draws, Any]],
              posterior_draws: Callable[[jax.Array, Any, int], Draws],
              key: jax.Array, num_replications: int, num_draws: int,
              batch_size: int | None = None) -> dict[str, np.ndarray]:
    """Ranks of prior draws among posterior draws, per site: (R, *site shape), values in 0..N.

    ``simulate(key) -> (truth, data)`` draws the parameters from the prior and data given them;
    ``posterior_draws(key, data, num_draws) -> {site: (num_draws, *site shape)}`` is the posterior
    under test. Both must be jittable; replications run vectorised in batches of ``batch_size``.
    """
    num_replications = check_integer("num_replications", num_replications, minimum=1)
    num_draws = check_integer("num_draws", num_draws, minimum=1)
    batch_size = num_replications if batch_size is None else check_integer("batch_size", batch_size, minimum=1)

    def one(replication_key: jax.Array) -> dict[str, jax.Array]:
        simulate_key, posterior_key = jax.random.split(replication_key)
        truth, data = simulate(simulate_key)
        draws = posterior_draws(posterior_key, data, num_draws)
        unknown = sorted(set(truth) - set(draws))
        if unknown:
            raise ValidationError(f"posterior_draws: expected draws of every simulated site, missing {unknown[0]!r}")
        return {site: jnp.sum(draws[site] < truth[site][None], axis=0) for site in truth}

    keys = jax.random.split(key, num_replications)
    ranks = jax.jit(lambda ks: jax.lax.map(one, ks, batch_size=batch_size))(keys)
    return {site: np.asarray(value) for site, value in ranks.items()}


def rank_uniformity(ranks: Mapping[str, np.ndarray], num_draws: int, *, num_bins: int = 10,
                    alpha: float = 1e-3) -> SBCResult:
    """Chi-square test that every component's ranks are uniform on 0..N, binned into ``num_bins``.

    ``num_draws + 1`` must be a multiple of ``num_bins`` (equal bins); expect at least 5
    replications per bin.
    """
    num_draws = check_integer("num_draws", num_draws, minimum=1)
    num_bins = check_integer("num_bins", num_bins, minimum=2)
    alpha = float(check_positive("alpha", alpha))
    if (num_draws + 1) % num_bins:
        raise ValidationError(f"num_bins: expected a divisor of num_draws + 1 = {num_draws + 1}, got {num_bins}")
    columns, labels = [], []
    for site, value in ranks.items():
        value = np.asarray(value)
        flat = value.reshape(value.shape[0], -1)
        columns.append(flat)
        labels += [f"{site}[{', '.join(map(str, index))}]" if value.ndim > 1 else site
                   for index in np.ndindex(*value.shape[1:])]
    table = np.concatenate(columns, axis=1)
    if table.min() < 0 or table.max() > num_draws:
        raise ValidationError(f"ranks: expected values in 0..{num_draws}, got values in {table.min()}..{table.max()}")
    replications = table.shape[0]
    counts = np.stack([np.bincount(column * num_bins // (num_draws + 1), minlength=num_bins) for column in table.T])
    expected = replications / num_bins
    statistics = ((counts - expected) ** 2 / expected).sum(axis=1)
    p_values = stats.chi2.sf(statistics, num_bins - 1)
    passed = bool(np.all(p_values > alpha / len(labels)))
    return SBCResult(table, labels, num_draws, num_bins, statistics, p_values, alpha, passed)


def simulation_based_calibration(simulate: Callable[[jax.Array], tuple[Draws, Any]],
                                 posterior_draws: Callable[[jax.Array, Any, int], Draws],
                                 key: jax.Array | None = None, *, num_replications: int = 1000, num_draws: int = 99,
                                 num_bins: int = 10, alpha: float = 1e-3, batch_size: int | None = None) -> SBCResult:
    """Simulation-based calibration of ``posterior_draws`` against the prior and model in ``simulate``.

    Parameters
    ----------
    simulate : ``key -> (truth, data)``: parameters from the prior (site -> array) and data given
        them (any pytree); ``program_simulator`` builds it from a NumPyro program.
    posterior_draws : ``(key, data, num_draws) -> {site: (num_draws, *site shape)}``, the posterior
        under test, for at least the sites of ``truth``.
    key : PRNG key (default ``PRNGKey(0)``); the verdict is deterministic given it.
    num_replications : R prior draws; num_draws : N posterior draws each (ranks 0..N).
    num_bins : B chi-square bins (a divisor of N + 1); alpha : family-wise level (Bonferroni).
    batch_size : replications vectorised at once (default all R).

    Returns
    -------
    SBCResult with ``passed``, per-component p-values and the ranks.
    """
    if (check_integer("num_draws", num_draws, minimum=1) + 1) % check_integer("num_bins", num_bins, minimum=2):
        raise ValidationError(f"num_bins: expected a divisor of num_draws + 1 = {num_draws + 1}, got {num_bins}")
    key = jax.random.PRNGKey(0) if key is None else key
    ranks = sbc_ranks(simulate, posterior_draws, key, num_replications, num_draws, batch_size)
    return rank_uniformity(ranks, num_draws, num_bins=num_bins, alpha=alpha)
