"""One entry point for the posterior of a program in ``structbandits.models`` given data.

    result = posterior(mixed_effect_linear, data, method="auto")
    result.mean("theta"), result.draws["psi"], result.predictive_draws(mixed_effect_linear, new_data)

Methods: "conjugate" (a closed form registered for the program), "laplace" and "nuts" (always
available). "laplace" is the meTS paper's per-arm pseudo-observation Laplace for
``mixed_effect_logistic`` (``inference.laplace``, then the closed-form meTS posterior) and, for any
other program, a Gaussian at the joint MAP with the Hessian's covariance
(``numpyro.infer.autoguide.AutoLaplaceApproximation``). "auto" picks the closed form when the
program has one, Laplace otherwise.
``data`` holds the program's keyword arguments (hyperparameters and observations) by name.

Results are plain arrays; their ArviZ form (named dimensions, NUTS sample statistics, posterior
predictive groups) is diagnostics' job: ``diagnostics.posterior_to_arviz(result)`` and
``diagnostics.posterior_predictive_to_arviz(result, model, data)``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from structbandits.errors import ValidationError, check_finite, check_integer
from structbandits.inference.conjugate import (
    action_conditional,
    action_marginal,
    effect_evidence,
    effect_posterior,
    gaussian_covariance,
    gaussian_from_moments,
    gaussian_mean,
    gaussian_sample,
    linear_regression_observe_batch,
    linear_regression_stats,
)
from structbandits.inference.bandit_data import check_linear_bandit_data, check_mixed_effect_data
from structbandits.models.linear import linear_bandit
from structbandits.models.restless import restless_dirichlet
from structbandits.inference.dirichlet import (
    check_transition_data,
    dirichlet_covariance,
    dirichlet_mean,
    dirichlet_sample,
    transition_counts,
)
from structbandits.inference.laplace import logistic_mode, logistic_pseudo_observations
from structbandits.models.mixed_effect import marginal_action_prior, mixed_effect_linear, mixed_effect_logistic

__all__ = ["PosteriorResult", "posterior"]

METHODS = ("auto", "conjugate", "laplace", "nuts")


@dataclass(frozen=True)
class PosteriorResult:
    """Named posterior draws shaped (chain, draw, ...), with exact moments where a closed form gave them.

    Attributes
    ----------
    method : "conjugate", "laplace" or "nuts".
    draws : site name -> array (chains, draws, *site shape).
    moments : site name -> (mean, covariance) for closed forms (covariance per arm for ``theta``);
        empty for sampling methods.
    mcmc : the ``numpyro.infer.MCMC`` object for NUTS (carries the sample statistics), else None.
    """

    method: str
    draws: dict[str, np.ndarray]
    moments: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    mcmc: Any = None

    def mean(self, site: str) -> np.ndarray:
        """Posterior mean of ``site``: exact for closed forms, the draws' mean otherwise."""
        if site in self.moments:
            return self.moments[site][0]
        return self.draws[site].mean(axis=(0, 1))

    def predictive_draws(self, model: Callable, data: Mapping[str, Any], *, key: jax.Array | None = None,
                         site: str = "reward") -> np.ndarray:
        """Posterior predictive draws of the observed ``site`` at ``data``: (chains, draws, *site shape).

        Every posterior draw is substituted into ``model`` (``numpyro.infer.Predictive``) and one
        ``site`` value is drawn from it: the same program, so any program works, closed form or not.
        ``diagnostics.posterior_predictive_to_arviz`` wraps these draws as ArviZ data.

        Parameters
        ----------
        model : the program this result is a posterior of.
        data : its keyword arguments (hyperparameters, ``contexts``, ``actions``, ...) at which to
            predict; observed ``rewards`` there, if any, are not conditioned on.
        key : PRNG key (default ``PRNGKey(0)``).
        site : the observed site to draw.
        """
        from numpyro.infer import Predictive

        parameters = inspect.signature(model).parameters
        unknown = sorted(set(data) - set(parameters))
        if unknown:
            raise ValidationError(f"data[{unknown[0]!r}]: not an argument of {getattr(model, '__name__', 'model')}; "
                                  f"expected some of: {', '.join(parameters)}")
        inputs = {name: value for name, value in data.items() if name != "rewards"}
        chains, draws = next(iter(self.draws.values())).shape[:2]
        flat = {name: jnp.asarray(value).reshape((chains * draws,) + value.shape[2:]) for name, value in self.draws.items()}
        key = jax.random.PRNGKey(0) if key is None else key
        predicted = Predictive(model, posterior_samples=flat, return_sites=[site])(key, **inputs)
        if site not in predicted:
            raise ValidationError(f"site: expected a sample site of the program at this data, got {site!r}")
        value = np.asarray(predicted[site])
        return value.reshape((chains, draws) + value.shape[1:])


