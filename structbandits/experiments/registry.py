"""The components a config file can name: environment kinds and agent kinds.

Each kind is a builder function whose keyword arguments are exactly the keys its config table
accepts (besides ``kind``); the annotations give the types and the defaults are the documented
defaults. Agent builders receive the environment first, so that arm counts and context sizes come
from the environment instead of being repeated in every agent table; builders with a keyword-only
``horizon`` argument (no default) also receive the experiment's horizon.

Adding a kind: write a builder here and add it to ``ENVIRONMENTS`` or ``AGENTS``, and list in
``VALUE_KEYS`` the keys of an agent kind that change only the values of its ``Policy.params`` (never
a shape or a code path): a sweep over those keys runs every cell through one compiled program
(``tests/test_value_keys.py`` checks each declared key against a policy built from scratch).
"""

from __future__ import annotations

from collections.abc import Callable

from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp

from structbandits.agents import (
    Policy,
    glm_ts,
    hier_ts,
    hier_ts_glm,
    lin_ts,
    lin_ts_nig,
    lin_ucb,
    mets,
    mets_glm,
    uniform_random,
)
from structbandits.envs import Environment, linear_contextual_bandit, mixed_effect_bandit
from structbandits.envs.drifting import changepoint_bandit, habituation_bandit, random_walk_bandit
from structbandits.envs.movielens import movielens_bandit
from structbandits.errors import ValidationError, check_positive
from structbandits.models import marginal_action_prior

__all__ = ["AGENTS", "ENVIRONMENTS", "VALUE_KEYS", "EnvironmentMismatch"]

# Programs whose rewards are linear-Gaussian: what the Gaussian-posterior agents assume.
_LINEAR_GAUSSIAN = ("linear_bandit", "mixed_effect_linear", "changepoint_linear_bandit", "random_walk_linear_bandit",
                    "habituation_linear_bandit")


class EnvironmentMismatch(ValidationError):
    """An agent kind that cannot run on the environment it is given (the config names which)."""


def linear_env(num_actions: int = 10, num_features: int = 5, prior_scale: float = 1.0,
               noise_scale: float = 1.0) -> Environment:
    """Synthetic linear contextual bandit, θ_a ~ N(0, prior_scale² I), contexts ~ U[-1, 1]^d."""
    return linear_contextual_bandit(num_actions, num_features, prior_scale=prior_scale, noise_scale=noise_scale)


def lints_agent(env: Environment, sigma0: float = 1.0, prior_mean: float = 0.0, noise_scale: float = 1.0,
                propensity_draws: int = 0, forgetting: str = "", forgetting_rate: float = 1.0,
                window: int = 0) -> Policy:
    """Linear TS with prior N(prior_mean·1, sigma0² I) per arm and known noise noise_scale
    (for linear-Gaussian environments; an environment without a declared model is taken as it is);
    ``forgetting`` "" (none), "exponential" or "stabilised" (at ``forgetting_rate``) or "window" (of
    ``window`` rounds), as ``agents.lin_ts``."""
    if env.model is not None:
        _model_params(env, "lints", _LINEAR_GAUSSIAN)
    d = env.context_shape[-1]
    check_positive("sigma0", sigma0)
    return lin_ts(jnp.full(d, prior_mean), sigma0**2 * jnp.eye(d), noise_scale,
                  num_actions=env.num_actions, propensity_draws=propensity_draws,
                  **_forgetting_options(forgetting, forgetting_rate, window))


def lints_nig_agent(env: Environment, sigma0: float = 1.0, prior_mean: float = 0.0, noise_alpha: float = 2.0,
                    noise_beta: float = 1.0, shared: bool = False, propensity_draws: int = 0, forgetting: str = "",
                    forgetting_rate: float = 1.0, window: int = 0) -> Policy:
    """Linear TS with unknown noise (Normal-Inverse-Gamma): σ² ~ InvGamma(noise_alpha, noise_beta), one per
    arm or one for all arms (``shared``), and θ_a | σ² ~ N(prior_mean·1, σ² sigma0² I) (for linear-Gaussian
    environments; an environment without a declared model is taken as it is); forgetting as ``lints``."""
    if env.model is not None:
        _model_params(env, "lints-nig", _LINEAR_GAUSSIAN)
    d = env.context_shape[-1]
    check_positive("sigma0", sigma0)
    return lin_ts_nig(jnp.full(d, prior_mean), sigma0**2 * jnp.eye(d), noise_alpha, noise_beta,
                      num_actions=env.num_actions, shared=shared, propensity_draws=propensity_draws,
                      **_forgetting_options(forgetting, forgetting_rate, window))


