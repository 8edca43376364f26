"""Thompson sampling for logistic (Bernoulli-logit) rewards by Laplace pseudo-observations.

meTS-GLM, its factored variant, HierTS-GLM and GLM-TS keep every observation and, after each round,
refit only the pulled arm: warm-started Newton (IRLS) steps for the mode of its log-likelihood under
its marginal prior, then the Gaussian pseudo-observations G = Hessian, B = G θ̂ + ∇ℓ(θ̂) at that mode
(``inference.pseudo_observations``). meTS-GLM feeds (G, B) to the same effect and action posteriors
as linear meTS (``mets_core``); GLM-TS conditions each arm's marginal prior on them, which is the
usual per-arm Laplace posterior N(θ̂, (Λ + G)⁻¹).

The data are those of the most recent ``history_size`` rounds (static shapes under ``jit``; a sliding
window for longer runs; the experiment registry passes the horizon, so nothing is dropped). Two ways
to keep and refit them (``refit``):

- ``"per_arm"`` (default): each arm's own rows, deduplicated with counts (``inference.arm_rows``: a
  context seen again adds to its row's counts), and a Newton that stops once the Newton decrement is
  below ``newton_tol`` posterior sds, with at most ``newton_steps`` steps (``inference.
  pseudo_observations.newton_mode``). An update reads only the pulled arm's rows, in chunks:
  O(r_a · d² · passes) for r_a distinct rows of arm a (at most its pulls, at most the context pool's
  size P), about 2–4 passes per round once warm, so a run's cost no longer grows with the square of
  the horizon. Refits that stop before the tolerance are counted in ``state.failed_refits``; each
  next refit of that arm starts where it stopped. A ring of the rounds in the window (action, row slot,
  reward) takes the oldest round back out of its arm's counts when the window is full, so the data
  are those of ``"history"``. Storage: K · ``arm_capacity`` · (d + 2) numbers (``arm_capacity``
  defaults to ``history_size``, which always suffices; min(P, history_size) suffices for contexts
  from a pool of P; a row with no room is dropped and counted in ``state.arm_rows.dropped``).
- ``"history"``: the refit used before (issue 22), kept bit for bit: one shared buffer of ``history_size`` rounds and
  exactly ``newton_steps`` damped Newton steps, each evaluating derivatives over the whole buffer
  (other arms masked out) and the objective at 5 step sizes: O(history_size · d² · 6 · newton_steps)
  per round whatever the arm's data. ``failed_refits`` stays 0 (convergence is not checked).

Both give the same posterior up to the Newton tolerance (when ``"history"`` has converged).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from structbandits.agents.mets import (
    METSParams,
    METSState,
    average_effect_prior,
    check_effect_prior,
    mets_core,
    validate_mixed_effect_prior,
)
from structbandits.agents.protocol import ActInfo, Policy, no_propensity
from structbandits.agents.thompson import (
    arm_draws,
    arm_features,
    arm_posterior_draws,
    arm_scores,
    broadcast_arm_prior,
    put_arm,
    take_arm,
)
from structbandits.errors import ValidationError, check_integer, check_num_elements, check_positive
from structbandits.inference.arm_rows import ArmRows, arm_rows_add, arm_rows_init, arm_rows_remove, arm_rows_sum
from structbandits.inference.conjugate import GaussianInfo, gaussian_condition, gaussian_from_moments
from structbandits.inference.pseudo_observations import (
    logistic_count_terms,
    logistic_mode,
    logistic_pseudo_observations,
    newton_mode,
    pseudo_observations_at,
)
from structbandits.inference.ring_buffer import RingBuffer, ring_append, ring_evicted, ring_filled, ring_init
from structbandits.models.mixed_effect import marginal_action_prior

__all__ = ["GLMTSParams", "GLMTSState", "LaplacePrior", "METSGLMParams", "METSGLMState", "REFITS", "glm_ts",
           "hier_ts_glm", "mets_glm"]

REFITS = ("per_arm", "history")
NEWTON_STEPS = {"per_arm": 20, "history": 3}  # newton_steps=None: a cap (2-3 steps are typical once warm) / a count


def _history_init(size: int, d: int) -> RingBuffer:
    """An empty history of ``size`` rounds: rows ``features`` (d,), ``actions`` () int32, ``rewards`` ()."""
    return ring_init({"features": jnp.zeros(d), "actions": jnp.zeros((), jnp.int32), "rewards": jnp.zeros(())}, size)


def _append(history: RingBuffer, context: jax.Array, action: jax.Array, reward: jax.Array) -> RingBuffer:
    return ring_append(history, {"features": arm_features(context, action), "actions": action, "rewards": reward})


class LaplacePrior(NamedTuple):
    """The per-arm marginal priors the Laplace refits work against: ``mean`` (K, d), ``precision`` (K, d, d)."""

    mean: jax.Array
    precision: jax.Array


def _laplace_prior(prior_mean: np.ndarray, prior_cov: np.ndarray) -> LaplacePrior:
    precision_chol = jax.vmap(gaussian_from_moments)(jnp.asarray(prior_mean), jnp.asarray(prior_cov)).precision_chol
    return LaplacePrior(jnp.asarray(prior_mean), precision_chol @ jnp.swapaxes(precision_chol, 1, 2))


def _refit_full_history(prior: LaplacePrior, newton_steps: int, history: RingBuffer, arm: jax.Array,
                        start: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``refit="history"``: mode (d,) of arm's data under its marginal prior after ``newton_steps``
    damped steps from ``start`` over the whole shared buffer, and its (G, B)."""
    features, rewards = history.rows["features"], history.rows["rewards"]
    weights = ((history.rows["actions"] == arm) & ring_filled(history)).astype(rewards.dtype)
    mode = logistic_mode(start, features, rewards, weights, prior.precision[arm], prior.mean[arm], newton_steps)
    return (mode, *logistic_pseudo_observations(mode, features, rewards, weights))


