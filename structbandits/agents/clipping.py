"""Randomisation probabilities fit for causal analysis: clip any policy's action distribution, then sample.

A micro-randomised trial logs, for every decision, the probability with which the action was drawn;
off-policy values and causal excursion effects weight by it. Two things make a Thompson agent's own
``ActInfo.propensity`` unfit for that: it is a Monte-Carlo estimate computed *after* the action was
drawn (with few draws it is exactly 0 or 1 for arms the posterior rarely or always picks), and
nothing bounds it away from 0 and 1, so importance weights 1/p blow up. ``clipped`` fixes both:

1. **Action distribution.** π̂ (K,), the inner policy's probability of each action at this state and
   context: by default the share of ``probability_draws`` M fresh calls of the inner ``act`` that
   choose each action (a histogram; standard error √(π_a(1 − π_a)/M) ≤ 1/(2√M) per action, 0.016
   for M = 1000); or exact, from a function passed as ``probabilities`` (e.g.
   ``thompson.lin_ts_two_arm_probabilities``, the closed form for two Gaussian arms).
2. **Clipping by uniform mixing.** q = (1 − ε) π̂ + ε/K with the smallest ε ∈ [0, 1] that puts every
   q_a in [p_min, p_max] (``clip_probabilities``): the standard MRT safeguard, done so that q stays a
   distribution. It needs p_min ≤ 1/K ≤ p_max (the uniform distribution itself must be allowed).
3. **Sampling.** The action is drawn from q with a key of its own, and ``ActInfo.propensity`` is
   q[action].

So the logged propensity is *exact*: it is the probability with which this decision was actually
randomised, whatever the error of π̂ as an estimate of the inner policy's own (Thompson)
probabilities — that error changes which distribution the agent follows (slightly), never whether
the log tells the truth about it. With p_min > 0 every logged propensity lies in [p_min, p_max],
never 0 or 1. With the defaults p_min = 0, p_max = 1 nothing is mixed: the action is drawn from π̂
itself, so an action no Monte-Carlo draw chose (π̂_a = 0) is never taken and would be logged as 0.

Build the inner policy without propensities of its own (``propensity_draws=0``): the wrapper calls
its ``act`` M times per decision and discards what it reports, so inner propensity draws would cost
M times over for nothing. ``update``, ``posterior_draws`` and the inner state are the inner policy's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from structbandits.agents.protocol import ActInfo, Policy, init_state
from structbandits.errors import ValidationError, check_finite, check_integer

__all__ = ["ClippedParams", "ClippedState", "clip_probabilities", "clipped"]

Probabilities = Callable[[Any, Any], jax.Array]


class ClippedParams(NamedTuple):
    """Hyperparameters of a clipped policy: the inner policy's params (``inner``; None for a policy
    without any) and the probability bounds ``p_min``, ``p_max`` (scalars)."""

    inner: Any
    p_min: jax.Array
    p_max: jax.Array


class ClippedState(NamedTuple):
    """The inner policy's state (``inner``, which holds the inner params) and the bounds ``p_min``,
    ``p_max`` (scalars). ``params`` (a property, so the inner params are stored once) is ``ClippedParams``."""

    inner: Any
    p_min: jax.Array
    p_max: jax.Array

    @property
    def params(self) -> ClippedParams:
        return ClippedParams(getattr(self.inner, "params", None), self.p_min, self.p_max)


def clip_probabilities(probabilities: jax.Array, p_min: jax.Array, p_max: jax.Array) -> jax.Array:
    """The smallest mixture of ``probabilities`` with the uniform distribution inside [p_min, p_max].

    Parameters
    ----------
    probabilities : (K,) a distribution π over K actions.
    p_min, p_max : scalars with p_min ≤ 1/K ≤ p_max (not checked here: ``clipped`` validates them).

    Returns
    -------
    (K,) q = (1 − ε) π + ε/K, ε = max(0, max_a ε_a), where ε_a is the least weight that moves π_a into
    [p_min, p_max] along the segment towards 1/K: (p_min − π_a)/(1/K − π_a) below, (π_a − p_max)/(π_a − 1/K)
    above. ε ≤ 1 because 1/K is inside the bounds. Jittable; the result is clipped to the bounds once
    more only to absorb rounding (a change of order 1e-16).
    """
    num_actions = probabilities.shape[-1]
    uniform = 1.0 / num_actions
    below, above = probabilities < p_min, probabilities > p_max
    # The unused branch of each where gets a harmless denominator, so no NaN is ever formed.
    need_low = jnp.where(below, (p_min - probabilities) / jnp.where(below, uniform - probabilities, 1.0), 0.0)
    need_high = jnp.where(above, (probabilities - p_max) / jnp.where(above, probabilities - uniform, 1.0), 0.0)
    epsilon = jnp.clip(jnp.max(jnp.maximum(need_low, need_high), axis=-1, keepdims=True), 0.0, 1.0)
    mixed = (1.0 - epsilon) * probabilities + epsilon * uniform
    return jnp.clip(mixed, p_min, p_max)


def _check_bound(name: str, value: Any) -> float:
    array = check_finite(name, value)
    if array.ndim != 0 or not 0.0 <= float(array) <= 1.0:
        raise ValidationError(f"{name}: expected a probability (a scalar in [0, 1]), got {value!r}")
    return float(array)


def clipped(
    policy: Policy,
    *,
    num_actions: int,
    p_min: float = 0.0,
    p_max: float = 1.0,
    probability_draws: int = 1000,
    probabilities: Probabilities | None = None,
) -> Policy:
    """``policy`` with its action distribution computed, clipped to [p_min, p_max] and sampled from.

    Parameters
    ----------
    policy : the inner Policy (K actions); build it with ``propensity_draws=0`` (see the module docstring).
    num_actions : K >= 2, the inner policy's number of actions.
    p_min, p_max : bounds on every action's probability, 0 ≤ p_min ≤ 1/K ≤ p_max ≤ 1 (e.g. 0.1 and 0.9
        for two arms). Hyperparameters as data: they live in ``params`` and the state, not in the code.
    probability_draws : M >= 1, calls of the inner ``act`` (fresh keys, one ``vmap``) per decision that
        estimate its action probabilities π̂ (standard error √(π(1 − π)/M)). Unused with ``probabilities``.
    probabilities : optional ``probabilities(inner_state, context) -> (K,)`` giving the inner policy's
        exact action probabilities instead of the Monte-Carlo estimate (e.g.
        ``lin_ts_two_arm_probabilities`` for ``lin_ts`` with two arms).

    Returns
    -------
    Policy with state ``ClippedState(inner, p_min, p_max)`` and params ``ClippedParams(policy.params,
    p_min, p_max)``; ``act(state, key, context)`` returns (action (), ActInfo(q[action])) where q is the
    clipped distribution the action was drawn from: the logged propensity is exact, in [p_min, p_max].
    ``update`` and ``posterior_draws`` are the inner policy's, on ``state.inner``.
    """
    if not isinstance(policy, Policy):
        raise ValidationError(f"policy: expected a Policy (init, act, update), got {type(policy).__name__}")
    num_actions = check_integer("num_actions", num_actions, minimum=2)
    low, high = _check_bound("p_min", p_min), _check_bound("p_max", p_max)
    uniform = 1.0 / num_actions
    if not low <= uniform <= high:
        raise ValidationError(f"p_min, p_max: expected p_min <= 1/K <= p_max for K = {num_actions} actions "
                              f"(1/K = {uniform:.6g}; the uniform distribution must be allowed), "
                              f"got p_min = {low}, p_max = {high}")
    if probabilities is not None and not callable(probabilities):
        raise ValidationError("probabilities: expected None or a function (inner state, context) -> (K,) "
                              f"probabilities, got {type(probabilities).__name__}")
    probability_draws = check_integer("probability_draws", probability_draws, minimum=1)
    defaults = ClippedParams(policy.params, jnp.asarray(low), jnp.asarray(high))
    dtype = jax.dtypes.canonicalize_dtype(jnp.float64)  # the default float: float64 after configure()

    def action_probabilities(inner_state: Any, key: jax.Array, context: Any) -> jax.Array:
        if probabilities is not None:
            exact = jnp.asarray(probabilities(inner_state, context))
            if exact.shape != (num_actions,):
                raise ValidationError(f"probabilities: expected a function returning shape ({num_actions},) "
                                      f"(one probability per action), got shape {exact.shape}")
            return exact
        keys = jax.random.split(key, probability_draws)
        actions = jax.vmap(lambda k: policy.act(inner_state, k, context)[0])(keys)
        return jnp.bincount(actions, length=num_actions).astype(dtype) / probability_draws

    def init(key: jax.Array, params: ClippedParams | None = None) -> ClippedState:
        params = defaults if params is None else params
        return ClippedState(init_state(policy, key, params.inner), params.p_min, params.p_max)

    def act(state: ClippedState, key: jax.Array, context: Any) -> tuple[jax.Array, ActInfo]:
        probability_key, sample_key = jax.random.split(key)
        q = clip_probabilities(action_probabilities(state.inner, probability_key, context), state.p_min, state.p_max)
        # Gumbel-max on log q: an action with q_a = 0 (possible only with p_min = 0) gets log 0 = -inf, never drawn.
        action = jax.random.categorical(sample_key, jnp.log(q))
        return action, ActInfo(q[action])

    def update(state: ClippedState, context: Any, action: jax.Array, reward: jax.Array) -> ClippedState:
        return state._replace(inner=policy.update(state.inner, context, action, reward))

    def posterior_draws(state: ClippedState, key: jax.Array, num_draws: int) -> dict[str, jax.Array]:
        return policy.posterior_draws(state.inner, key, num_draws)

    return Policy(init, act, update, posterior_draws if policy.posterior_draws is not None else None, defaults)