def _arrays(data: Mapping[str, Any], names: tuple[str, ...]) -> tuple[jax.Array, ...]:
    return tuple(jnp.asarray(data[name]) for name in names)


def _linear_bandit_conjugate(data, key, num_draws) -> PosteriorResult:
    prior_mean, prior_cov, contexts, actions, rewards = _arrays(data, ("prior_mean", "prior_cov", "contexts", "actions", "rewards"))
    noise_var = jnp.asarray(data["noise_scale"]) ** 2
    mask = (actions[None, :] == jnp.arange(prior_mean.shape[0])[:, None]).astype(contexts.dtype)  # (K, n)

    def arm_posterior(mean, cov, weights):
        return linear_regression_observe_batch(gaussian_from_moments(mean, cov), contexts * weights[:, None],
                                               rewards * weights, noise_var)

    arms = jax.vmap(arm_posterior)(prior_mean, prior_cov, mask)
    theta = jax.vmap(gaussian_sample, (0, 0, None))(arms, jax.random.split(key, prior_mean.shape[0]), (num_draws,))
    moments = {"theta": (np.asarray(jax.vmap(gaussian_mean)(arms)), np.asarray(jax.vmap(gaussian_covariance)(arms)))}
    return PosteriorResult("conjugate", {"theta": np.asarray(jnp.swapaxes(theta, 0, 1))[None]}, moments)


def _mixed_effect_from_statistics(data, grams, moments, method, key, num_draws) -> PosteriorResult:
    """The meTS posterior given per-arm statistics ``grams`` (K, d, d), ``moments`` (K, d)."""
    mixing, effect_mean, effect_cov, action_cov = _arrays(data, ("mixing", "effect_mean", "effect_cov", "action_cov"))
    num_arms, (num_effects, d) = mixing.shape[0], effect_mean.shape
    action_chol = jax.vmap(lambda c: gaussian_from_moments(jnp.zeros(d), c).precision_chol)(action_cov)
    effects = effect_posterior(gaussian_from_moments(effect_mean.reshape(-1), effect_cov), mixing,
                               *jax.vmap(effect_evidence)(action_chol, grams, moments))
    effect_key, action_key = jax.random.split(key)
    psi = gaussian_sample(effects, effect_key, (num_draws,))

    def draw_arms(psi_draw, draw_key):
        conditionals = jax.vmap(action_conditional)(action_chol, grams, moments, mixing @ psi_draw.reshape(num_effects, d))
        return jax.vmap(gaussian_sample)(conditionals, jax.random.split(draw_key, num_arms))

    theta = jax.vmap(draw_arms)(psi, jax.random.split(action_key, num_draws))
    theta_mean, theta_cov = jax.vmap(action_marginal, (0, 0, 0, 0, None))(action_chol, grams, moments, mixing, effects)
    exact = {"psi": (np.asarray(gaussian_mean(effects)), np.asarray(gaussian_covariance(effects))),
             "theta": (np.asarray(theta_mean), np.asarray(theta_cov))}
    return PosteriorResult(method, {"psi": np.asarray(psi)[None], "theta": np.asarray(theta)[None]}, exact)


def _arm_masks(data) -> jax.Array:
    """(K, n) 0/1 weights selecting each arm's rounds."""
    actions = jnp.asarray(data["actions"])
    return (actions[None, :] == jnp.arange(np.shape(data["mixing"])[0])[:, None]).astype(jnp.float64)


def _mixed_effect_linear_conjugate(data, key, num_draws) -> PosteriorResult:
    contexts, rewards = _arrays(data, ("contexts", "rewards"))
    noise_var = jnp.asarray(data["noise_scale"]) ** 2
    grams, moments = jax.vmap(lambda w: linear_regression_stats(contexts * w[:, None], rewards * w, noise_var))(_arm_masks(data))
    return _mixed_effect_from_statistics(data, grams, moments, "conjugate", key, num_draws)