class _Data(NamedTuple):
    """How an agent keeps and refits its data (``refit``): ``init() -> kept``, the state's (history,
    arm_rows, oldest), and ``refit(prior, kept, context, action, reward, start) -> (kept, mode, G, B, failed)``."""

    init: Callable[[], tuple]
    refit: Callable[..., tuple]


def _data(refit: str, num_arms: int, d: int, history_size: int, newton_steps: int, newton_tol: float | None,
          arm_capacity: int | None) -> _Data:
    """Validate the structural options and build the data keeping of ``refit`` (see the module docstring)."""
    history_size = check_integer("history_size", history_size, minimum=1)
    if refit not in REFITS:
        raise ValidationError(f"refit: expected one of {', '.join(map(repr, REFITS))}, got {refit!r}")
    newton_steps = check_integer("newton_steps", NEWTON_STEPS[refit] if newton_steps is None else newton_steps,
                                 minimum=1)
    if newton_tol is not None:
        newton_tol = float(check_positive("newton_tol", newton_tol))
    capacity = history_size if arm_capacity is None else check_integer("arm_capacity", arm_capacity, minimum=1)
    capacity = min(capacity, history_size)

    if refit == "history":
        def init_history():
            return _history_init(history_size, d), None, None

        def refit_history(prior, kept, context, action, reward, start):
            history = _append(kept[0], context, action, reward)
            mode, gram, moment = _refit_full_history(prior, newton_steps, history, action, start)
            return (history, None, None), mode, gram, moment, jnp.zeros((), bool)

        return _Data(init_history, refit_history)

    check_num_elements("num_actions, arm_capacity, num_features + 2", (num_arms, capacity, d + 2))

    def init_per_arm():
        rounds = ring_init({"actions": jnp.zeros((), jnp.int32), "slots": jnp.zeros((), jnp.int32),
                            "rewards": jnp.zeros(())}, history_size)
        return rounds, arm_rows_init(num_arms, capacity, d), ring_evicted(rounds)

    def refit_per_arm(prior, kept, context, action, reward, start):
        # The round leaving the window was read right after the previous append (``oldest``): reading
        # the ring here, before this round's append, makes XLA copy the whole ring every round.
        history, arm_rows, (oldest, full) = kept
        arm_rows = arm_rows_remove(arm_rows, oldest["actions"], oldest["slots"], oldest["rewards"], full)
        arm_rows, slot = arm_rows_add(arm_rows, action, arm_features(context, action), reward)
        history = ring_append(history, {"actions": action, "slots": slot, "rewards": reward})
        tolerance = newton_tol if newton_tol is not None else float(np.sqrt(np.finfo(start.dtype).eps))

        def terms(theta):
            return arm_rows_sum(arm_rows, action, lambda *rows: logistic_count_terms(theta, *rows))

        fit = newton_mode(start, terms, prior.precision[action], prior.mean[action], tolerance, newton_steps)
        return ((history, arm_rows, ring_evicted(history)), fit.mode,
                *pseudo_observations_at(fit.mode, fit.gradient, fit.curvature), ~fit.converged)

    return _Data(init_per_arm, refit_per_arm)


