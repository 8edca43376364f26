"""The single place that calls ArviZ.

ArviZ 0.23.x (Python 3.11) returns ``InferenceData``; ArviZ 1.x (Python >= 3.12) returns a
``DataTree`` and moved plotting to arviz-plots. The functions here use the API common to both
(``from_numpyro``, ``summary`` with the mean/sd/ess/r_hat columns), branch where the two differ
(``from_dict`` takes the posterior group in 0.x and a mapping of groups in 1.x), and return
summaries restricted to the common columns so callers see the same table from either line.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from structbandits.errors import ValidationError, check_integer

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


def _unwrapped(fn: Any) -> Any:
    """``fn`` without ``functools.partial`` and decorator (``__wrapped__``) layers."""
    while True:
        if isinstance(fn, functools.partial):
            fn = fn.func
        elif getattr(fn, "__wrapped__", None) is not None:
            fn = fn.__wrapped__
        else:
            return fn


def _defined_in(fn: Any, package: str) -> bool:
    return (getattr(_unwrapped(fn), "__module__", None) or "").startswith(package)


def _dim_names(shapes: Mapping[str, tuple[int, ...]], builtin: Mapping[str, list[str]] | None,
               dims: Mapping[str, Any] | None, coords: Mapping[str, Any] | None) -> dict[str, list[str]]:
    """Named dims per site: ``builtin`` where a site's rank fits them, overridden by the user's ``dims``.

    ``shapes`` : site name -> its shape after the chain and draw axes. The user's ``dims`` and
    ``coords`` are checked here, so a mistake is a ValidationError naming it rather than an error
    from inside ArviZ or xarray.
    """
    named = {name: list(builtin[name]) for name, shape in shapes.items()
             if builtin and name in builtin and len(builtin[name]) == len(shape)}
    if dims is not None and not isinstance(dims, Mapping):
        raise ValidationError(f"dims: expected a mapping site name -> list of dimension names, got {type(dims).__name__}")
    listing = ", ".join(f"{name} {tuple(shape)}" for name, shape in shapes.items())
    for name, names in (dims or {}).items():
        if name not in shapes:
            raise ValidationError(f"dims[{name!r}]: no site {name!r} here; expected one of the sites (shape after "
                                  f"chain and draw): {listing}")
        if isinstance(names, str) or not all(isinstance(one, str) for one in names):
            raise ValidationError(f"dims[{name!r}]: expected a list of dimension names, got {names!r}")
        shape = tuple(shapes[name])
        if len(names) != len(shape):
            raise ValidationError(f"dims[{name!r}]: site {name!r} has shape {shape} after the chain and draw axes, "
                                  f"so expected {len(shape)} dimension names, got {len(names)}: {list(names)}")
        named[name] = list(names)
    sizes: dict[str, tuple[int, str]] = {}
    for name, shape in shapes.items():
        for axis, size in enumerate(shape):
            dim = named[name][axis] if name in named else f"{name}_dim_{axis}"  # ArviZ's default names
            if sizes.setdefault(dim, (size, name))[0] != size:
                raise ValidationError(f"dims[{name!r}]: dimension {dim!r} has size {size} in site {name!r} {tuple(shape)} "
                                      f"but {sizes[dim][0]} in site {sizes[dim][1]!r}; expected one size per name")
    for dim, labels in (coords or {}).items():
        if dim in sizes and np.ndim(labels) >= 1 and len(labels) != sizes[dim][0]:
            raise ValidationError(f"coords[{dim!r}]: dimension {dim!r} has size {sizes[dim][0]} "
                                  f"(site {sizes[dim][1]!r}), got {len(labels)} labels")
    return named


def _is_package_agent(policy: Any, state: Any) -> bool:
    """Whether the sites ``policy.posterior_draws`` returns are the package's own (so ``AGENT_DIMS`` fit)."""
    from structbandits.agents.generic import NumPyroTSState

    # The generic sampler is the package's code but draws the sites of the user's program.
    return not isinstance(state, NumPyroTSState) and _defined_in(policy.posterior_draws, "structbandits.agents")


