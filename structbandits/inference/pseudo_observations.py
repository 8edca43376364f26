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
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.linalg import cho_solve

__all__ = ["logistic_derivatives", "logistic_log_posterior", "logistic_mode", "logistic_pseudo_observations"]

STEP_SIZES = 4.0 ** -jnp.arange(4.0)


def logistic_log_posterior(theta: jax.Array, features: jax.Array, rewards: jax.Array, weights: jax.Array,
                           prior_precision: jax.Array, prior_mean: jax.Array) -> jax.Array:
    """ℓ(θ) − ½(θ − m)ᵀΛ(θ − m), up to a constant; arguments as in ``logistic_mode``."""
    logits = features @ theta
    log_likelihood = jnp.sum(weights * (rewards * logits - jax.nn.softplus(logits)))
    offset = theta - prior_mean
    return log_likelihood - 0.5 * offset @ prior_precision @ offset


def logistic_derivatives(theta: jax.Array, features: jax.Array, rewards: jax.Array,
                         weights: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Gradient (d,) and negative Hessian (d, d) of the weighted Bernoulli-logit log-likelihood.

    ``theta`` (d,); ``features`` (n, d); ``rewards`` (n,) in {0, 1}; ``weights`` (n,) >= 0.
    """
    probability = jax.nn.sigmoid(features @ theta)
    gradient = features.T @ (weights * (rewards - probability))
    curvature = weights * probability * (1.0 - probability)
    return gradient, (features * curvature[:, None]).T @ features


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
        candidates = theta + jnp.append(STEP_SIZES, 0.0)[:, None] * step
        values = objective(candidates, features, rewards, weights, prior_precision, prior_mean)
        return candidates[jnp.argmax(values)]

    return jax.lax.fori_loop(0, num_steps, newton_step, theta)


def logistic_pseudo_observations(theta: jax.Array, features: jax.Array, rewards: jax.Array,
                                 weights: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Gaussian pseudo-observations (G (d, d), B (d,)) of the log-likelihood expanded at ``theta``."""
    gradient, curvature = logistic_derivatives(theta, features, rewards, weights)
    return curvature, curvature @ theta + gradient