class METSGLMParams(NamedTuple):
    """meTS-GLM hyperparameters: ``core`` (METSParams, the mixed-effect prior in information form;
    ``noise_var`` 1 and unused) and ``laplace`` (LaplacePrior, each arm's marginal prior, Ψ integrated out)."""

    core: METSParams
    laplace: LaplacePrior


class METSGLMState(NamedTuple):
    """meTS-GLM state: ``posterior`` (METSState over the pseudo-observations, holding ``params.core``),
    ``history`` (RingBuffer of the window's rounds: ``refit="per_arm"`` keeps (action, row slot, reward),
    ``"history"`` (features, action, reward)), ``arm_rows`` (ArmRows, each arm's distinct rows with
    counts; None for ``"history"``), ``oldest`` (the round the next update takes out of the window and
    () bool whether the window is full, ``ring_evicted(history)``; None for ``"history"``), ``mode``
    (K, d), each arm's latest Laplace expansion point (the warm start), ``failed_refits`` () int32,
    refits that stopped before the Newton tolerance, and ``params``."""

    posterior: METSState
    history: RingBuffer
    arm_rows: ArmRows | None
    oldest: tuple | None
    mode: jax.Array
    failed_refits: jax.Array
    params: METSGLMParams


def mets_glm(mixing, effect_mean, effect_cov, action_cov, *, history_size: int, factored: bool = False,
             newton_steps: int | None = None, refit: str = "per_arm", newton_tol: float | None = None,
             arm_capacity: int | None = None) -> Policy:
    """meTS for Bernoulli(sigmoid(xᵀθ_a)) rewards with Laplace pseudo-observations.

    Parameters
    ----------
    mixing, effect_mean, effect_cov, action_cov : the mixed-effect prior, as in ``mets``.
    history_size : T, rounds kept for the per-arm refits (at least the horizon to keep all).
    factored : block-diagonal effect posterior (meTS-GLM-factored).
    newton_steps : Newton steps per refit, warm-started from the arm's previous mode: the most steps
        (``refit="per_arm"``, which stops earlier at the tolerance; None: 20), or exactly that many
        ("history"; None: 3, the count used so far).
    refit : "per_arm" (each arm's own rows, Newton to a tolerance) or "history" (the whole shared
        buffer, fixed steps: the previous implementation, bit for bit); see the module docstring.
    newton_tol : Newton decrement (posterior sds) at which a "per_arm" refit stops; None: √ε of the
        float type (1.5e-8 in float64).
    arm_capacity : distinct rows kept per arm ("per_arm"); None: ``history_size``, always enough.

    Contexts are (d,) shared or (K, d) per arm; rewards are 0 or 1. ``Policy.params`` is a
    ``METSGLMParams``; ``history_size``, ``newton_steps``, ``factored``, ``refit``, ``newton_tol`` and
    ``arm_capacity`` are structural.
    """
    mixing, effect_mean, effect_cov, action_cov = validate_mixed_effect_prior(mixing, effect_mean, effect_cov, action_cov)
    d = effect_mean.shape[1]
    data = _data(refit, mixing.shape[0], d, history_size, newton_steps, newton_tol, arm_capacity)
    core = mets_core(mixing, effect_mean, effect_cov, action_cov, factored)
    marginal_mean, marginal_cov = marginal_action_prior(*(jnp.asarray(a) for a in (mixing, effect_mean, effect_cov, action_cov)))
    defaults = METSGLMParams(core.params, _laplace_prior(marginal_mean, marginal_cov))

    def init(key: jax.Array, params: METSGLMParams | None = None) -> METSGLMState:
        params = defaults if params is None else params
        return METSGLMState(core.init(params.core), *data.init(), params.laplace.mean, jnp.zeros((), jnp.int32),
                            params)

    def act(state: METSGLMState, key: jax.Array, context: jax.Array) -> tuple[jax.Array, ActInfo]:
        theta = core.sample_actions(state.posterior, key)
        return jnp.argmax(arm_scores(theta, context)), no_propensity(theta.dtype)

    def update(state: METSGLMState, context: jax.Array, action: jax.Array, reward: jax.Array) -> METSGLMState:
        kept = (state.history, state.arm_rows, state.oldest)
        kept, mode, gram, moment, failed = data.refit(state.params.laplace, kept, context, action, reward,
                                                      state.mode[action])
        conditional = state.posterior.params.action_precision[action] + gram
        conditional_chol = jnp.linalg.cholesky(0.5 * (conditional + conditional.T))
        posterior = core.set_arm(state.posterior, action, gram, moment, conditional_chol)
        return METSGLMState(posterior, *kept, state.mode.at[action].set(mode),
                            state.failed_refits + failed.astype(jnp.int32), state.params)

    def posterior_draws(state: METSGLMState, key: jax.Array, num_draws: int) -> dict[str, jax.Array]:
        return core.posterior_draws(state.posterior, key, num_draws)

    return Policy(init, act, update, posterior_draws, defaults)


