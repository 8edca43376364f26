"""One entry point for the posterior of a program in ``structbandits.models`` given data.

    result = posterior(mixed_effect_linear, data, method="auto")
    result.mean("theta"), result.draws["psi"], result.predictive_draws(mixed_effect_linear, new_data)

Methods: "conjugate" (a closed form registered for the program), "laplace" and "nuts" (always
available). "laplace" is the meTS paper's per-arm pseudo-observation Laplace for
``mixed_effect_logistic`` (``inference.pseudo_observations``, then the closed-form meTS posterior)
and, for any other program, ``inference.laplace``: a Gaussian at the joint MAP (L-BFGS in the
unconstrained space) with the exact Hessian's covariance, and a convergence report.

"auto" is honest about what it used: the closed form when one is registered for the program (and
applies to the data) → Laplace when it converged (small Newton decrement, positive definite
Hessian) and fits (Pareto k̂ ≤ 0.7 of its importance ratios, and importance sampling from it moves
no posterior mean by more than 0.35 of its sds) → NUTS otherwise. ``result.method`` says which ran; ``result.fallback_reason`` says in
words why a cheaper method was not used; ``result.diagnostics`` holds the Laplace convergence
report or NUTS's R-hat, ESS and divergences. ``method="laplace"`` on a fit that did not converge
returns it with a ``ConvergenceWarning`` naming what failed; NUTS with poor R-hat / ESS /
divergences warns too. Never silent.

``data`` holds the program's keyword arguments (hyperparameters and observations) by name. A
``functools.partial`` of a program works: its bound arguments join ``data``.

Results are plain arrays; their ArviZ form (named dimensions, NUTS sample statistics, posterior
predictive groups) is diagnostics' job: ``diagnostics.posterior_to_arviz(result)`` and
``diagnostics.posterior_predictive_to_arviz(result, model, data)``.

Layout: this module holds ``posterior`` itself (validation, the "auto" choice, the fallbacks), the
whole-program Laplace ``_laplace`` and NUTS ``_nuts`` with their acceptance thresholds;
``PosteriorResult`` (with ``_name``, ``_unwrap``) is in ``inference.posterior_result``, the closed forms,
the meTS logistic Laplace and the registries (``CLOSED_FORMS``, ``CONDITIONAL_FORMS``, ``OBSERVATIONS``,
``DATA_CHECKS``, ``LAPLACE_FORMS``, ``LAPLACE_NEWTON_STEPS``) in ``inference.posterior_forms``; every
one of those names still imports from here (the same objects).
"""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import jax
import numpy as np

from structbandits.errors import ConvergenceWarning, ValidationError, check_finite, check_integer
from structbandits.inference.bandit_data import check_round_lengths
from structbandits.inference.importance import KHAT_USABLE, importance_mean_shift, pareto_khat
from structbandits.inference.laplace import laplace_failure, laplace_fit, laplace_log_ratios, laplace_sample
from structbandits.inference.posterior_forms import (  # re-exported: imports from here keep working
    CLOSED_FORMS,
    CONDITIONAL_FORMS,
    DATA_CHECKS,
    LAPLACE_FORMS,
    LAPLACE_NEWTON_STEPS,
    OBSERVATIONS,
)
from structbandits.inference.posterior_result import PosteriorResult, _name, _unwrap  # re-exported
from structbandits.inference.program import latent_space

__all__ = ["LAPLACE_NEWTON_STEPS", "PosteriorResult", "posterior"]  # LAPLACE_NEWTON_STEPS re-exported from posterior_forms

METHODS = ("auto", "conjugate", "laplace", "nuts")


def _laplace(model, data, key, num_draws, max_steps) -> tuple[PosteriorResult, str | None]:
    """``inference.laplace`` on the whole program: the result, and what failed (None if it converged)."""
    init_key, draw_key = jax.random.split(key)
    model, arrays = _split_static(model, data)
    space = latent_space(model, arrays, init_key)

    @jax.jit
    def fit_and_draw(data, key):
        potential = lambda z: space.potential(z, data)
        fit = laplace_fit(potential, space.init, max_steps=max_steps)
        latents = laplace_sample(fit, key, (max(num_draws, KHAT_DRAWS),))
        draws = jax.vmap(lambda z: space.constrain(z, data))(latents)
        return fit.diagnostics, draws, laplace_log_ratios(fit, potential, latents)

    diagnostics, draws, log_ratios = fit_and_draw(arrays, draw_key)
    log_ratios = np.asarray(log_ratios)
    report = {name: np.asarray(value).item() for name, value in diagnostics._asdict().items()}
    report["pareto_k"] = khat = pareto_khat(log_ratios)
    values = np.concatenate([np.asarray(value).reshape(log_ratios.shape[0], -1) for value in draws.values()], axis=1)
    report["importance_mean_shift"] = shift = importance_mean_shift(values, log_ratios)
    result = PosteriorResult("laplace", {name: np.asarray(value)[None, :num_draws] for name, value in draws.items()},
                             diagnostics=report)
    failure = laplace_failure(diagnostics, max_steps=max_steps)
    if failure is None and not khat <= KHAT_USABLE:
        failure = (f"the Laplace Gaussian is a poor fit to the posterior: the Pareto k̂ of its importance ratios "
                   f"is {khat:.2f} > {KHAT_USABLE} (the mode is not where the mass is, e.g. the variance of a "
                   f"hierarchy, or the posterior is skewed)")
    if failure is None and not shift <= MEAN_SHIFT_MAX:
        failure = (f"the Laplace Gaussian is a poor fit to the posterior: importance sampling from it puts a "
                   f"posterior mean {shift:.2f} of its sds away from its own mean (> {MEAN_SHIFT_MAX}; Pareto k̂ "
                   f"{khat:.2f})")
    report["converged"] = failure is None
    return result, failure


