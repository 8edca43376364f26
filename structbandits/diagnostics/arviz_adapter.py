"""The single place that calls ArviZ.

ArviZ 0.23.x (Python 3.11) returns ``InferenceData``; ArviZ 1.x (Python >= 3.12) returns a
``DataTree`` and moved plotting to arviz-plots. The functions here use the API common to both
(``from_numpyro``, ``summary`` with the mean/sd/ess/r_hat columns), branch where the two differ
(``from_dict`` takes the posterior group in 0.x and a mapping of groups in 1.x), and return
summaries restricted to the common columns so callers see the same table from either line.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["AGENT_DIMS", "GROUPS", "POSTERIOR_DIMS", "SUMMARY_COLUMNS", "from_draws", "from_mcmc", "policy_to_arviz",
           "posterior_predictive_to_arviz", "posterior_to_arviz", "summary"]

# Named dimensions of the sites agents' ``posterior_draws`` return (after the draw axis).
AGENT_DIMS = {
    "theta": ["action", "feature"],                       # LinTS, LinUCB, meTS, GLM-TS: per-arm coefficients
    "psi": ["effect", "feature"],                         # meTS: the effects
    "beta": ["reward_feature"],                           # GAMBITTS linear reward stage: [intercept, styles]
    "mu": ["cell", "prompt", "style"],                    # GAMBITTS NIW treatment stage: mean per (cell, prompt)
    "Sigma": ["cell", "prompt", "style", "style2"],       # ... and covariance
    "mean_reward": ["cell", "action"],                    # standard TS: NIG mean per (cell, arm)
    "noise_var": ["cell", "action"],                      # ... and noise variance
    "w1": ["style", "hidden"], "b1": ["hidden"], "w2": ["hidden"],  # ensemble members' MLPs (b2 is scalar)
    "w": ["style"],                                       # ... or linear models (b is scalar)
    "transitions": ["arm", "state", "action", "next_state"],  # Bayesian restless agents: P[i, s, a, s']
}

# Named dimensions of the sites ``inference.posterior`` returns (after the chain and draw axes).
POSTERIOR_DIMS = {
    "theta": ["action", "feature"],                              # per-arm coefficients
    "psi": ["effect_feature"],                                   # meTS effects, flattened (L·d,)
    "transitions": ["arm", "state", "action", "next_state"],     # restless_dirichlet: P[i, s, a, s']
    "group_transitions": ["group", "state", "action", "next_state"],  # ... its hierarchical group means
}

SUMMARY_COLUMNS = ["mean", "sd", "ess_bulk", "ess_tail", "r_hat"]


def _arviz():
    # Several seconds to import: only when a diagnostic is asked for. 0.23 warns on import about
    # the 1.x refactor, which this adapter already handles.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="ArviZ is undergoing a major refactor", category=FutureWarning)
        import arviz

    return arviz


def _major_version(az) -> int:
    return int(az.__version__.split(".")[0])


def from_mcmc(mcmc: Any, *, dims: Mapping[str, list[str]] | None = None,
              coords: Mapping[str, Any] | None = None) -> Any:
    """ArviZ data (posterior and sample stats) from a finished ``numpyro.infer.MCMC`` run."""
    return _arviz().from_numpyro(mcmc, dims=dict(dims or {}), coords=dict(coords or {}))


GROUPS = ("posterior_predictive", "prior", "prior_predictive", "observed_data")


def from_draws(draws: Mapping[str, Any], *, dims: Mapping[str, list[str]] | None = None,
               coords: Mapping[str, Any] | None = None,
               groups: Mapping[str, Mapping[str, Any]] | None = None) -> Any:
    """ArviZ data from named draws shaped (chain, draw, ...).

    ``groups`` adds other groups by name (``posterior_predictive``, ``prior``, ``prior_predictive``:
    (chain, draw, ...) like the posterior; ``observed_data``: without the chain and draw axes).
    """
    az = _arviz()
    all_groups = {"posterior": draws, **dict(groups or {})}
    unknown = sorted(set(all_groups) - {"posterior", *GROUPS})
    if unknown:
        from structbandits.errors import ValidationError

        raise ValidationError(f"groups: expected names among {', '.join(GROUPS)}, got {unknown[0]!r}")
    arrays = {group: {name: np.asarray(value) for name, value in values.items()} for group, values in all_groups.items()}
    options = {"dims": dict(dims or {}), "coords": dict(coords or {})}
    if _major_version(az) >= 1:  # 1.x takes a mapping of groups
        return az.from_dict(arrays, **options)
    return az.from_dict(**arrays, **options)  # 0.x takes each group as a keyword


def summary(data: Any, var_names: list[str] | None = None) -> pd.DataFrame:
    """mean, sd, bulk and tail ESS and R-hat per scalar component, as a DataFrame."""
    az = _arviz()
    options = {"round_to": "none"} if _major_version(az) < 1 else {}  # 0.x rounds to 2 decimals by default
    table = az.summary(data, var_names=var_names, **options)
    return pd.DataFrame(table)[SUMMARY_COLUMNS].astype(float)


def policy_to_arviz(policy: Any, state: Any, *, key: Any = None, num_draws: int = 1000,
                    coords: Mapping[str, Any] | None = None) -> Any:
    """ArviZ data of an agent's current posterior: ``num_draws`` draws from ``policy.posterior_draws``.

    Sites get the named dimensions of ``AGENT_DIMS`` (``theta``: action, feature; ``psi``: effect,
    feature; GAMBITTS ``beta``: reward_feature, ``mu``: cell, prompt, style; ...), one chain.
    ``coords`` labels them (e.g. ``{"style": ["optimism"]}``); unlabelled dimensions are numbered.
    """
    import jax

    from structbandits.errors import ValidationError, check_integer

    if getattr(policy, "posterior_draws", None) is None:
        raise ValidationError("policy: expected a Policy with posterior_draws (a Bayesian agent), got one without")
    num_draws = check_integer("num_draws", num_draws, minimum=1)
    key = jax.random.PRNGKey(0) if key is None else key
    draws = jax.jit(policy.posterior_draws, static_argnums=2)(state, key, num_draws)
    named = {name: np.asarray(value)[None] for name, value in draws.items()}
    # A site takes the named dims only when its rank fits them (a user program may reuse a name like "mu").
    dims = {name: AGENT_DIMS[name] for name, value in named.items()
            if name in AGENT_DIMS and len(AGENT_DIMS[name]) == value.ndim - 2}
    return from_draws(named, dims=dims, coords=coords)


def _posterior_result(result: Any) -> Any:
    from structbandits.errors import ValidationError
    from structbandits.inference.posterior import PosteriorResult

    if not isinstance(result, PosteriorResult):
        raise ValidationError(f"result: expected a PosteriorResult (from inference.posterior), got {type(result).__name__}")
    return result


def posterior_to_arviz(result: Any) -> Any:
    """ArviZ data of a ``PosteriorResult``: its draws with the named dims of ``POSTERIOR_DIMS``.

    A NUTS result converts from its ``numpyro.infer.MCMC`` object, so the ``sample_stats`` group
    (divergences, tree depth, ...) comes along; closed-form and Laplace results from their draws.
    """
    result = _posterior_result(result)
    dims = {name: POSTERIOR_DIMS[name] for name in result.draws if name in POSTERIOR_DIMS}
    if result.mcmc is not None:
        return from_mcmc(result.mcmc, dims=dims)
    return from_draws(result.draws, dims=dims)


def posterior_predictive_to_arviz(result: Any, model: Any, data: Mapping[str, Any], *, key: Any = None,
                                  site: str = "reward") -> Any:
    """Posterior predictive draws of ``site`` at ``data`` (``PosteriorResult.predictive_draws``), as ArviZ data.

    Parameters
    ----------
    result : a ``PosteriorResult`` of ``model``.
    model, data, key, site : as in ``PosteriorResult.predictive_draws``; observed ``rewards`` in
        ``data``, if any, are kept as the ``observed_data`` group, for posterior predictive checks.

    Returns
    -------
    ArviZ data with the ``posterior`` group, ``posterior_predictive`` (``site``: chain, draw,
    round) and, when ``data`` has rewards, ``observed_data``.
    """
    result = _posterior_result(result)
    value = result.predictive_draws(model, data, key=key, site=site)  # (chain, draw, round, ...)
    groups = {"posterior_predictive": {site: value}}
    site_dims = {site: ["round"] + [f"{site}_dim_{i}" for i in range(value.ndim - 3)]}
    if data.get("rewards") is not None and site == "reward":
        groups["observed_data"] = {site: np.asarray(data["rewards"])}
    dims = {name: POSTERIOR_DIMS[name] for name in result.draws if name in POSTERIOR_DIMS} | site_dims
    return from_draws(result.draws, dims=dims, groups=groups)
