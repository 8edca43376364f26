"""Linear-Gaussian bandits whose truth moves: change points, smooth drift, habituation.

Each is ``models.linear_bandit`` (θ_a ~ N(m0_a, S0_a), y_t ~ N(x_tᵀθ_{a_t,t}, σ²)) with a time index on
the arm parameters or on their effect. Rounds are numbered from 1, as in the runner's results.

    change points   θ_{t+1} = θ_t, except at a change: θ_{t+1} ~ N(m_c, S0) for every arm. Changes
                    happen at declared rounds (redrawn around the declared mean m_c, default m0) and
                    at hazard rate h (Bernoulli(h) per round, redrawn around m0).
    smooth drift    θ_{t+1} = μ + (1 − r)(θ_t − μ) + τ ε_t,  ε_t ~ N(0, I): a Gaussian random walk
                    (reversion r = 0, Var θ_t = S0 + (t − 1) τ² I) or a discretised
                    Ornstein–Uhlenbeck process toward μ (0 < r <= 1; stationary variance τ²/(1 − (1 − r)²)).
    habituation     θ fixed; the arm's effect shrinks with the user's recent exposures to it:
                    E[y_t | a] = x_tᵀθ_a · δ^{e_{t,a}},  e_{1} = 0,  e_{t+1} = ρ e_t + onehot(a_t),
                    an exponentially weighted count of past pulls (retention ρ ∈ [0, 1]; each unit of
                    exposure multiplies the effect by δ ∈ (0, 1]); resting an arm for s rounds
                    multiplies its exposure by ρ^s, so the effect recovers.

The full programs (``changepoint_linear_bandit``, ``random_walk_linear_bandit``,
``habituation_linear_bandit``) declare θ's whole path over n rounds (``numpyro.contrib.control_flow.scan``
over the one-round programs) and the observed rewards; without contexts and ``num_rounds`` they sample
only the first round's θ — the same site, prior and key use as ``linear_bandit``. The environments
(``envs.drifting``) draw θ_1 from the full program (``Predictive``) and then advance the truth one round
at a time with the one-round programs ``changepoint_step`` / ``random_walk_step`` (and
``next_exposure``), so the simulator draws exactly the program's prior path and needs no horizon.
The change indicators of the hazard are discrete sites: NUTS needs them enumerated or fixed.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro.contrib.control_flow import scan

__all__ = [
    "changepoint_linear_bandit",
    "changepoint_step",
    "habituated_means",
    "habituation_linear_bandit",
    "next_exposure",
    "random_walk_linear_bandit",
    "random_walk_step",
]


def _initial_theta(prior_mean: jax.Array, prior_cov: jax.Array) -> jax.Array:
    """θ of round 1: ``linear_bandit``'s site, so one key gives both programs the same draw."""
    with numpyro.plate("action", prior_mean.shape[0]):
        return numpyro.sample("theta", dist.MultivariateNormal(prior_mean, covariance_matrix=prior_cov))


def _path(step, theta: jax.Array, num_rounds: int, xs: jax.Array | None = None) -> jax.Array:
    """(n, K, d) θ of rounds 1..n: θ_1 then n − 1 steps of the one-round program ``step(theta, x)``."""
    if num_rounds > 1:
        _, later = scan(lambda carry, x: (step(carry, x),) * 2, theta, xs, length=num_rounds - 1)
        path = jnp.concatenate([theta[None], later])
    else:
        path = theta[None]
    return numpyro.deterministic("theta_path", path)


def _observe(path: jax.Array, contexts: jax.Array, actions: jax.Array, rewards, noise_scale) -> None:
    """Site ``reward`` (n,): y_t ~ N(x_tᵀθ_{a_t,t}, σ²) with θ_t the path's round t."""
    mean = jnp.sum(contexts * path[jnp.arange(contexts.shape[0]), actions], axis=-1)
    with numpyro.plate("round", contexts.shape[0]):
        numpyro.sample("reward", dist.Normal(mean, noise_scale), obs=rewards)


def _num_rounds(contexts, num_rounds) -> int:
    return contexts.shape[0] if contexts is not None else int(num_rounds or 0)


