"""ONE Laplace approximation for any NumPyro program: quasi-Newton MAP, exact Hessian, convergence report.

The approximation works on the program's unconstrained latent vector z (P,) and its potential
U(z) = −log p(z, data) (Jacobians included; ``inference.program.latent_space`` builds both), so it
is the approximation ``numpyro.infer.autoguide.AutoLaplaceApproximation`` defines:

    z | data ≈ N(ẑ, H⁻¹),   ẑ = argmin U,   H = ∇²U(ẑ).

``laplace_fit`` finds ẑ by L-BFGS (``optax.lbfgs`` with its zoom line search) inside a
``lax.while_loop``: it stops when the gradient's largest component is below
``gradient_tolerance · max(1, |U|)``, when a step no longer moves z, or after ``max_steps``. It then
evaluates, at the point reached, the exact Hessian and reports (``LaplaceDiagnostics``):

- ``gradient_norm``: max |∂U/∂z| there;
- ``iterations``: L-BFGS steps taken;
- ``min_eigenvalue`` / ``positive_definite``: the smallest eigenvalue of H, and whether it exceeds
  ``CURVATURE_FLOOR`` (1e-6: a posterior sd under 1,000 in the unconstrained space along every
  direction). A Hessian that is not positive definite means the point is not a mode (a centred
  hierarchy whose scale can shrink to 0 has no mode at all); a nearly singular one, that the
  density is flat in some direction (an improper or unidentified parameter), where the Gaussian
  says nothing;
- ``newton_decrement``: δ = √(gᵀH⁻¹g), how far the point is from the mode of the local quadratic,
  in standard deviations of the Laplace Gaussian — a scale-free measure of "converged".

The fit has ``converged`` when U and g are finite, H is positive definite and δ ≤
``decrement_tolerance`` (default 1e-3 posterior sds). Where it has not, the Gaussian is still
drawable (eigenvalues below ``CURVATURE_FLOOR`` are raised to it rather than producing NaN draws;
for a positive definite H the draws are exactly the Laplace Gaussian's),
and ``laplace_failure`` says in words what failed; ``inference.posterior`` then warns or falls back
to NUTS, and the generic Thompson sampler counts the refits that did not converge.

Everything is jittable and vmappable (``vmap`` of a while loop runs until every member stops).
The meTS paper's per-arm pseudo-observations for logistic rewards (a specialised Newton on one
arm's likelihood, in the hot path of the GLM agents) are ``inference.pseudo_observations``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.scipy.linalg import solve_triangular

__all__ = ["LaplaceDiagnostics", "LaplaceFit", "laplace_failure", "laplace_fit", "laplace_log_ratios", "laplace_sample",
           "laplace_unfitted"]

CURVATURE_FLOOR = 1e-6
GRADIENT_TOLERANCE = 1e-9
DECREMENT_TOLERANCE = 1e-3


class LaplaceDiagnostics(NamedTuple):
    """Convergence report of one Laplace fit (all scalars; a leading batch axis under ``vmap``).

    potential : U at the point found. gradient_norm : max |∂U/∂z| there. iterations : L-BFGS steps.
    min_eigenvalue : smallest eigenvalue of the Hessian. positive_definite : min_eigenvalue >
    ``CURVATURE_FLOOR``. newton_decrement : √(gᵀH⁻¹g), distance to the mode in posterior
    sds. converged : finite, positive definite and newton_decrement ≤ the tolerance.
    """

    potential: jax.Array
    gradient_norm: jax.Array
    iterations: jax.Array
    min_eigenvalue: jax.Array
    positive_definite: jax.Array
    newton_decrement: jax.Array
    converged: jax.Array


class LaplaceFit(NamedTuple):
    """A Laplace Gaussian over z: ``mode`` (P,), ``precision_chol`` (P, P) lower Cholesky factor of the
    precision (the Hessian, curvature floored), and its ``diagnostics``."""

    mode: jax.Array
    precision_chol: jax.Array
    diagnostics: LaplaceDiagnostics


def laplace_fit(potential: Callable[[jax.Array], jax.Array], start: jax.Array, *, max_steps: int,
                gradient_tolerance: float = GRADIENT_TOLERANCE,
                decrement_tolerance: float = DECREMENT_TOLERANCE) -> LaplaceFit:
    """The Laplace approximation of exp(−``potential``) from ``start`` (P,); see the module docstring.

    ``max_steps`` (static int) bounds the L-BFGS steps; the tolerances may be traced.
    """
    optimizer = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(potential)

    def keep_going(carry):
        _, state, moved = carry
        step = optax.tree_utils.tree_get(state, "count")
        value, grad = optax.tree_utils.tree_get(state, "value"), optax.tree_utils.tree_get(state, "grad")
        small = jnp.max(jnp.abs(grad)) <= gradient_tolerance * jnp.maximum(1.0, jnp.abs(value))
        return (step == 0) | ((step < max_steps) & moved & ~small & jnp.isfinite(value))

    def lbfgs_step(carry):
        z, state, _ = carry
        value, grad = value_and_grad(z, state=state)
        updates, state = optimizer.update(grad, state, z, value=value, grad=grad, value_fn=potential)
        new_z = optax.apply_updates(z, updates)
        return new_z, state, jnp.any(new_z != z)

    mode, state, _ = jax.lax.while_loop(keep_going, lbfgs_step, (start, optimizer.init(start), jnp.asarray(True)))
    iterations = optax.tree_utils.tree_get(state, "count").astype(jnp.int32)
    value, grad = jax.value_and_grad(potential)(mode)
    hessian = jax.hessian(potential)(mode)
    eigenvalues, vectors = jnp.linalg.eigh(0.5 * (hessian + hessian.T))
    floored = jnp.maximum(eigenvalues, CURVATURE_FLOOR)
    precision = (vectors * floored) @ vectors.T
    decrement = jnp.sqrt(jnp.sum((vectors.T @ grad) ** 2 / floored))
    positive_definite = eigenvalues[0] > CURVATURE_FLOOR
    finite = jnp.isfinite(value) & jnp.all(jnp.isfinite(grad)) & jnp.all(jnp.isfinite(eigenvalues))
    diagnostics = LaplaceDiagnostics(value, jnp.max(jnp.abs(grad)), iterations, eigenvalues[0], positive_definite,
                                     decrement, finite & positive_definite & (decrement <= decrement_tolerance))
    return LaplaceFit(mode, jnp.linalg.cholesky(0.5 * (precision + precision.T)), diagnostics)


def laplace_unfitted(start: jax.Array) -> LaplaceFit:
    """A placeholder before any fit: N(``start``, I), not converged, no steps taken (NaN numbers)."""
    nan = jnp.asarray(jnp.nan, start.dtype)
    return LaplaceFit(start, jnp.eye(start.shape[0], dtype=start.dtype),
                      LaplaceDiagnostics(nan, nan, jnp.asarray(0, jnp.int32), nan, jnp.asarray(False), nan, jnp.asarray(False)))


def laplace_sample(fit: LaplaceFit, key: jax.Array, shape: tuple[int, ...] = ()) -> jax.Array:
    """Draws (*shape, P) from N(mode, precision⁻¹): mode + L⁻ᵀε with LLᵀ the precision."""
    noise = jax.random.normal(key, (*shape, fit.mode.shape[0]), dtype=fit.mode.dtype)
    offsets = solve_triangular(fit.precision_chol, noise.reshape(-1, fit.mode.shape[0]).T, lower=True, trans="T").T
    return fit.mode + offsets.reshape(noise.shape)


def laplace_log_ratios(fit: LaplaceFit, potential: Callable[[jax.Array], jax.Array], z: jax.Array) -> jax.Array:
    """log p(z, data) − log q(z) (up to one constant) at draws ``z`` (S, P) of the Laplace Gaussian q:
    the importance ratios whose Pareto k̂ (``inference.importance``) says how well q fits."""
    offsets = (z - fit.mode) @ fit.precision_chol  # Lᵀ(z − ẑ): standard normal under q
    return -jax.vmap(potential)(z) + 0.5 * jnp.sum(offsets**2, axis=-1)


def laplace_failure(diagnostics: LaplaceDiagnostics, *, max_steps: int | None = None,
                    decrement_tolerance: float = DECREMENT_TOLERANCE) -> str | None:
    """What failed in a fit, in words (None when it converged). One fit: scalar diagnostics."""
    d = {name: np.asarray(value).item() for name, value in diagnostics._asdict().items()}
    if d["converged"]:
        return None
    steps = f"{d['iterations']}" + (f" of {max_steps}" if max_steps is not None else "")
    if not (np.isfinite(d["potential"]) and np.isfinite(d["gradient_norm"]) and np.isfinite(d["min_eigenvalue"])):
        return (f"the log density or its derivatives are not finite at the point the optimiser reached after {steps} "
                f"L-BFGS steps (potential {d['potential']:.3g}, gradient norm {d['gradient_norm']:.3g})")
    if not d["positive_definite"]:
        return (f"the Hessian at the point reached after {steps} L-BFGS steps is not positive definite (smallest "
                f"eigenvalue {d['min_eigenvalue']:.3g}, needed > {CURVATURE_FLOOR:g}): the density has no mode there "
                f"or is flat along some direction, e.g. a centred hierarchy whose scale can shrink to 0 (write it "
                f"non-centred), an improper prior or an unidentified parameter")
    return (f"L-BFGS stopped after {steps} steps {d['newton_decrement']:.3g} posterior sds from the mode (Newton "
            f"decrement; tolerance {decrement_tolerance:g}), gradient norm {d['gradient_norm']:.3g}")