def policy_to_arviz(policy: Any, state: Any, *, key: Any = None, num_draws: int = 1000, num_chains: int = 4,
                    dims: Mapping[str, list[str]] | None = None, coords: Mapping[str, Any] | None = None) -> Any:
    """ArviZ data of an agent's current posterior: ``num_chains`` chains of ``num_draws`` draws each.

    One jitted call of ``policy.posterior_draws`` draws ``num_chains * num_draws`` draws, split into
    chains in order: posterior group shaped (chain, draw, ...), so ``summary`` gives R-hat and ESS.

    How the draws relate to a posterior (see each agent's ``posterior_draws``):

    - exact i.i.d. draws of the agent's posterior: ``lin_ts`` and ``lin_ucb`` (the per-arm Gaussian
      both keep), ``mets`` and ``hier_ts`` (ψ then θ | ψ, jointly), ``standard_ts`` (NIG per cell and
      arm), ``fo_gambitts`` (Gaussian β, NIW μ, Σ), ``po_gambitts`` (β, given its offline treatment
      model), ``ens_fo_gambitts``'s ``mu`` and ``Sigma``, and the Bayesian restless agents with
      ``pooling="arm"`` or ``"group"`` (Dirichlet ``transitions``). Here R-hat ≈ 1 and ESS ≈ all draws.
    - i.i.d. draws of an approximation: ``mets_glm``, ``hier_ts_glm`` and ``glm_ts`` (Gaussian from
      Laplace pseudo-observations at each arm's mode), ``numpyro_ts(method="laplace")`` (Gaussian at
      the MAP in the program's unconstrained space, mapped back), the restless agents with
      ``pooling="partial"`` (group mean from the pooled posterior). R-hat says nothing about the
      approximation's error.
    - not independent: the ensembles (``ens_po_gambitts``, ``ens_fo_gambitts``): each draw is one
      member's network, the members taken in random permutations (every member once per block of M
      consecutive draws), a uniform distribution over M points; ``numpyro_ts(method="nuts")``:
      resampled at random from the last refit's NUTS draws, one short chain shared by all chains
      here, so R-hat ≈ 1 is not a convergence check and ESS overstates the information.

    Named dims: the package's agents' sites get ``AGENT_DIMS`` (``theta``: action, feature; ``psi``:
    effect, feature; GAMBITTS ``beta``: reward_feature, ``mu``: cell, prompt, style; ...) where the
    site's rank fits them. Sites of any other ``posterior_draws`` (a user's Policy, or ``numpyro_ts``,
    which draws the sites of the user's program, detected by its ``NumPyroTSState``) get ArviZ's
    default names (``theta_dim_0``, ...) unless ``dims`` names them.

    Parameters
    ----------
    policy, state : a Policy with ``posterior_draws`` and its state (e.g. from ``run_experiment(...,
        return_states=True)``, one seed's slice).
    key : PRNG key (default ``PRNGKey(0)``).
    num_draws, num_chains : draws per chain (>= 1) and chains (>= 1).
    dims : site -> dimension names (after chain and draw), overriding the built-in ones.
    coords : dimension -> labels (e.g. ``{"style": ["optimism"]}``); unlabelled dimensions are numbered.

    Raises
    ------
    ValidationError : a policy without ``posterior_draws``; ``dims`` naming a missing site or with the
        wrong number of names for the site's shape; ``coords`` of the wrong length.
    """
    import jax

    if getattr(policy, "posterior_draws", None) is None:
        raise ValidationError("policy: expected a Policy with posterior_draws (a Bayesian agent), got one without")
    num_draws = check_integer("num_draws", num_draws, minimum=1)
    num_chains = check_integer("num_chains", num_chains, minimum=1)
    total = num_chains * num_draws
    key = jax.random.PRNGKey(0) if key is None else key
    draws = jax.jit(policy.posterior_draws, static_argnums=2)(state, key, total)
    named = {}
    for name, value in draws.items():
        value = np.asarray(value)
        if value.ndim == 0 or value.shape[0] != total:
            raise ValidationError(f"policy: expected posterior_draws to return ({total}, ...) arrays, got site "
                                  f"{name!r} with shape {value.shape}")
        named[name] = value.reshape((num_chains, num_draws) + value.shape[1:])
    shapes = {name: value.shape[2:] for name, value in named.items()}
    builtin = AGENT_DIMS if _is_package_agent(policy, state) else None
    return from_draws(named, dims=_dim_names(shapes, builtin, dims, coords), coords=coords)


def _posterior_result(result: Any) -> Any:
    from structbandits.inference.posterior import PosteriorResult

    if not isinstance(result, PosteriorResult):
        raise ValidationError(f"result: expected a PosteriorResult (from inference.posterior), got {type(result).__name__}")
    return result


def _is_package_program(model: Any) -> bool:
    return model is not None and _defined_in(model, "structbandits.models")


