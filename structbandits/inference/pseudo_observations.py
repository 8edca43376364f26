"""Laplace pseudo-observations for logistic rewards (meTS-GLM, GLM-TS).

The meTS paper turns a GLM arm into the linear-Gaussian machinery by replacing its data with a
Gaussian likelihood: the log-likelihood ℓ(θ) = Σ w_t [y_t x_tᵀθ − log(1 + exp(x_tᵀθ))] is expanded
to second order at a point θ̂,

    ℓ(θ) ≈ const − ½ θᵀ G θ + Bᵀ θ,   G = −∇²ℓ(θ̂) = Σ w μ(1−μ) x xᵀ,   B = G θ̂ + ∇ℓ(θ̂),

and (G, B) then play the roles of the Gaussian sufficient statistics Σ xxᵀ/σ² and Σ xy/σ².
At the maximum-likelihood estimate ∇ℓ(θ̂) = 0 and B = G θ̂, the seed's pseudo-observations. The MLE
does not exist while an arm's data are few or separable (it runs off to infinity), so the expansion
point here is the mode of the likelihood times a Gaussian prior (the arm's marginal prior): it
always exists, tends to the MLE as data accumulate, and the gradient term keeps the expansion exact
to second order wherever it is taken. No ridge is added to G; arms with no data have G = 0, B = 0.

The mode is found by Newton's method (IRLS) with a fixed number of steps, warm-started by the
caller from the previous mode, so everything is jittable with static shapes. A full Newton step can
overshoot badly when the sigmoid saturates (a far warm start after a surprising reward), so each
step is damped: the objective is evaluated at step sizes 1, 1/4, 1/16, 1/64 and 0 at once and the
best is taken, which makes every step an ascent step at the cost of 5 extra likelihood evaluations.
Observations carry weights ``w`` (n,): a 0/1 mask selects one arm's rows from a shared history buffer.

``newton_mode`` is the refit the agents use by default: the same Newton direction, but it stops on a
tolerance instead of after a fixed count, evaluates the log-likelihood through a callable (so the data
can be summed in chunks of one arm's own rows, ``inference.arm_rows``), and backtracks only when a
step fails: each evaluation at a candidate returns the value, gradient and negative Hessian together,
so an accepted step costs one pass over the data. It stops once the Newton decrement
δ = √(gᵀ(G + Λ)⁻¹g) of the log posterior (the distance to the mode of the local quadratic, in sds of
the Laplace Gaussian, as ``inference.laplace`` reports) is below ``tolerance``, after ``max_steps``
accepted steps, or when step sizes 1, 1/4, 1/16 and 1/64 all fail to ascend (rounding); it reports
whether the tolerance was met. Rows enter as counts: a row x seen n times with s ones contributes
s xᵀθ − n log(1 + exp(xᵀθ)) (``logistic_count_terms``), which is the weighted form above with n = w
and s = w y, so contexts from a finite pool cost one row per distinct context.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.linalg import cho_solve

__all__ = ["NewtonResult", "logistic_count_terms", "logistic_derivatives", "logistic_log_posterior", "logistic_mode",
           "logistic_pseudo_observations", "newton_mode", "pseudo_observations_at"]

STEP_SIZES = (1.0, 0.25, 0.0625, 0.015625)  # 4^-i, i < 4: Python floats, so importing runs no JAX program


def logistic_log_posterior(theta: jax.Array, features: jax.Array, rewards: jax.Array, weights: jax.Array,
                           prior_precision: jax.Array, prior_mean: jax.Array) -> jax.Array:
    """ℓ(θ) − ½(θ − m)ᵀΛ(θ − m), up to a constant; arguments as in ``logistic_mode``.

    ℓ in the form Σ w (y xᵀθ − log(1 + exp(xᵀθ))) that ``logistic_mode`` has always compared (kept
    bit for bit); ``logistic_count_terms`` sums the same ℓ in a form without cancellation.
    """
    logits = features @ theta
    log_likelihood = jnp.sum(weights * (rewards * logits - jax.nn.softplus(logits)))
    return _log_posterior(theta, log_likelihood, prior_precision, prior_mean)


def _log_posterior(theta: jax.Array, log_likelihood: jax.Array, prior_precision: jax.Array,
                   prior_mean: jax.Array) -> jax.Array:
    offset = theta - prior_mean
    return log_likelihood - 0.5 * offset @ prior_precision @ offset


def logistic_count_terms(theta: jax.Array, features: jax.Array, successes: jax.Array,
                         trials: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Log-likelihood (), gradient (d,) and negative Hessian (d, d) of Bernoulli-logit counts at ``theta``.

    ``features`` (n, d) rows, each seen ``trials`` (n,) >= 0 times with ``successes`` (n,) ones among
    them: ℓ(θ) = Σ s xᵀθ − n log(1 + exp(xᵀθ)), ∇ℓ = Σ (s − n μ) x, −∇²ℓ = Σ n μ(1 − μ) x xᵀ, μ = sigmoid(xᵀθ).
    Rows with n = 0 (unused slots) contribute nothing. ℓ is summed as −Σ s log(1 + exp(−xᵀθ)) +
    (n − s) log(1 + exp(xᵀθ)), terms of one sign: s xᵀθ − n log(1 + exp(xᵀθ)) cancels two large numbers
    where the sigmoid saturates, and ``newton_mode`` compares such values between steps.
    """
    logits = features @ theta
    probability = jax.nn.sigmoid(logits)
    log_likelihood = -jnp.sum(successes * jax.nn.softplus(-logits)
                              + (trials - successes) * jax.nn.softplus(logits))
    gradient = features.T @ (successes - trials * probability)
    curvature = trials * probability * (1.0 - probability)
    return log_likelihood, gradient, (features * curvature[:, None]).T @ features


