"""A hierarchical reward model with per-user random effects (no closed form).

    τ ~ HalfNormal(prior_scale_users)                 spread of the users' baselines
    z_j ~ N(0, 1),  u_j = τ z_j                       j = 1..U, each user's baseline propensity
    θ_a ~ N(0, prior_scale_arms² I)                   a = 1..K, arm effects
    y_t ~ Bernoulli(sigmoid(x_tᵀθ_{a_t} + u_{user_t}))

The logit depends on who the user is, and users share information through τ, so neither the
per-arm nor the mixed-effect closed forms apply: the generic Thompson sampler
(``agents.numpyro_ts``) runs it by Laplace or NUTS. Contexts are a dict pytree
``{"user": (n,) int, "features": (n, d)}``.

The users' baselines are written non-centred (u = τ z): in the centred form u_j ~ N(0, τ²) the
joint density grows without bound as τ → 0 with u → 0, so the MAP that a Laplace approximation
needs does not exist (and NUTS meets the funnel); the non-centred form has an interior mode.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

__all__ = ["random_intercept_logistic"]


def random_intercept_logistic(
    num_users: int,
    num_actions: int,
    num_features: int,
    prior_scale_users: float = 1.0,
    prior_scale_arms: float = 1.0,
    contexts: dict[str, jax.Array] | None = None,
    actions: jax.Array | None = None,
    rewards: jax.Array | None = None,
) -> None:
    """Sites: ``user_scale`` (), ``user_offset`` (U,), deterministic ``user_effect`` (U,),
    ``theta`` (K, d), ``reward`` (n,)."""
    user_scale = numpyro.sample("user_scale", dist.HalfNormal(prior_scale_users))
    with numpyro.plate("user", num_users):
        user_offset = numpyro.sample("user_offset", dist.Normal(0.0, 1.0))
    user_effect = numpyro.deterministic("user_effect", user_scale * user_offset)
    with numpyro.plate("action", num_actions):
        theta = numpyro.sample("theta", dist.Normal(0.0, prior_scale_arms).expand([num_features]).to_event(1))
    if contexts is None:
        return
    logits = jnp.sum(contexts["features"] * theta[actions], -1) + user_effect[contexts["user"]]
    with numpyro.plate("round", actions.shape[0]):
        numpyro.sample("reward", dist.Bernoulli(logits=logits), obs=rewards)