MEAN_SHIFT_MAX = 0.35  # as check_posterior's Laplace tolerance: means within 0.35 posterior sd
KHAT_DRAWS = 4000  # draws for the Pareto k̂ check (at least; all of the draws when more): k̂ from fewer is noisy
R_HAT_MAX = 1.05
ESS_PER_CHAIN = 100


def _nuts(model, data, key, num_draws, num_warmup, num_chains) -> tuple[PosteriorResult, str | None]:
    """NUTS, with R-hat, bulk ESS and divergences: the result, and what looks poor (None if nothing)."""
    from numpyro.diagnostics import effective_sample_size, split_gelman_rubin

    from structbandits.inference.mcmc import nuts_sampler, run_nuts

    model, arrays = _split_static(model, data)
    sampler = nuts_sampler(model, num_warmup=num_warmup, num_samples=num_draws, num_chains=num_chains)
    draws = {name: np.asarray(value) for name, value in run_nuts(sampler, key, **arrays).items()}
    flat = [value.reshape(value.shape[0], value.shape[1], -1) for value in draws.values()]
    r_hat = max((float(np.nanmax(split_gelman_rubin(x))) for x in flat if x.shape[1] >= 4), default=float("nan"))
    ess = min(float(np.nanmin(effective_sample_size(x))) for x in flat)
    divergences = int(np.asarray(sampler.get_extra_fields()["diverging"]).sum())
    problems = []
    if not r_hat <= R_HAT_MAX:
        problems.append(f"R-hat {r_hat:.3f} > {R_HAT_MAX}")
    if not ess >= ESS_PER_CHAIN * num_chains:
        problems.append(f"bulk ESS {ess:.0f} < {ESS_PER_CHAIN * num_chains}")
    if divergences:
        problems.append(f"{divergences} divergent transitions")
    report = {"converged": not problems, "r_hat_max": r_hat, "ess_bulk_min": ess, "divergences": divergences}
    result = PosteriorResult("nuts", draws, mcmc=sampler, diagnostics=report)
    return result, ("NUTS: " + ", ".join(problems) + " (more warmup or draws, or reparameterise)") if problems else None


def _check_finite_tree(name: str, value: Any) -> Any:
    """Finite numbers in every leaf; leaves keep their dtype (integer leaves, e.g. user ids, stay integers;
    boolean flags, e.g. ``linear_bandit_nig``'s ``shared``, stay booleans and so static)."""
    if isinstance(value, Mapping):
        return {key: _check_finite_tree(f"{name}[{key!r}]", leaf) for key, leaf in value.items()}
    checked = check_finite(name, value)
    kind = np.asarray(value).dtype
    return np.asarray(value) if np.issubdtype(kind, np.integer) or kind == np.bool_ else checked


def _split_static(model: Callable, data: Mapping[str, Any]) -> tuple[Callable, dict[str, Any]]:
    """Bind the arguments that are not floating-point data (integers, booleans, strings, None: sizes
    such as a plate's ``num_users``) into the program, so the rest alone is traced by ``jit``."""

    def traced(value):
        if isinstance(value, Mapping) or np.ndim(value) > 0:
            return True
        return isinstance(value, (np.ndarray, np.generic, jax.Array, float)) and np.issubdtype(np.asarray(value).dtype, np.floating)

    static = {name: value for name, value in data.items() if not traced(value)}
    return (functools.partial(model, **static) if static else model), {
        name: value for name, value in data.items() if name not in static}


def _validate_data(model: Callable, data: Mapping[str, Any]) -> dict[str, Any]:
    parameters = inspect.signature(model).parameters
    unknown = sorted(set(data) - set(parameters))
    if unknown:
        raise ValidationError(f"data[{unknown[0]!r}]: not an argument of {_name(model)}; expected some of: {', '.join(parameters)}")
    required = [name for name, p in parameters.items() if p.default is inspect.Parameter.empty]
    required += [name for name in OBSERVATIONS.get(model, ("contexts", "actions", "rewards")) if name in parameters]
    missing = [name for name in required if data.get(name) is None]
    if missing:
        raise ValidationError(f"data[{missing[0]!r}]: required by {_name(model)} to condition on, missing")
    check_round_lengths(data)
    checked = {name: value if name == "actions" else _check_finite_tree(f"data[{name!r}]", value) for name, value in data.items()}
    if "actions" in checked:
        actions = np.asarray(checked["actions"])
        if not np.issubdtype(actions.dtype, np.integer):
            raise ValidationError(f"data['actions']: expected integer arm indices, got dtype {actions.dtype}")
    return checked