def hier_ts_glm(effect_mean, effect_cov, action_cov, *, num_actions: int, history_size: int,
                newton_steps: int | None = None, refit: str = "per_arm", newton_tol: float | None = None,
                arm_capacity: int | None = None) -> Policy:
    """HierTS for logistic rewards: ``mets_glm`` with one shared hyper-parameter (see ``hier_ts``);
    the options as in ``mets_glm``."""
    mean, cov = average_effect_prior(*check_effect_prior(effect_mean, effect_cov))
    return mets_glm(np.ones((num_actions, 1)), mean, cov, action_cov, history_size=history_size,
                    newton_steps=newton_steps, refit=refit, newton_tol=newton_tol, arm_capacity=arm_capacity)


class GLMTSParams(NamedTuple):
    """GLM-TS hyperparameters: the per-arm prior in information form (``prior``: ``precision_chol``
    (K, d, d), ``info`` (K, d)) and as the Laplace refits use it (``laplace``: mean (K, d), precision (K, d, d))."""

    prior: GaussianInfo
    laplace: LaplacePrior


class GLMTSState(NamedTuple):
    """GLM-TS state: per-arm Laplace posteriors ``posterior`` (K stacked); ``history``, ``arm_rows``,
    ``oldest``, ``mode`` (K, d), ``failed_refits`` and ``params`` as in ``METSGLMState``."""

    posterior: GaussianInfo
    history: RingBuffer
    arm_rows: ArmRows | None
    oldest: tuple | None
    mode: jax.Array
    failed_refits: jax.Array
    params: GLMTSParams


def glm_ts(prior_mean, prior_cov, *, history_size: int, num_actions: int | None = None,
           newton_steps: int | None = None, refit: str = "per_arm", newton_tol: float | None = None,
           arm_capacity: int | None = None) -> Policy:
    """GLM-TS: independent per-arm Laplace posteriors for Bernoulli(sigmoid(xᵀθ_a)) rewards.

    Parameters
    ----------
    prior_mean : (d,) shared or (K, d) per-arm prior means (for meTS comparisons, the marginal prior).
    prior_cov : (d, d) or (K, d, d) prior covariances.
    history_size, newton_steps, refit, newton_tol, arm_capacity : as in ``mets_glm``.
    num_actions : K, required when neither prior has a leading arm axis.

    ``Policy.params`` is a ``GLMTSParams``; the other options are structural.
    """
    mean, cov = broadcast_arm_prior(prior_mean, prior_cov, num_actions)
    num_arms, d = mean.shape
    data = _data(refit, num_arms, d, history_size, newton_steps, newton_tol, arm_capacity)
    defaults = GLMTSParams(jax.vmap(gaussian_from_moments)(jnp.asarray(mean), jnp.asarray(cov)),
                           _laplace_prior(mean, cov))

    def init(key: jax.Array, params: GLMTSParams | None = None) -> GLMTSState:
        params = defaults if params is None else params
        return GLMTSState(params.prior, *data.init(), params.laplace.mean, jnp.zeros((), jnp.int32), params)

    def act(state: GLMTSState, key: jax.Array, context: jax.Array) -> tuple[jax.Array, ActInfo]:
        theta = arm_draws(state.posterior, key)  # the normals of vmap(gaussian_sample) over split(key, K)
        return jnp.argmax(arm_scores(theta, context)), no_propensity(theta.dtype)

    def update(state: GLMTSState, context: jax.Array, action: jax.Array, reward: jax.Array) -> GLMTSState:
        kept = (state.history, state.arm_rows, state.oldest)
        kept, mode, gram, moment, failed = data.refit(state.params.laplace, kept, context, action, reward,
                                                      state.mode[action])
        arm = gaussian_condition(take_arm(state.params.prior, action), gram, moment)
        return GLMTSState(put_arm(state.posterior, action, arm), *kept, state.mode.at[action].set(mode),
                          state.failed_refits + failed.astype(jnp.int32), state.params)

    def posterior_draws(state: GLMTSState, key: jax.Array, num_draws: int) -> dict[str, jax.Array]:
        return arm_posterior_draws(state.posterior, key, num_draws)

    return Policy(init, act, update, posterior_draws, defaults)