def _observed_shapes(mcmc: Any) -> dict[str, tuple[int, ...]]:
    """Shapes of the observed sites of a finished MCMC run's program (which ``from_numpyro`` also names)."""
    from numpyro import handlers
    from numpyro.infer import init_to_sample

    model = handlers.substitute(handlers.seed(mcmc.sampler.model, 0), substitute_fn=init_to_sample)
    trace = handlers.trace(model).get_trace(*getattr(mcmc, "_args", ()), **getattr(mcmc, "_kwargs", {}))
    return {name: tuple(np.shape(site["value"])) for name, site in trace.items()
            if site["type"] == "sample" and site["is_observed"]}


def posterior_to_arviz(result: Any, *, dims: Mapping[str, list[str]] | None = None,
                       coords: Mapping[str, Any] | None = None) -> Any:
    """ArviZ data of a ``PosteriorResult``: the ``to_arviz`` of a result.

    (A function here rather than a method: ``inference`` may not import ``diagnostics``.) A NUTS
    result converts from its ``numpyro.infer.MCMC`` object, so the ``sample_stats`` group
    (divergences, tree depth, ...) and the observed data come along; closed-form and Laplace results
    from their draws.

    Named dims: a posterior of one of the package's programs (``result.model`` defined in
    ``structbandits.models``) gets ``POSTERIOR_DIMS`` (``theta``: action, feature; ``psi``:
    effect_feature; ``transitions``: arm, state, action, next_state; ...). Any other program's sites
    (a user's, or a result without ``model``) keep ArviZ's default names (``theta_dim_0``, ...), even
    where a name matches a built-in one. ``dims`` (site -> names after chain and draw; for a NUTS
    result observed sites too) and ``coords`` (dimension -> labels) apply to either and override the
    built-in names.

    Raises
    ------
    ValidationError : ``result`` not a PosteriorResult; ``dims`` naming a missing site or with the wrong
        number of names for the site's shape; ``coords`` of the wrong length.
    """
    result = _posterior_result(result)
    builtin = POSTERIOR_DIMS if _is_package_program(getattr(result, "model", None)) else None
    if result.mcmc is not None:
        samples = result.mcmc.get_samples(group_by_chain=True)
        shapes = {name: np.shape(value)[2:] for name, value in samples.items()}
        if set(dims or {}) - set(shapes):
            shapes |= {name: shape for name, shape in _observed_shapes(result.mcmc).items() if name not in shapes}
        return from_mcmc(result.mcmc, dims=_dim_names(shapes, builtin, dims, coords), coords=coords)
    shapes = {name: np.shape(value)[2:] for name, value in result.draws.items()}
    return from_draws(result.draws, dims=_dim_names(shapes, builtin, dims, coords), coords=coords)


def posterior_predictive_to_arviz(result: Any, model: Any, data: Mapping[str, Any], *, key: Any = None,
                                  site: str = "reward", dims: Mapping[str, list[str]] | None = None,
                                  coords: Mapping[str, Any] | None = None) -> Any:
    """Posterior predictive draws of ``site`` at ``data`` (``PosteriorResult.predictive_draws``), as ArviZ data.

    Parameters
    ----------
    result : a ``PosteriorResult`` of ``model``.
    model, data, key, site : as in ``PosteriorResult.predictive_draws``; observed ``rewards`` in
        ``data``, if any, are kept as the ``observed_data`` group, for posterior predictive checks.
    dims, coords : as in ``posterior_to_arviz``; ``dims[site]`` names the predicted site's axes.
        For the package's own programs ``site`` gets (round, ...) and the parameters
        ``POSTERIOR_DIMS``; a user's program gets ArviZ's default names unless ``dims`` says.

    Returns
    -------
    ArviZ data with the ``posterior`` group, ``posterior_predictive`` (``site``: chain, draw, ...)
    and, when ``data`` has rewards, ``observed_data``.
    """
    result = _posterior_result(result)
    value = result.predictive_draws(model, data, key=key, site=site)  # (chain, draw, round, ...)
    groups = {"posterior_predictive": {site: value}}
    if data.get("rewards") is not None and site == "reward":
        groups["observed_data"] = {site: np.asarray(data["rewards"])}
    shapes = {name: np.shape(draws)[2:] for name, draws in result.draws.items() if name != site} | {site: value.shape[2:]}
    builtin = None
    if _is_package_program(model):
        builtin = dict(POSTERIOR_DIMS) | {site: ["round"] + [f"{site}_dim_{i}" for i in range(value.ndim - 3)]}
    return from_draws(result.draws, dims=_dim_names(shapes, builtin, dims, coords), coords=coords, groups=groups)
