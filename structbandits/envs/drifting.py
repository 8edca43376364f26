"""Drifting linear bandits: the truth moves between rounds (change points, smooth drift, habituation).

Each is the linear contextual bandit of ``envs.synthetic`` (K arms, θ_a ∈ R^d, a fresh context
x ~ Uniform[-1, 1]^d per round shared by all arms, reward x_tᵀθ_a + N(0, σ²)) whose ground truth is a
prior draw of a program in ``models.drifting``: θ of round 1 from the program (``Predictive``), then one
draw of the program's one-round step per round (``Environment.transition``; the runner carries the
state through its scan and measures regret against each round's optimum under that round's truth).

    changepoint_bandit    every arm redrawn from N(m, prior_scale² I) at declared rounds and at a hazard rate
    random_walk_bandit    θ_{t+1} = (1 − reversion) θ_t + drift_scale ε_t (reversion 0: a random walk)
    habituation_bandit    arm a's effect x_tᵀθ_a shrinks by ``decay`` per unit of recent exposure to a,
                          exposure e' = retention · e + onehot(action); the actions change the truth

Rounds are numbered from 1, as in the runner's results. With no change, no drift (``drift_scale`` 0)
or no habituation (``decay`` 1) the environment plays the same θ, contexts and rewards as
``linear_contextual_bandit`` with the same seed. Each simulation is one user (habituation's exposures
are that user's).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpyro import handlers
from numpyro.infer import Predictive

from structbandits.envs.prior_draw import prior_draw
from structbandits.envs.protocol import Environment, ModelHyperparameters
from structbandits.envs.synthetic import linear_contextual_bandit
from structbandits.errors import ValidationError, check_finite, check_integer, check_positive, check_shape
from structbandits.models.drifting import (
    changepoint_linear_bandit,
    changepoint_step,
    habituated_means,
    habituation_linear_bandit,
    next_exposure,
    random_walk_linear_bandit,
    random_walk_step,
)

__all__ = ["ChangepointState", "DriftState", "HabituationState", "changepoint_bandit", "habituation_bandit",
           "random_walk_bandit"]


class ChangepointState(NamedTuple):
    """Truth of the current round: ``theta`` (K, d), ``round`` () its number (from 1)."""

    theta: jax.Array
    round: jax.Array


class DriftState(NamedTuple):
    """Truth of the current round: ``theta`` (K, d)."""

    theta: jax.Array


class HabituationState(NamedTuple):
    """Truth of the current round: ``theta`` (K, d), ``exposure`` (K,) the user's exposures before it."""

    theta: jax.Array
    exposure: jax.Array


def _unit_interval(name: str, value, *, open_low: bool = False) -> float:
    value = float(check_finite(name, value))
    if not (0.0 < value <= 1.0 if open_low else 0.0 <= value <= 1.0):
        raise ValidationError(f"{name}: expected a number in {'(0, 1]' if open_low else '[0, 1]'}, got {value}")
    return value


def _stationary_bandit(num_actions, num_features, prior_scale, noise_scale):
    """The linear bandit a drifting one moves (its arguments checked there) and θ_1's prior: mean (K, d)
    zeros, covariance (K, d, d) prior_scale² I."""
    base = linear_contextual_bandit(num_actions, num_features, prior_scale=prior_scale, noise_scale=noise_scale)
    k, d = base.num_actions, base.context_shape[0]
    prior_cov = jnp.broadcast_to(float(prior_scale) ** 2 * jnp.eye(d), (k, d, d))
    return base, jnp.zeros((k, d)), prior_cov


def _first_theta(program, prior_mean: jax.Array, prior_cov: jax.Array, noise_scale: float, *args):
    """init's draw of θ_1: the program's first site, as ``linear_bandit`` draws it from the same key."""
    # The builders check its arguments (prior_draw).
    prior_predictive = prior_draw(Predictive(program, num_samples=1, return_sites=["theta"]))
    return lambda key: prior_predictive(key, prior_mean, prior_cov, noise_scale, *args)["theta"][0]