LAPLACE_NEWTON_STEPS = 50


def _mixed_effect_logistic_laplace(data, key, num_draws) -> PosteriorResult:
    """The seed's Laplace: per-arm pseudo-observations (G = Hessian, B = G θ̂ + ∇ℓ) at each arm's mode
    under its marginal prior, then the closed-form meTS posterior (``inference.laplace``)."""
    contexts, rewards = _arrays(data, ("contexts", "rewards"))
    prior_mean, prior_cov = marginal_action_prior(*_arrays(data, ("mixing", "effect_mean", "effect_cov", "action_cov")))
    prior_precision = jnp.linalg.inv(prior_cov)  # once per call, (K, d, d), not a hot path

    def pseudo_observations(weights, mean, precision):
        mode = logistic_mode(mean, contexts, rewards, weights, precision, mean, LAPLACE_NEWTON_STEPS)
        return logistic_pseudo_observations(mode, contexts, rewards, weights)

    grams, moments = jax.vmap(pseudo_observations)(_arm_masks(data), prior_mean, prior_precision)
    return _mixed_effect_from_statistics(data, grams, moments, "laplace", key, num_draws)


def _restless_dirichlet_conjugate(data, key, num_draws) -> PosteriorResult:
    """Dirichlet(α + n) per transition row (``inference.dirichlet``); n from the counts and/or the list."""
    checked = check_transition_data(**data)
    concentration = jnp.asarray(checked["concentration"])
    if "counts" in checked:
        concentration = concentration + jnp.asarray(checked["counts"])
    if "arms" in checked:
        concentration = concentration + transition_counts(*(jnp.asarray(checked[name]) for name in
                                                             ("arms", "states", "actions", "next_states")),
                                                          concentration.shape)
    draws = dirichlet_sample(key, concentration, (num_draws,))
    moments = {"transitions": (np.asarray(dirichlet_mean(concentration)), np.asarray(dirichlet_covariance(concentration)))}
    return PosteriorResult("conjugate", {"transitions": np.asarray(draws)[None]}, moments)


CLOSED_FORMS: dict[Callable, Callable[..., PosteriorResult]] = {
    linear_bandit: _linear_bandit_conjugate,
    mixed_effect_linear: _mixed_effect_linear_conjugate,
    restless_dirichlet: _restless_dirichlet_conjugate,
}
# Programs whose closed form holds for some arguments only: when ``applies(data)`` is False, "auto"
# uses the given method instead (the hierarchical restless prior is not conjugate: NUTS).
CONDITIONAL_FORMS: dict[Callable, tuple[Callable[[Mapping[str, Any]], bool], str]] = {
    restless_dirichlet: (lambda data: data.get("groups") is None, "nuts"),
}
# Observed sites a program needs, where they are not the bandits' contexts/actions/rewards.
OBSERVATIONS: dict[Callable, tuple[str, ...]] = {restless_dirichlet: ()}
# Program-specific checks of the data, run for every method (NUTS included).
DATA_CHECKS: dict[Callable, Callable[..., Any]] = {
    restless_dirichlet: lambda data: check_transition_data(**data),
    linear_bandit: check_linear_bandit_data,
    mixed_effect_linear: check_mixed_effect_data,
    mixed_effect_logistic: lambda data: check_mixed_effect_data(data, binary=True),
}
LAPLACE_FORMS: dict[Callable, Callable[..., PosteriorResult]] = {
    mixed_effect_logistic: _mixed_effect_logistic_laplace,
}


def _laplace(model, data, key, num_draws, num_steps) -> PosteriorResult:
    from numpyro.infer import SVI, Trace_ELBO
    from numpyro.infer.autoguide import AutoLaplaceApproximation
    from numpyro.optim import Adam

    guide = AutoLaplaceApproximation(model)
    fit_key, draw_key = jax.random.split(key)
    fit = SVI(model, guide, Adam(0.02), Trace_ELBO()).run(fit_key, num_steps, progress_bar=False, **data)
    draws = guide.sample_posterior(draw_key, fit.params, sample_shape=(num_draws,))
    return PosteriorResult("laplace", {name: np.asarray(value)[None] for name, value in draws.items()})