def _forgetting_options(forgetting: str, forgetting_rate: float, window: int) -> dict[str, Any]:
    """A config's forgetting keys as the agents' options: "" is no forgetting, a window of 0 none."""
    return {"forgetting": forgetting or None, "forgetting_rate": forgetting_rate, "window": window or None}


def mixed_effect_env(num_actions: int = 100, num_effects: int = 3, num_features: int = 2,
                     effect_scale: float = 3.0**0.5, action_scale: float = 1.0, noise_scale: float = 1.0,
                     mixing_low: float = -1.0, mixing_high: float = 1.0, context_pool: int = 100,
                     structure_seed: int = 0, rewards: str = "linear") -> Environment:
    """The meTS synthetic mixed-effect bandit (per-arm contexts from a pool; b fixed by structure_seed);
    ``rewards`` is "linear" (Gaussian noise noise_scale) or "logistic" (Bernoulli)."""
    return mixed_effect_bandit(num_actions, num_effects, num_features, effect_scale=effect_scale,
                               action_scale=action_scale, noise_scale=noise_scale, mixing_low=mixing_low,
                               mixing_high=mixing_high, context_pool=context_pool, structure_seed=structure_seed,
                               rewards=rewards)


def movielens_env(num_actions: int = 100, num_effects: str = "default", rank: int = 5, structure: str = "gmm",
                  rewards: str = "linear", noise_scale: float = 0.5, contexts: str = "shared", context_pool: int = 100,
                  structure_seed: int = 0, covariance_type: str = "diag", effect_share: float = 0.75,
                  data_path: str = "") -> Environment:
    """The meTS MovieLens bandit: ALS embeddings of MovieLens ratings, structure from a Gaussian mixture
    ("gmm", "onehot") or the genres ("genres"). ``num_effects``: "default" (5; the 19 genres for
    "genres"), "auto" (BIC) or a number such as "8"; ``noise_scale`` applies to linear rewards only;
    ``data_path`` "" reads MovieLens-100K from the recbole wheel."""
    if num_effects == "default":
        effects = None
    elif num_effects == "auto":
        effects = "auto"
    elif num_effects.isdigit():
        effects = int(num_effects)
    else:
        raise ValidationError(f"num_effects: expected \"default\", \"auto\" or a whole number in quotes, got {num_effects!r}")
    if effects is None and structure != "genres":
        effects = 5
    if rewards == "logistic" and noise_scale != 0.5:
        raise ValidationError(f"noise_scale: logistic rewards have no noise scale; leave it at 0.5, got {noise_scale}")
    return movielens_bandit(num_actions, effects, rank, structure=structure, rewards=rewards,
                            noise_scale=noise_scale if rewards == "linear" else None, contexts=contexts,
                            context_pool=context_pool, structure_seed=structure_seed, covariance_type=covariance_type,
                            effect_share=effect_share, data_path=data_path or None)


def drift_changepoint_env(num_actions: int = 10, num_features: int = 5, prior_scale: float = 1.0,
                          noise_scale: float = 1.0, change_rounds: list[int] = (), hazard: float = 0.0) -> Environment:
    """Linear bandit whose arms are all redrawn from N(0, prior_scale² I) from each of ``change_rounds``
    (a list of rounds >= 2, e.g. [251, 501]) and with probability ``hazard`` in every round."""
    return changepoint_bandit(num_actions, num_features, change_rounds=change_rounds, hazard=hazard,
                              prior_scale=prior_scale, noise_scale=noise_scale)


def drift_smooth_env(num_actions: int = 10, num_features: int = 5, prior_scale: float = 1.0, noise_scale: float = 1.0,
                     drift_scale: float = 0.05, reversion: float = 0.0) -> Environment:
    """Linear bandit whose arm parameters drift: θ_{t+1} = (1 − reversion) θ_t + N(0, drift_scale² I)
    (reversion 0: a Gaussian random walk; > 0: Ornstein–Uhlenbeck toward 0)."""
    return random_walk_bandit(num_actions, num_features, drift_scale=drift_scale, reversion=reversion,
                              prior_scale=prior_scale, noise_scale=noise_scale)