def _model(name: str, prior_mean, prior_cov, noise_scale: float, **params) -> ModelHyperparameters:
    arrays = {key: np.asarray(value) if not isinstance(value, float) else value for key, value in params.items()}
    return ModelHyperparameters(name, {"prior_mean": np.asarray(prior_mean), "prior_cov": np.asarray(prior_cov),
                                       "noise_scale": noise_scale, **arrays})


def changepoint_bandit(
    num_actions: int,
    num_features: int,
    *,
    change_rounds: Sequence[int] = (),
    hazard: float = 0.0,
    change_means=None,
    prior_scale: float = 1.0,
    noise_scale: float = 1.0,
) -> Environment:
    """The linear bandit whose arms are all redrawn at change points (``models.changepoint_linear_bandit``).

    Parameters
    ----------
    num_actions, num_features, prior_scale, noise_scale : as in ``linear_contextual_bandit``; θ_1 and every
        redraw have covariance prior_scale² I.
    change_rounds : strictly increasing rounds (>= 2): from each, the arms have freshly drawn parameters.
    hazard : probability in [0, 1] of a further change in every round (redrawn around 0).
    change_means : (C, K, d) the mean each declared change redraws around, C = len(change_rounds)
        (None: 0, the prior mean); with a small ``prior_scale`` the new parameters are these.
    """
    base, prior_mean, prior_cov = _stationary_bandit(num_actions, num_features, prior_scale, noise_scale)
    k, d = prior_mean.shape
    if isinstance(change_rounds, np.ndarray) and change_rounds.ndim == 1:
        change_rounds = change_rounds.tolist()
    if not isinstance(change_rounds, (list, tuple)):
        raise ValidationError(f"change_rounds: expected a list of rounds (integers >= 2), got {change_rounds!r}")
    rounds = [check_integer(f"change_rounds[{i}]", r, minimum=2, maximum=2**31 - 1)
              for i, r in enumerate(change_rounds)]
    if any(later <= earlier for earlier, later in zip(rounds, rounds[1:])):
        raise ValidationError(f"change_rounds: expected strictly increasing rounds, got {rounds}")
    hazard = _unit_interval("hazard", hazard)
    prior_scale, noise_scale = float(prior_scale), float(noise_scale)
    chol = jnp.broadcast_to(prior_scale * jnp.eye(d), (k, d, d))
    change_rounds = jnp.asarray(rounds, dtype=jnp.int32)
    if change_means is None:
        change_means = jnp.zeros((len(rounds), k, d))
    else:
        change_means = jnp.asarray(check_finite("change_means", check_shape("change_means", change_means,
                                                                            (len(rounds), k, d))))
    first_theta = _first_theta(changepoint_linear_bandit, prior_mean, prior_cov, noise_scale, change_rounds, hazard,
                               change_means)

    def init(key: jax.Array) -> ChangepointState:
        return ChangepointState(first_theta(key), jnp.ones((), dtype=change_rounds.dtype))

    def transition(state: ChangepointState, key: jax.Array, context: jax.Array, action: jax.Array) -> ChangepointState:
        following = state.round + 1
        step = handlers.seed(changepoint_step, key)
        return ChangepointState(step(state.theta, following, prior_mean, chol, change_rounds, hazard, change_means),
                                following)

    model = _model("changepoint_linear_bandit", prior_mean, prior_cov, noise_scale, change_rounds=change_rounds,
                   hazard=hazard, change_means=change_means)
    # The linear bandit's context, mean_rewards and reward read only ``state.theta``: they serve here unchanged.
    return Environment(k, (d,), init, base.context, base.mean_rewards, base.reward, model, transition)