def changepoint_step(
    theta: jax.Array,
    next_round: jax.Array,
    prior_mean: jax.Array,
    prior_scale_tril: jax.Array,
    change_rounds: jax.Array,
    hazard: jax.Array,
    change_means: jax.Array,
) -> jax.Array:
    """One round of the change-point program: θ of round ``next_round`` given θ of the round before.

    Parameters
    ----------
    theta : (K, d) the arms' parameters this round.
    next_round : () integer, the round (from 1) whose parameters are drawn.
    prior_mean : (K, d) m0, the mean a hazard change redraws around.
    prior_scale_tril : (K, d, d) Cholesky factors of S0.
    change_rounds : (C,) integer rounds at which every arm is redrawn.
    hazard : () probability of a change in any round (0: only the declared ones).
    change_means : (C, K, d) the mean of the redraw at each declared round.

    Sites: ``redraw`` (K, d) (drawn every round, used at a change), ``change`` () Bernoulli(hazard).
    Returns (K, d) the next round's θ.
    """
    declared = change_rounds == next_round
    mean = prior_mean
    if change_rounds.shape[0]:
        mean = jnp.where(jnp.any(declared), change_means[jnp.argmax(declared)], prior_mean)
    with numpyro.plate("action", theta.shape[0]):
        redraw = numpyro.sample("redraw", dist.MultivariateNormal(mean, scale_tril=prior_scale_tril))
    change = numpyro.sample("change", dist.Bernoulli(probs=hazard)).astype(bool) | jnp.any(declared)
    return jnp.where(change, redraw, theta)


def changepoint_linear_bandit(
    prior_mean: jax.Array,
    prior_cov: jax.Array,
    noise_scale: jax.Array,
    change_rounds: jax.Array,
    hazard: jax.Array = 0.0,
    change_means: jax.Array | None = None,
    contexts: jax.Array | None = None,
    actions: jax.Array | None = None,
    rewards: jax.Array | None = None,
    num_rounds: int | None = None,
) -> None:
    """Linear bandit whose arms are all redrawn from their prior at change points.

    Parameters
    ----------
    prior_mean : (K, d) m0; prior_cov : (K, d, d) S0 (positive definite), of θ_1 and of every redraw.
    noise_scale : scalar σ.
    change_rounds : (C,) integer rounds (>= 2) from which the arms have new parameters.
    hazard : scalar probability of a further change in each round.
    change_means : (C, K, d) the mean of the redraw at each declared round (None: m0).
    contexts, actions, rewards : (n, d), (n,), (n,) as in ``linear_bandit``; rewards None samples them.
    num_rounds : n when no contexts are given (None/0: sample θ_1 only).

    Sites: ``theta`` (K, d) θ_1; ``redraw`` (n − 1, K, d), ``change`` (n − 1,), ``theta_path`` (n, K, d);
    ``reward`` (n,) when contexts are given.
    """
    theta = _initial_theta(prior_mean, prior_cov)
    n = _num_rounds(contexts, num_rounds)
    if n == 0:
        return
    change_rounds = jnp.asarray(change_rounds)
    if change_means is None:
        change_means = jnp.broadcast_to(prior_mean, change_rounds.shape + prior_mean.shape)
    chol = jnp.linalg.cholesky(prior_cov)
    path = _path(lambda th, t: changepoint_step(th, t, prior_mean, chol, change_rounds, hazard, change_means), theta, n,
                 jnp.arange(2, n + 1))
    if contexts is not None:
        _observe(path, contexts, actions, rewards, noise_scale)


def random_walk_step(theta: jax.Array, drift_mean: jax.Array, drift_scale: jax.Array,
                     reversion: jax.Array) -> jax.Array:
    """One round of smooth drift: θ' = μ + (1 − r)(θ − μ) + τ ε, ε ~ N(0, I).

    Parameters
    ----------
    theta : (K, d) this round's parameters; drift_mean : (K, d) μ.
    drift_scale : scalar τ >= 0; reversion : scalar r in [0, 1] (0: a random walk).

    Sites: ``shock`` (K, d) ε. Returns (K, d) the next round's θ.
    """
    with numpyro.plate("action", theta.shape[0]):
        shock = numpyro.sample("shock", dist.Normal(jnp.zeros_like(theta), 1.0).to_event(1))
    return drift_mean + (1.0 - reversion) * (theta - drift_mean) + drift_scale * shock


