"""Perturbed ensembles (Lu and Van Roy, 2017): an approximate posterior for reward models without a closed form.

M models are trained side by side over the member axis of every parameter (``lax.map``: on CPU a
sequential map keeps each member's intermediates in cache and beats ``vmap`` several times over). Member m
starts from its own prior draw θ̃_m (the "anchor"), and every stored observation carries its own
target perturbation w_{t,m} ~ N(0, s²), so member m fits the perturbed data set {(x_t, y_t + w_{t,m})}.
For a linear model trained to convergence on

    L_m(θ) = Σ_t (y_t + w_{t,m} − θᵀx_t)² / σ² + ||θ − θ̃_m||² / σ0²,      s = σ,  θ̃_m ~ N(0, σ0² I),

each member is an exact posterior draw, so the ensemble's spread approaches the posterior's as M
grows (``tests/test_gambitts_ensemble.py`` checks this). For MLPs it is a heuristic that keeps the
ensemble diverse where data are scarce.

Online training follows the GAMBITTS reference: a ring replay buffer of fixed capacity, each member
takes one optimiser step per round on its own minibatch drawn with replacement, on the mean squared
error of its perturbed targets (plus, optionally, the anchor term scaled by σ² / (n σ0²), which is
the per-observation form of L_m above). The reference rebuilds its Adam optimiser every step;
``reset_optimizer=True`` reproduces that (each step is then Adam's first step, ≈ lr · sign(gradient)).

Models are parameter dicts: a one-hidden-layer ReLU network (``models.mediated.mlp_apply``) or, with
``num_hidden=0``, a linear model {"w": (d,), "b": ()}.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from structbandits.inference.ring_buffer import RingBuffer, ring_append, ring_init, ring_size
from structbandits.models.mediated import mlp_apply

__all__ = [
    "Ensemble",
    "ReplayRow",
    "buffer_add",
    "buffer_init",
    "ensemble_fit",
    "ensemble_init",
    "ensemble_loss",
    "ensemble_predict",
    "ensemble_step",
    "model_apply",
    "model_init",
]

Params = dict[str, jax.Array]


def model_init(key: jax.Array, num_inputs: int, num_hidden: int, dtype=jnp.float64) -> Params:
    """One model's parameters with PyTorch's default initialisation U(−1/√fan_in, 1/√fan_in).

    ``num_hidden`` H > 0: {"w1" (d, H), "b1" (H,), "w2" (H,), "b2" ()}; H = 0: {"w" (d,), "b" ()}.
    """
    def uniform(k, shape, fan_in):
        bound = 1.0 / jnp.sqrt(fan_in)
        return jax.random.uniform(k, shape, dtype, -bound, bound)

    keys = jax.random.split(key, 4)
    if num_hidden == 0:
        return {"w": uniform(keys[0], (num_inputs,), num_inputs), "b": uniform(keys[1], (), num_inputs)}
    return {
        "w1": uniform(keys[0], (num_inputs, num_hidden), num_inputs),
        "b1": uniform(keys[1], (num_hidden,), num_inputs),
        "w2": uniform(keys[2], (num_hidden,), num_hidden),
        "b2": uniform(keys[3], (), num_hidden),
    }


def model_apply(params: Params, inputs: jax.Array) -> jax.Array:
    """Predictions (...,) for ``inputs`` (..., d) from one model's parameters."""
    if "w" in params:
        return inputs @ params["w"] + params["b"]
    return mlp_apply(params, inputs)


class Ensemble(NamedTuple):
    """M models stacked on a leading member axis: ``params``, ``anchors`` (their prior draws), ``opt_state``."""

    params: Params
    anchors: Params
    opt_state: Any


class ReplayRow(NamedTuple):
    """One stored observation: ``inputs`` (d,), ``target`` () and ``perturbations`` (M,), each member's fixed
    perturbation of the target. A replay buffer is a ``RingBuffer`` of these rows (leading capacity axis B)."""

    inputs: jax.Array
    target: jax.Array
    perturbations: jax.Array


def buffer_init(capacity: int, num_inputs: int, num_members: int, dtype=jnp.float64) -> RingBuffer:
    """An empty replay buffer of ``capacity`` rows."""
    return ring_init(ReplayRow(jnp.zeros(num_inputs, dtype), jnp.zeros((), dtype), jnp.zeros(num_members, dtype)),
                     capacity)


