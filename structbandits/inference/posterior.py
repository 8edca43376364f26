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
"""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from structbandits.errors import ConvergenceWarning, ValidationError, check_finite, check_integer
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
from structbandits.inference.bandit_data import check_linear_bandit_data, check_mixed_effect_data, check_round_lengths
from structbandits.inference.nig import check_linear_bandit_nig_data, linear_bandit_nig_draws
from structbandits.models.linear import linear_bandit, linear_bandit_nig
from structbandits.models.restless import restless_dirichlet
from structbandits.inference.dirichlet import (
    check_transition_data,
    dirichlet_covariance,
    dirichlet_mean,
    dirichlet_sample,
    transition_counts,
)
from structbandits.inference.importance import KHAT_USABLE, importance_mean_shift, pareto_khat
from structbandits.inference.laplace import (DECREMENT_TOLERANCE, laplace_failure, laplace_fit, laplace_log_ratios,
                                             laplace_sample)
from structbandits.inference.program import latent_space
from structbandits.inference.pseudo_observations import logistic_mode, logistic_pseudo_observations
from structbandits.models.mixed_effect import marginal_action_prior, mixed_effect_linear, mixed_effect_logistic

__all__ = ["PosteriorResult", "posterior"]

METHODS = ("auto", "conjugate", "laplace", "nuts")


@dataclass(frozen=True)
class PosteriorResult:
    """Named posterior draws shaped (chain, draw, ...), with exact moments where a closed form gave them.

    Attributes
    ----------
    method : the method that produced the draws: "conjugate", "laplace" or "nuts".
    draws : site name -> array (chains, draws, *site shape). For "conjugate" and "laplace" the draws
        are independent (exact, or from the Laplace Gaussian), split into ``num_chains`` chains so
        that ArviZ's R-hat is defined (≈ 1 by construction); for "nuts", the Markov chains.
    moments : site name -> (mean, covariance) for closed forms (covariance per arm for ``theta``);
        empty for sampling methods.
    mcmc : the ``numpyro.infer.MCMC`` object for NUTS (carries the sample statistics), else None.
    model : the program (a ``functools.partial`` unwrapped to its function), or None.
    fallback_reason : why "auto" did not use a cheaper method, in words (None when it did not fall back).
    diagnostics : the method's convergence report: for Laplace ``converged``, ``gradient_norm``,
        ``iterations``, ``positive_definite``, ``min_eigenvalue``, ``newton_decrement`` (posterior
        sds from the mode), ``potential``, ``pareto_k`` (the Pareto k̂ of the importance ratios
        p/q at the Laplace draws, ``inference.importance``: > 0.7 means a poor fit) and
        ``importance_mean_shift`` (how far importance sampling moves the means, in sds); for NUTS ``r_hat_max``, ``ess_bulk_min``, ``divergences``,
        ``converged``; empty for closed forms (exact).
    """

    method: str
    draws: dict[str, np.ndarray]
    moments: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    mcmc: Any = None
    model: Callable | None = None
    fallback_reason: str | None = None
    diagnostics: dict[str, Any] = field(default_factory=dict)

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

        model, data = _unwrap(model, data)
        parameters = inspect.signature(model).parameters
        unknown = sorted(set(data) - set(parameters))
        if unknown:
            raise ValidationError(f"data[{unknown[0]!r}]: not an argument of {_name(model)}; "
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


def _linear_bandit_nig_conjugate(data, key, num_draws) -> PosteriorResult:
    draws, moments = linear_bandit_nig_draws(data, key, num_draws)  # inference.nig
    return PosteriorResult("conjugate", {name: value[None] for name, value in draws.items()}, moments)


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
    under its marginal prior, then the closed-form meTS posterior (``inference.pseudo_observations``)."""
    contexts, rewards = _arrays(data, ("contexts", "rewards"))
    prior_mean, prior_cov = marginal_action_prior(*_arrays(data, ("mixing", "effect_mean", "effect_cov", "action_cov")))
    prior_precision = jnp.linalg.inv(prior_cov)  # once per call, (K, d, d), not a hot path

    def pseudo_observations(weights, mean, precision):
        mode = logistic_mode(mean, contexts, rewards, weights, precision, mean, LAPLACE_NEWTON_STEPS)
        gram, moment = logistic_pseudo_observations(mode, contexts, rewards, weights)
        # Convergence of the arm's Newton: the gradient of its log posterior at the mode and the
        # Newton decrement √(gᵀ(G + Λ)⁻¹g), in sds of the arm's Laplace Gaussian.
        gradient = moment - gram @ mode - precision @ (mode - mean)
        decrement = jnp.sqrt(gradient @ jnp.linalg.solve(gram + precision, gradient))
        return gram, moment, jnp.max(jnp.abs(gradient)), decrement

    grams, moments, gradient_norms, decrements = jax.vmap(pseudo_observations)(_arm_masks(data), prior_mean,
                                                                               prior_precision)
    result = _mixed_effect_from_statistics(data, grams, moments, "laplace", key, num_draws)
    decrement = float(jnp.max(decrements))
    converged = bool(np.isfinite(decrement) and decrement <= DECREMENT_TOLERANCE)
    diagnostics = {"converged": converged, "gradient_norm": float(jnp.max(gradient_norms)),
                   "iterations": LAPLACE_NEWTON_STEPS, "positive_definite": True, "newton_decrement": decrement}
    reason = None if converged else (f"the per-arm Newton stopped after {LAPLACE_NEWTON_STEPS} steps "
                                     f"{decrement:.3g} posterior sds from an arm's mode (tolerance {DECREMENT_TOLERANCE:g})")
    return replace(result, diagnostics=diagnostics), reason


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
    linear_bandit_nig: _linear_bandit_nig_conjugate,
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
    linear_bandit_nig: check_linear_bandit_nig_data,
    mixed_effect_linear: check_mixed_effect_data,
    mixed_effect_logistic: lambda data: check_mixed_effect_data(data, binary=True),
}
LAPLACE_FORMS: dict[Callable, Callable[..., PosteriorResult]] = {
    mixed_effect_logistic: _mixed_effect_logistic_laplace,
}


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


def _name(model: Callable) -> str:
    return getattr(model, "__name__", None) or type(model).__name__


def _unwrap(model: Callable, data: Mapping[str, Any]) -> tuple[Callable, dict[str, Any]]:
    """A ``functools.partial`` of a program as the program and data: its bound arguments join ``data``."""
    data = dict(data)
    while isinstance(model, functools.partial):
        names = list(inspect.signature(model.func).parameters)
        bound = dict(zip(names, model.args)) | dict(model.keywords)
        clash = sorted(set(bound) & set(data))
        if len(model.args) > len(names):
            raise ValidationError(f"model: the partial binds {len(model.args)} positional arguments, "
                                  f"{_name(model.func)} takes {len(names)}")
        if clash and any(name in dict(zip(names, model.args)) for name in clash):
            raise ValidationError(f"data[{clash[0]!r}]: already bound by the functools.partial passed as model")
        model, data = model.func, bound | data  # keywords given at call time win, as in Python
    return model, data


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