def habituation_env(num_actions: int = 10, num_features: int = 5, prior_scale: float = 1.0, noise_scale: float = 1.0,
                    decay: float = 0.8, retention: float = 0.5) -> Environment:
    """Linear bandit with habituation: arm a's effect is multiplied by decay^e, e the user's exposure to a
    (e ← retention · e + 1 when pulled, e ← retention · e when rested)."""
    return habituation_bandit(num_actions, num_features, decay=decay, retention=retention, prior_scale=prior_scale,
                              noise_scale=noise_scale)


def _model_params(env: Environment, kind: str, models: tuple[str, ...]) -> Mapping[str, Any]:
    if env.model is None or env.model.model not in models:
        found = env.model.model if env.model is not None else "no declared model"
        expected = models[0] if len(models) == 1 else f"{', '.join(models[:-1])} or {models[-1]}"
        raise EnvironmentMismatch(f"kind: {kind!r} needs an environment generated by {expected}, got {found}")
    return env.model.params


_MIXED_EFFECT_PRIOR = ("mixing", "effect_mean", "effect_cov", "action_cov")


def _matched_arm_prior(env: Environment, kind: str, models: tuple[str, ...]) -> tuple[Any, Any]:
    """Each arm's prior under the environment's program (for mixed-effect programs, the marginal prior
    with the effects integrated out): what a structure-blind but well-specified baseline is given."""
    params = _model_params(env, kind, models)
    if env.model.model.startswith("mixed_effect"):
        return marginal_action_prior(*(jnp.asarray(params[name]) for name in _MIXED_EFFECT_PRIOR))
    return params["prior_mean"], params["prior_cov"]


def lints_matched_agent(env: Environment, propensity_draws: int = 0) -> Policy:
    """LinTS given the environment's own per-arm prior and noise."""
    prior = _matched_arm_prior(env, "lints-matched", _LINEAR_GAUSSIAN)
    return lin_ts(*prior, env.model.params["noise_scale"], propensity_draws=propensity_draws)


def linucb_matched_agent(env: Environment, *, horizon: int, delta: float = 0.0) -> Policy:
    """LinUCB given the environment's own per-arm prior and noise; ``delta`` = 0 means 1/horizon (the reference)."""
    prior = _matched_arm_prior(env, "linucb-matched", _LINEAR_GAUSSIAN)
    return lin_ucb(*prior, env.model.params["noise_scale"], delta=delta if delta != 0.0 else 1.0 / max(horizon, 2))


def glmts_matched_agent(env: Environment, *, horizon: int, newton_steps: int = 20) -> Policy:
    """GLM-TS (per-arm Laplace) given the logistic environment's marginal per-arm prior. ``newton_steps`` caps
    each refit's warm-started Newton steps (it stops at ``agents.glm``'s tolerance first; a refit that hits
    the cap is counted in ``state.failed_refits``); the same for the other logistic agents."""
    prior = _matched_arm_prior(env, "glmts-matched", ("mixed_effect_logistic",))
    return glm_ts(*prior, history_size=horizon, newton_steps=newton_steps)


def _agent_prior(env: Environment, kind: str, models: tuple[str, ...], effect_scale: float, action_scale: float,
                 noise_scale: float | None = None) -> dict[str, Any]:
    """The environment's mixed-effect prior, with the agent's own scales where given (0 keeps the
    environment's): Σ_Ψ = effect_scale² I, Σ0 = action_scale² I, σ = noise_scale. A scale other than the
    environment's is a misspecified prior, what a prior-sensitivity sweep varies."""
    params = dict(_model_params(env, kind, models))
    for name, value in (("effect_scale", effect_scale), ("action_scale", action_scale), ("noise_scale", noise_scale)):
        if value is not None and value != 0.0:
            check_positive(name, value)
    if effect_scale != 0.0:
        params["effect_cov"] = effect_scale**2 * jnp.eye(jnp.shape(params["effect_cov"])[0])
    if action_scale != 0.0:
        params["action_cov"] = action_scale**2 * jnp.eye(jnp.shape(params["action_cov"])[-1])
    if noise_scale:
        params["noise_scale"] = noise_scale
    return params