def logistic_derivatives(theta: jax.Array, features: jax.Array, rewards: jax.Array,
                         weights: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Gradient (d,) and negative Hessian (d, d) of the weighted Bernoulli-logit log-likelihood.

    ``theta`` (d,); ``features`` (n, d); ``rewards`` (n,) in {0, 1}; ``weights`` (n,) >= 0.
    """
    return logistic_count_terms(theta, features, weights * rewards, weights)[1:]


def logistic_mode(theta: jax.Array, features: jax.Array, rewards: jax.Array, weights: jax.Array,
                  prior_precision: jax.Array, prior_mean: jax.Array, num_steps: int) -> jax.Array:
    """Mode (d,) of ℓ(θ) − ½(θ − m)ᵀΛ(θ − m) after ``num_steps`` Newton steps from ``theta``.

    ``prior_precision`` Λ (d, d) positive definite and ``prior_mean`` m (d,); other arguments as in
    ``logistic_derivatives``. The objective is strictly concave, so each step solves the positive
    definite system (G + Λ) Δ = ∇ℓ − Λ(θ − m) by Cholesky, then takes the best damped step along Δ.
    """
    objective = jax.vmap(logistic_log_posterior, (0, None, None, None, None, None))

    def newton_step(_, theta):
        gradient, curvature = logistic_derivatives(theta, features, rewards, weights)
        system = curvature + prior_precision
        step = cho_solve((jnp.linalg.cholesky(system), True), gradient - prior_precision @ (theta - prior_mean))
        candidates = theta + jnp.asarray(STEP_SIZES + (0.0,), step.dtype)[:, None] * step
        values = objective(candidates, features, rewards, weights, prior_precision, prior_mean)
        return candidates[jnp.argmax(values)]

    return jax.lax.fori_loop(0, num_steps, newton_step, theta)


def logistic_pseudo_observations(theta: jax.Array, features: jax.Array, rewards: jax.Array,
                                 weights: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Gaussian pseudo-observations (G (d, d), B (d,)) of the log-likelihood expanded at ``theta``."""
    return pseudo_observations_at(theta, *logistic_derivatives(theta, features, rewards, weights))


def pseudo_observations_at(theta: jax.Array, gradient: jax.Array,
                           curvature: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(G, B) = (curvature, curvature θ + gradient): the expansion at ``theta`` (d,) of a log-likelihood
    with ``gradient`` (d,) and negative Hessian ``curvature`` (d, d) there."""
    return curvature, curvature @ theta + gradient


class NewtonResult(NamedTuple):
    """Where ``newton_mode`` stopped: ``mode`` (d,), the log-likelihood's ``gradient`` (d,) and negative
    Hessian ``curvature`` (d, d) there, the Newton ``decrement`` () of the log posterior there (sds),
    ``steps`` () int32 accepted Newton steps, and ``converged`` () bool: decrement <= tolerance."""

    mode: jax.Array
    gradient: jax.Array
    curvature: jax.Array
    decrement: jax.Array
    steps: jax.Array
    converged: jax.Array


class _NewtonCarry(NamedTuple):
    theta: jax.Array
    log_posterior: jax.Array
    gradient: jax.Array
    curvature: jax.Array
    step: jax.Array
    decrement_squared: jax.Array
    scale: jax.Array
    steps: jax.Array


def newton_mode(start: jax.Array, log_likelihood_terms: Callable[[jax.Array], tuple[jax.Array, jax.Array, jax.Array]],
                prior_precision: jax.Array, prior_mean: jax.Array, tolerance: float, max_steps: int) -> NewtonResult:
    """Mode of ℓ(θ) − ½(θ − m)ᵀΛ(θ − m) by Newton's method from ``start`` (d,), stopping on a tolerance.

    ``log_likelihood_terms(θ)`` returns ℓ(θ) (), ∇ℓ(θ) (d,) and −∇²ℓ(θ) (d, d) (``logistic_count_terms``
    or a chunked sum of it); ℓ must be concave. ``prior_precision`` Λ (d, d) positive definite,
    ``prior_mean`` m (d,). Each loop iteration calls ``log_likelihood_terms`` once, at the candidate
    θ + sΔ with Δ = (−∇²ℓ + Λ)⁻¹ ∇(log posterior): the candidate is accepted if the log posterior does
    not decrease (or if the predicted gain δ²/2 is below the rounding of the objective, where the
    comparison is noise and the full step is the quadratic-regime step), else s shrinks by 4. Stops
    when δ <= ``tolerance``, after ``max_steps`` accepted steps, or when s falls below 1/64. Jittable
    and vmappable (a ``lax.while_loop``; under ``vmap`` it runs until every member stops).
    """
    rounding = 100.0 * jnp.finfo(jnp.result_type(start)).eps

    def direction(theta, gradient, curvature):
        posterior_gradient = gradient - prior_precision @ (theta - prior_mean)
        step = cho_solve((jnp.linalg.cholesky(curvature + prior_precision), True), posterior_gradient)
        return step, posterior_gradient @ step

    def carry_at(theta, scale, steps):
        value, gradient, curvature = log_likelihood_terms(theta)
        return _NewtonCarry(theta, _log_posterior(theta, value, prior_precision, prior_mean), gradient, curvature,
                            *direction(theta, gradient, curvature), scale, steps)

    def searching(carry):
        return (carry.decrement_squared > tolerance**2) & (carry.steps < max_steps) & (carry.scale >= 1.0 / 64.0)

    def iterate(carry):
        candidate = carry_at(carry.theta + carry.scale * carry.step, jnp.ones_like(carry.scale), carry.steps + 1)
        noise = 0.5 * carry.decrement_squared <= rounding * (1.0 + jnp.abs(carry.log_posterior))
        accept = (candidate.log_posterior >= carry.log_posterior) | noise
        return jax.tree.map(lambda new, old: jnp.where(accept, new, old), candidate,
                            carry._replace(scale=carry.scale / 4.0))

    start = jnp.asarray(start)
    final = jax.lax.while_loop(searching, iterate, carry_at(start, jnp.ones((), start.dtype), jnp.zeros((), jnp.int32)))
    decrement = jnp.sqrt(jnp.maximum(final.decrement_squared, 0.0))
    return NewtonResult(final.theta, final.gradient, final.curvature, decrement, final.steps,
                        final.decrement_squared <= tolerance**2)