def random_walk_linear_bandit(
    prior_mean: jax.Array,
    prior_cov: jax.Array,
    noise_scale: jax.Array,
    drift_scale: jax.Array,
    reversion: jax.Array = 0.0,
    drift_mean: jax.Array | None = None,
    contexts: jax.Array | None = None,
    actions: jax.Array | None = None,
    rewards: jax.Array | None = None,
    num_rounds: int | None = None,
) -> None:
    """Linear bandit whose arm parameters drift: a Gaussian random walk or an Ornstein–Uhlenbeck process.

    Parameters
    ----------
    prior_mean, prior_cov : (K, d), (K, d, d) the prior of θ_1. noise_scale : scalar σ.
    drift_scale : scalar τ, the per-round shock's standard deviation.
    reversion : scalar r in [0, 1], the pull toward ``drift_mean`` per round (0: random walk).
    drift_mean : (K, d) μ (None: ``prior_mean``).
    contexts, actions, rewards, num_rounds : as in ``changepoint_linear_bandit``.

    Sites: ``theta`` (K, d) θ_1; ``shock`` (n − 1, K, d); ``theta_path`` (n, K, d); ``reward`` (n,).
    """
    theta = _initial_theta(prior_mean, prior_cov)
    n = _num_rounds(contexts, num_rounds)
    if n == 0:
        return
    mean = prior_mean if drift_mean is None else drift_mean
    path = _path(lambda th, _: random_walk_step(th, mean, drift_scale, reversion), theta, n)
    if contexts is not None:
        _observe(path, contexts, actions, rewards, noise_scale)


def next_exposure(exposure: jax.Array, action: jax.Array, retention: jax.Array) -> jax.Array:
    """The user's exposures after a round: e' = ρ e + onehot(action); (K,) -> (K,)."""
    return retention * exposure + jax.nn.one_hot(action, exposure.shape[-1], dtype=exposure.dtype)


def habituated_means(theta: jax.Array, context: jax.Array, exposure: jax.Array, decay: jax.Array) -> jax.Array:
    """Every arm's expected reward under habituation: (xᵀθ_a) δ^{e_a}; theta (K, d), context (d,), exposure (K,)."""
    return (theta @ context) * decay**exposure


def habituation_linear_bandit(
    prior_mean: jax.Array,
    prior_cov: jax.Array,
    noise_scale: jax.Array,
    decay: jax.Array,
    retention: jax.Array,
    contexts: jax.Array | None = None,
    actions: jax.Array | None = None,
    rewards: jax.Array | None = None,
) -> None:
    """Linear bandit with habituation: the effect xᵀθ_a shrinks by δ per unit of recent exposure to arm a.

    Parameters
    ----------
    prior_mean, prior_cov : (K, d), (K, d, d) the prior of θ. noise_scale : scalar σ.
    decay : scalar δ in (0, 1]; retention : scalar ρ in [0, 1] (see the module docstring).
    contexts, actions, rewards : (n, d), (n,), (n,); the exposures follow from the actions.

    Sites: ``theta`` (K, d); ``exposure`` (n, K) each round's exposures before its action;
    ``reward`` (n,) when contexts are given.
    """
    theta = _initial_theta(prior_mean, prior_cov)
    if contexts is None:
        return
    start = jnp.zeros(prior_mean.shape[0], dtype=theta.dtype)
    _, exposure = jax.lax.scan(lambda e, a: (next_exposure(e, a, retention), e), start, actions)
    exposure = numpyro.deterministic("exposure", exposure)
    rounds = jnp.arange(contexts.shape[0])
    mean = jax.vmap(habituated_means, (None, 0, 0, None))(theta, contexts, exposure, decay)[rounds, actions]
    with numpyro.plate("round", contexts.shape[0]):
        numpyro.sample("reward", dist.Normal(mean, noise_scale), obs=rewards)