def _nuts(model, data, key, num_draws, num_warmup, num_chains) -> PosteriorResult:
    from structbandits.inference.mcmc import nuts_sampler, run_nuts

    sampler = nuts_sampler(model, num_warmup=num_warmup, num_samples=num_draws, num_chains=num_chains)
    draws = run_nuts(sampler, key, **data)
    return PosteriorResult("nuts", {name: np.asarray(value) for name, value in draws.items()}, mcmc=sampler)


def _check_finite_tree(name: str, value: Any) -> Any:
    """Finite numbers in every leaf; leaves keep their dtype (integer leaves, e.g. user ids, stay integers)."""
    if isinstance(value, Mapping):
        return {key: _check_finite_tree(f"{name}[{key!r}]", leaf) for key, leaf in value.items()}
    checked = check_finite(name, value)
    return np.asarray(value) if np.issubdtype(np.asarray(value).dtype, np.integer) else checked


def _validate_data(model: Callable, data: Mapping[str, Any]) -> dict[str, Any]:
    parameters = inspect.signature(model).parameters
    unknown = sorted(set(data) - set(parameters))
    if unknown:
        raise ValidationError(f"data[{unknown[0]!r}]: not an argument of {model.__name__}; expected some of: {', '.join(parameters)}")
    required = [name for name, p in parameters.items() if p.default is inspect.Parameter.empty]
    required += [name for name in OBSERVATIONS.get(model, ("contexts", "actions", "rewards")) if name in parameters]
    missing = [name for name in required if data.get(name) is None]
    if missing:
        raise ValidationError(f"data[{missing[0]!r}]: required by {model.__name__} to condition on, missing")
    checked = {name: value if name == "actions" else _check_finite_tree(f"data[{name!r}]", value) for name, value in data.items()}
    if "actions" in checked:
        actions = np.asarray(checked["actions"])
        if not np.issubdtype(actions.dtype, np.integer):
            raise ValidationError(f"data['actions']: expected integer arm indices, got dtype {actions.dtype}")
    return checked


def posterior(
    model: Callable,
    data: Mapping[str, Any],
    method: str = "auto",
    *,
    key: jax.Array | None = None,
    num_draws: int = 1000,
    num_warmup: int = 500,
    num_chains: int = 2,
    laplace_steps: int = 3000,
) -> PosteriorResult:
    """Posterior of ``model`` given ``data`` by a closed form, Laplace or NUTS.

    Parameters
    ----------
    model : a program from ``structbandits.models`` (or any NumPyro program, for "laplace" / "nuts").
    data : the program's keyword arguments by name, including the observed ``rewards``.
    method : "auto" (closed form if registered for ``model``, else Laplace), "conjugate", "laplace" or "nuts".
    key : PRNG key for the draws (default ``PRNGKey(0)``).
    num_draws : draws per chain; num_warmup, num_chains : NUTS settings; laplace_steps : MAP optimiser steps.
    """
    if method not in METHODS:
        raise ValidationError(f"method: expected one of {', '.join(METHODS)}, got {method!r}")
    num_draws = check_integer("num_draws", num_draws, minimum=1)
    data = _validate_data(model, data)
    if model in DATA_CHECKS:
        DATA_CHECKS[model](data)
    key = jax.random.PRNGKey(0) if key is None else key
    applies, otherwise = CONDITIONAL_FORMS.get(model, (lambda data: True, "laplace"))
    if method == "auto":
        method = "conjugate" if model in CLOSED_FORMS and applies(data) else otherwise
    if method == "conjugate":
        if model not in CLOSED_FORMS:
            known = ", ".join(m.__name__ for m in CLOSED_FORMS)
            raise ValidationError(f"method: no closed form is registered for {model.__name__} (only for {known}); use 'laplace' or 'nuts'")
        if not applies(data):
            raise ValidationError(f"method: the closed form of {model.__name__} does not apply to these data "
                                  f"(a hierarchical prior); use 'auto' or '{otherwise}'")
        return CLOSED_FORMS[model](data, key, num_draws)
    if method == "laplace":
        if model in LAPLACE_FORMS:
            return LAPLACE_FORMS[model](data, key, num_draws)
        return _laplace(model, data, key, num_draws, check_integer("laplace_steps", laplace_steps, minimum=1))
    return _nuts(model, data, key, num_draws, num_warmup, num_chains)