def mets_agent(env: Environment, factored: bool = False, effect_scale: float = 0.0, action_scale: float = 0.0,
               noise_scale: float = 0.0, forgetting: str = "", forgetting_rate: float = 1.0,
               effect_forgetting_rate: float = 1.0, window: int = 0, sampling: str = "arms") -> Policy:
    """meTS given the environment's mixed-effect structure (mixing weights, effect and action priors);
    ``effect_scale`` / ``action_scale`` / ``noise_scale`` > 0 replace the prior's Σ_Ψ = effect_scale² I,
    Σ0 = action_scale² I and σ (0: the environment's own); forgetting as ``lints``, with the effects'
    own ``effect_forgetting_rate``; ``sampling`` "arms" (θ̃ per arm) or "scores" (one normal per arm's
    score, cheaper at large K) (``agents.mets``)."""
    params = _agent_prior(env, "mets", ("mixed_effect_linear",), effect_scale, action_scale, noise_scale)
    return mets(*(params[name] for name in _MIXED_EFFECT_PRIOR), params["noise_scale"], factored=factored,
                effect_forgetting_rate=effect_forgetting_rate, sampling=sampling,
                **_forgetting_options(forgetting, forgetting_rate, window))


def mets_glm_agent(env: Environment, *, horizon: int, factored: bool = False, newton_steps: int = 20,
                   effect_scale: float = 0.0, action_scale: float = 0.0) -> Policy:
    """meTS-GLM (Laplace pseudo-observations) given the logistic environment's mixed-effect structure;
    ``effect_scale`` / ``action_scale`` > 0 replace Σ_Ψ and Σ0 as for ``mets``."""
    params = _agent_prior(env, "mets-glm", ("mixed_effect_logistic",), effect_scale, action_scale)
    return mets_glm(*(params[name] for name in _MIXED_EFFECT_PRIOR), history_size=horizon, factored=factored,
                    newton_steps=newton_steps)


def hierts_agent(env: Environment, effect_scale: float = 0.0, action_scale: float = 0.0,
                 noise_scale: float = 0.0, sampling: str = "arms") -> Policy:
    """HierTS: one shared hyper-parameter with the prior of the average effect; mixing weights ignored;
    the scales and ``sampling`` as for ``mets``."""
    params = _agent_prior(env, "hierts", ("mixed_effect_linear",), effect_scale, action_scale, noise_scale)
    return hier_ts(params["effect_mean"], params["effect_cov"], params["action_cov"], params["noise_scale"],
                   num_actions=env.num_actions, sampling=sampling)


def hierts_glm_agent(env: Environment, *, horizon: int, newton_steps: int = 20, effect_scale: float = 0.0,
                     action_scale: float = 0.0) -> Policy:
    """HierTS for logistic rewards (Laplace pseudo-observations); mixing weights ignored; the scales
    replace the prior's as for ``mets``."""
    params = _agent_prior(env, "hierts-glm", ("mixed_effect_logistic",), effect_scale, action_scale)
    return hier_ts_glm(params["effect_mean"], params["effect_cov"], params["action_cov"], num_actions=env.num_actions,
                       history_size=horizon, newton_steps=newton_steps)


def random_agent(env: Environment) -> Policy:
    """Uniform-random baseline."""
    return uniform_random(env.num_actions)


ENVIRONMENTS: dict[str, Callable[..., Environment]] = {
    "linear": linear_env,
    "mixed_effect": mixed_effect_env,
    "movielens": movielens_env,
    "drift-changepoint": drift_changepoint_env,
    "drift-smooth": drift_smooth_env,
    "habituation": habituation_env,
}
AGENTS: dict[str, Callable[..., Policy]] = {
    "glmts-matched": glmts_matched_agent,
    "hierts": hierts_agent,
    "hierts-glm": hierts_glm_agent,
    "lints": lints_agent,
    "lints-matched": lints_matched_agent,
    "lints-nig": lints_nig_agent,
    "linucb-matched": linucb_matched_agent,
    "mets": mets_agent,
    "mets-glm": mets_glm_agent,
    "random": random_agent,
}

# The keys of each agent kind that change only the values of its Policy.params, never a shape or a
# code path (see the module docstring): a sweep over them compiles once. Every other key, and every
# environment key, builds a new program.
VALUE_KEYS: dict[str, frozenset[str]] = {
    "glmts-matched": frozenset(),
    "hierts": frozenset({"effect_scale", "action_scale", "noise_scale"}),
    "hierts-glm": frozenset({"effect_scale", "action_scale"}),
    "lints": frozenset({"sigma0", "prior_mean", "noise_scale", "forgetting_rate"}),
    "lints-matched": frozenset(),
    "lints-nig": frozenset({"sigma0", "prior_mean", "noise_alpha", "noise_beta", "forgetting_rate"}),
    "linucb-matched": frozenset({"delta"}),
    "mets": frozenset({"effect_scale", "action_scale", "noise_scale", "forgetting_rate", "effect_forgetting_rate"}),
    "mets-glm": frozenset({"effect_scale", "action_scale"}),
    "random": frozenset(),
}