def random_walk_bandit(
    num_actions: int,
    num_features: int,
    *,
    drift_scale: float = 0.05,
    reversion: float = 0.0,
    prior_scale: float = 1.0,
    noise_scale: float = 1.0,
) -> Environment:
    """The linear bandit whose arm parameters drift (``models.random_walk_linear_bandit``, toward 0).

    Parameters
    ----------
    num_actions, num_features, prior_scale, noise_scale : as in ``linear_contextual_bandit`` (θ_1's prior).
    drift_scale : τ >= 0, the standard deviation of every coordinate's shock per round.
    reversion : r in [0, 1]: θ_{t+1} = (1 − r) θ_t + τ ε_t. r = 0 is a Gaussian random walk
        (Var θ_t = prior_scale² + (t − 1) τ²); r > 0 an Ornstein–Uhlenbeck process whose stationary
        variance τ² / (1 − (1 − r)²) equals prior_scale² when τ = prior_scale · sqrt(1 − (1 − r)²).
    """
    base, prior_mean, prior_cov = _stationary_bandit(num_actions, num_features, prior_scale, noise_scale)
    k, d = prior_mean.shape
    drift_scale = float(check_positive("drift_scale", drift_scale, allow_zero=True))
    reversion = _unit_interval("reversion", reversion)
    noise_scale = float(noise_scale)
    first_theta = _first_theta(random_walk_linear_bandit, prior_mean, prior_cov, noise_scale, drift_scale, reversion)

    def init(key: jax.Array) -> DriftState:
        return DriftState(first_theta(key))

    def transition(state: DriftState, key: jax.Array, context: jax.Array, action: jax.Array) -> DriftState:
        return DriftState(handlers.seed(random_walk_step, key)(state.theta, prior_mean, drift_scale, reversion))

    model = _model("random_walk_linear_bandit", prior_mean, prior_cov, noise_scale, drift_scale=drift_scale,
                   reversion=reversion, drift_mean=prior_mean)
    return Environment(k, (d,), init, base.context, base.mean_rewards, base.reward, model, transition)


def habituation_bandit(
    num_actions: int,
    num_features: int,
    *,
    decay: float = 0.8,
    retention: float = 0.5,
    prior_scale: float = 1.0,
    noise_scale: float = 1.0,
) -> Environment:
    """The linear bandit with habituation (``models.habituation_linear_bandit``).

    Arm a pays (x_tᵀθ_a) · decay^{e_a} + N(0, σ²), where e_a, the user's exposure to arm a, starts at 0
    and becomes retention · e_a + 1[a pulled] after every round. Pulling a n times in a row from rest
    leaves e_a = 1 + retention + … + retention^{n−1}; resting it s rounds multiplies e_a by retention^s.

    Parameters
    ----------
    num_actions, num_features, prior_scale, noise_scale : as in ``linear_contextual_bandit``.
    decay : δ in (0, 1], the factor on the effect per unit of exposure (1: no habituation).
    retention : ρ in [0, 1], the share of exposure kept per round (0: only the last round counts; 1: no
        recovery).
    """
    base, prior_mean, prior_cov = _stationary_bandit(num_actions, num_features, prior_scale, noise_scale)
    k, d = prior_mean.shape
    decay = _unit_interval("decay", decay, open_low=True)
    retention = _unit_interval("retention", retention)
    noise_scale = float(noise_scale)
    first_theta = _first_theta(habituation_linear_bandit, prior_mean, prior_cov, noise_scale, decay, retention)

    def init(key: jax.Array) -> HabituationState:
        theta = first_theta(key)
        return HabituationState(theta, jnp.zeros(k, dtype=theta.dtype))

    def mean_rewards(state: HabituationState, context: jax.Array) -> jax.Array:
        return habituated_means(state.theta, context, state.exposure, decay)

    def reward(state: HabituationState, key: jax.Array, context: jax.Array, action: jax.Array) -> jax.Array:
        return mean_rewards(state, context)[action] + noise_scale * jax.random.normal(key, dtype=state.theta.dtype)

    def transition(state: HabituationState, key: jax.Array, context: jax.Array, action: jax.Array) -> HabituationState:
        return HabituationState(state.theta, next_exposure(state.exposure, action, retention))

    model = _model("habituation_linear_bandit", prior_mean, prior_cov, noise_scale, decay=decay, retention=retention)
    return Environment(k, (d,), init, base.context, mean_rewards, reward, model, transition)