def buffer_add(buffer: RingBuffer, inputs: jax.Array, target: jax.Array, perturbation: jax.Array) -> RingBuffer:
    """Store one observation (``inputs`` (d,), ``target`` (), ``perturbation`` (M,)), overwriting the oldest."""
    return ring_append(buffer, ReplayRow(inputs, target, perturbation))


def ensemble_init(key: jax.Array, num_members: int, num_inputs: int, num_hidden: int,
                  optimizer: optax.GradientTransformation, dtype=jnp.float64) -> Ensemble:
    """M independent initial draws (also kept as anchors) and their optimiser states."""
    params = jax.vmap(lambda k: model_init(k, num_inputs, num_hidden, dtype))(jax.random.split(key, num_members))
    return Ensemble(params, params, jax.vmap(optimizer.init)(params))


def ensemble_loss(params: Params, anchor: Params, inputs: jax.Array, targets: jax.Array,
                  regularization: jax.Array) -> jax.Array:
    """One member's loss: mean((targets − f(inputs))²) + regularization · ||params − anchor||²."""
    residual = targets - model_apply(params, inputs)
    distance = sum(jnp.sum((p - a) ** 2) for p, a in zip(jax.tree.leaves(params), jax.tree.leaves(anchor)))
    return jnp.mean(residual**2) + regularization * distance


def _member_step(optimizer, reset_optimizer, params, anchor, opt_state, inputs, targets, regularization):
    if reset_optimizer:
        opt_state = optimizer.init(params)
    grads = jax.grad(ensemble_loss)(params, anchor, inputs, targets, regularization)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state


def ensemble_step(
    ensemble: Ensemble,
    buffer: RingBuffer,
    key: jax.Array,
    optimizer: optax.GradientTransformation,
    *,
    batch_size: int,
    reset_optimizer: bool = True,
    regularization: jax.Array | float = 0.0,
) -> Ensemble:
    """One optimiser step for every member on its own minibatch (with replacement) of the buffer.

    Member m regresses on targets y_t + w_{t,m}. ``regularization`` (scalar) weights the anchor term;
    pass σ² / (n σ0²) for the Lu-Van Roy objective, 0 for the reference's plain MSE.
    """
    stored = buffer.rows
    num_members = stored.perturbations.shape[1]
    valid = jnp.maximum(ring_size(buffer), 1)
    rows = jax.random.randint(key, (num_members, batch_size), 0, valid)
    inputs = stored.inputs[rows]  # (M, batch, d)
    targets = stored.target[rows] + jnp.take_along_axis(stored.perturbations.T, rows, axis=1)
    # lax.map, not vmap, over members: each member's minibatch intermediates stay in cache, which is
    # several times faster on CPU than one wide vmapped step.
    params, opt_state = jax.lax.map(
        lambda args: _member_step(optimizer, reset_optimizer, *args, regularization),
        (ensemble.params, ensemble.anchors, ensemble.opt_state, inputs, targets))
    return Ensemble(params, ensemble.anchors, opt_state)


def ensemble_fit(
    ensemble: Ensemble,
    inputs: jax.Array,
    targets: jax.Array,
    optimizer: optax.GradientTransformation,
    *,
    num_steps: int,
    regularization: jax.Array | float = 0.0,
) -> Ensemble:
    """Full-batch training for ``num_steps``: ``inputs`` (n, d), ``targets`` (M, n) (already perturbed)."""
    def step(carry, _):
        params, opt_state = carry
        params, opt_state = jax.vmap(
            lambda p, a, s, y: _member_step(optimizer, False, p, a, s, inputs, y, regularization)
        )(params, ensemble.anchors, opt_state, targets)
        return (params, opt_state), None

    (params, opt_state), _ = jax.lax.scan(step, (ensemble.params, ensemble.opt_state), None, length=num_steps)
    return Ensemble(params, ensemble.anchors, opt_state)


def ensemble_predict(params: Params, inputs: jax.Array) -> jax.Array:
    """Every member's predictions: ``inputs`` (..., d) → (M, ...)."""
    return jax.vmap(model_apply, (0, None))(params, inputs)