def _as_chains(result: PosteriorResult, num_chains: int) -> PosteriorResult:
    """Independent draws (1, C·N, ...) as (C, N, ...)."""
    draws = {name: value.reshape((num_chains, value.shape[1] // num_chains) + value.shape[2:])
             for name, value in result.draws.items()}
    return replace(result, draws=draws)


def posterior(
    model: Callable,
    data: Mapping[str, Any],
    method: str = "auto",
    *,
    key: jax.Array | None = None,
    num_draws: int = 1000,
    num_warmup: int = 500,
    num_chains: int = 2,
    laplace_steps: int = 1000,
) -> PosteriorResult:
    """Posterior of ``model`` given ``data`` by a closed form, Laplace or NUTS.

    Parameters
    ----------
    model : a program from ``structbandits.models`` or any NumPyro program (a ``functools.partial``
        of one too: its bound arguments join ``data``).
    data : the program's keyword arguments by name, including the observed ``rewards``.
    method : "auto" (closed form if registered for ``model`` → Laplace if it converged → NUTS),
        "conjugate", "laplace" or "nuts".
    key : PRNG key for the draws (default ``PRNGKey(0)``).
    num_draws : draws per chain; num_chains : chains (NUTS's Markov chains; for the closed forms and
        Laplace, independent draws split into this many chains); num_warmup : NUTS warmup steps;
        laplace_steps : at most this many L-BFGS steps to the mode (it stops at the mode).

    Returns
    -------
    PosteriorResult: ``method`` (what ran), ``fallback_reason`` (why "auto" used a slower method),
    ``diagnostics`` (the convergence report).

    Warns
    -----
    ConvergenceWarning when the returned result did not converge (a Laplace fit asked for by
    ``method="laplace"``, or NUTS with R-hat > 1.05, bulk ESS < 100 per chain or divergences).
    """
    if method not in METHODS:
        raise ValidationError(f"method: expected one of {', '.join(METHODS)}, got {method!r}")
    num_draws = check_integer("num_draws", num_draws, minimum=1)
    num_chains = check_integer("num_chains", num_chains, minimum=1)
    laplace_steps = check_integer("laplace_steps", laplace_steps, minimum=1)
    model, data = _unwrap(model, data)
    data = _validate_data(model, data)
    if model in DATA_CHECKS:
        DATA_CHECKS[model](data)
    key = jax.random.PRNGKey(0) if key is None else key
    applies, otherwise = CONDITIONAL_FORMS.get(model, (lambda data: True, "laplace"))
    requested, fallback_reason = method, None
    if method == "auto":
        if model in CLOSED_FORMS and applies(data):
            method = "conjugate"
        elif model in CLOSED_FORMS:
            method, fallback_reason = otherwise, f"the closed form of {_name(model)} does not apply to these data"
        else:
            method = otherwise
    if method == "conjugate":
        if model not in CLOSED_FORMS:
            known = ", ".join(m.__name__ for m in CLOSED_FORMS)
            raise ValidationError(f"method: no closed form is registered for {_name(model)} (only for {known}); use 'laplace' or 'nuts'")
        if not applies(data):
            raise ValidationError(f"method: the closed form of {_name(model)} does not apply to these data "
                                  f"(a hierarchical prior); use 'auto' or '{otherwise}'")
        return replace(_as_chains(CLOSED_FORMS[model](data, key, num_chains * num_draws), num_chains), model=model)
    if method == "laplace":
        if model in LAPLACE_FORMS:
            result, failure = LAPLACE_FORMS[model](data, key, num_chains * num_draws)
        else:
            result, failure = _laplace(model, data, key, num_chains * num_draws, laplace_steps)
        result = _as_chains(result, num_chains)
        if failure is None or requested == "laplace":
            if failure is not None:
                warnings.warn(f"posterior: the Laplace approximation of {_name(model)} failed its checks: {failure}. "
                              f"The draws are not trustworthy; use method='auto' (falls back to NUTS) or 'nuts'.",
                              ConvergenceWarning, stacklevel=2)
            return replace(result, model=model)
        fallback_reason = f"Laplace rejected: {failure}"
    result, problems = _nuts(model, data, key, num_draws, num_warmup, num_chains)
    if problems is not None:
        warnings.warn(f"posterior: NUTS on {_name(model)} looks unreliable: {problems}", ConvergenceWarning,
                      stacklevel=2)
    return replace(result, model=model, fallback_reason=fallback_reason)
