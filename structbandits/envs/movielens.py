"""The meTS MovieLens bandit: ALS embeddings of real ratings as ground truth, a learned structure as prior.

Built once per environment (fixed across seeds, known to structured agents): ALS (seeded by
``als_seed``) factorises all MovieLens ratings (``structure.factorization``) into user embeddings x_u
and movie embeddings v_m (rank d); ``structure_seed`` draws K movies uniformly *with replacement*
as the arms, θ_i = v_{m_i}; a structure learned on all movie embeddings gives the prior the agents
get (``structure.gmm``):

* ``structure="gmm"``: a Gaussian mixture with L components (or L by BIC, ``num_effects="auto"``),
  b_i = predict_proba(θ_i), μ_Ψ = component means (the meTS reference);
* ``"onehot"``: the same mixture with hard (one-hot) assignments;
* ``"genres"``: the 19 genres as effects, b_i = the movie's genre flags normalised to sum to one,
  μ_ψl = the mean embedding of genre l;

with Σ_Ψ = effect_share · I_L ⊗ diag(var) and Σ0 = (1 − effect_share) · diag(var), var the
per-dimension variance of the movie embeddings.

Per seed (``init``): a pool of ``context_pool`` distinct users. Each round one user is drawn from the
pool and her embedding is the context shared by all arms (``contexts="shared"``, shape (d,)), or
every arm gets its own user from the pool (``contexts="per_arm"``, (K, d), as the reference code's
environment does). The pulled arm pays xᵀθ_a + N(0, σ²), σ = 0.5 (``rewards="linear"``), or
Bernoulli(sigmoid(xᵀθ_a)) (``rewards="logistic"``). Ratings are not centred, so xᵀθ is a predicted
rating (about 1..5) and logistic rewards are mostly 1.

Deviations from the reference, which draws new arms and refits the mixture in every run: here the
arms and therefore b are fixed per environment (an agent's structure is fixed before a study
starts), and a run averages over users and reward noise. Build several environments with different
``structure_seed`` to average over the arms as well. The declared model (``Environment.model``) is
the prior the agents get; the ground truth is real data, not a draw from that prior.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from structbandits.data.movielens import load_movielens
from structbandits.envs.mixed_effect import mixed_effect_rewards
from structbandits.envs.protocol import Environment
from structbandits.errors import ValidationError, check_finite, check_integer, check_positive
from structbandits.structure.factorization import Factorization, als_factorize
from structbandits.structure.gmm import (
    GaussianMixtureStructure,
    MembershipStructure,
    MixedEffectPrior,
    check_mixed_effect_prior,
)

__all__ = ["MovieLensState", "MovieLensStructure", "embedding_bandit", "movielens_bandit", "movielens_structure"]

STRUCTURES = ("gmm", "onehot", "genres")


class MovieLensState(NamedTuple):
    """Ground truth of one seed: ``theta`` (K, d) the arms' movie embeddings, ``context_pool`` (P, d) users."""

    theta: jax.Array
    context_pool: jax.Array


class MovieLensStructure(NamedTuple):
    """What ``movielens_structure`` builds once per environment.

    Attributes
    ----------
    factorization : the ALS fit of all ratings (user and item embeddings, RMSE trace).
    arms : (K,) indices into ``factorization.item_embeddings`` of the arms' movies.
    arm_item_ids : (K,) their MovieLens item ids.
    prior : the validated meTS prior of the arms (mixing (K, L)).
    learner : the fitted GaussianMixtureStructure or MembershipStructure.
    """

    factorization: Factorization
    arms: np.ndarray
    arm_item_ids: np.ndarray
    prior: MixedEffectPrior
    learner: GaussianMixtureStructure | MembershipStructure


def embedding_bandit(
    user_embeddings,
    arm_embeddings,
    prior: MixedEffectPrior,
    *,
    rewards: str = "linear",
    noise_scale: float | None = None,
    context_pool: int = 100,
    contexts: str = "shared",
) -> Environment:
    """A bandit whose contexts are user embeddings and whose arm parameters are fixed item embeddings.

    Parameters
    ----------
    user_embeddings : (U, d) the users contexts are drawn from (a pool of ``context_pool`` per seed).
    arm_embeddings : (K, d) θ of the arms.
    prior : the agents' mixed-effect prior, mixing (K, L) for these arms.
    rewards : "linear" (xᵀθ + N(0, noise_scale²)) or "logistic" (Bernoulli(sigmoid(xᵀθ))).
    noise_scale : σ > 0 of linear rewards (default 0.5, the reference); None for logistic rewards.
    context_pool : users per seed, 1 <= P <= U, drawn without replacement.
    contexts : "shared" (one user per round, context (d,)) or "per_arm" (one user per arm, (K, d)).
    """
    if rewards not in ("linear", "logistic"):
        raise ValidationError(f"rewards: expected 'linear' or 'logistic', got {rewards!r}")
    if contexts not in ("shared", "per_arm"):
        raise ValidationError(f"contexts: expected 'shared' or 'per_arm', got {contexts!r}")
    if rewards == "logistic" and noise_scale is not None:
        raise ValidationError(f"noise_scale: logistic rewards have no noise scale; leave it as None, got {noise_scale}")
    noise_scale = float(check_positive("noise_scale", 0.5 if noise_scale is None else noise_scale))
    users = check_finite("user_embeddings", user_embeddings)
    theta = check_finite("arm_embeddings", arm_embeddings)
    if users.ndim != 2 or theta.ndim != 2 or users.shape[1] != theta.shape[1]:
        raise ValidationError(f"arm_embeddings: expected shape (K, d) with d = {users.shape[-1]} matching "
                              f"user_embeddings (U, d), got {theta.shape} and user_embeddings {users.shape}")
    (k, d), num_users = theta.shape, users.shape[0]
    if k < 2:
        raise ValidationError(f"arm_embeddings: expected at least 2 arms, got {k}")
    if not isinstance(prior, MixedEffectPrior) or prior.mixing.shape[0] != k or prior.effect_mean.shape[1] != d:
        raise ValidationError(f"prior: expected a MixedEffectPrior with mixing ({k}, L) and effect_mean (L, {d}), "
                              f"got {type(prior).__name__}"
                              + (f" with mixing {prior.mixing.shape}" if isinstance(prior, MixedEffectPrior) else ""))
    pool_size = check_integer("context_pool", context_pool, minimum=1, maximum=num_users)
    check_mixed_effect_prior(*prior)

    users, theta = jnp.asarray(users), jnp.asarray(theta)

    def init(key: jax.Array) -> MovieLensState:
        return MovieLensState(theta, users[jax.random.choice(key, num_users, (pool_size,), replace=False)])

    def context(state: MovieLensState, key: jax.Array) -> jax.Array:
        if contexts == "shared":
            return state.context_pool[jax.random.randint(key, (), 0, pool_size)]
        return state.context_pool[jax.random.randint(key, (k,), 0, pool_size)]

    def linear_predictor(state: MovieLensState, context: jax.Array) -> jax.Array:
        return state.theta @ context if context.ndim == 1 else jnp.sum(state.theta * context, axis=-1)

    params = prior.params()
    mean_rewards, reward, model = mixed_effect_rewards(rewards, linear_predictor, params, noise_scale)
    context_shape = (d,) if contexts == "shared" else (k, d)
    return Environment(k, context_shape, init, context, mean_rewards, reward, model)


@lru_cache(maxsize=4)
def _cached_factorization(path: str | None, rank: int, regularization: float, iterations: int, seed: int):
    data = load_movielens(path)
    fit = als_factorize(data.ratings, rank, regularization=regularization, iterations=iterations,
                        test_fraction=0.0, seed=seed)
    flags = data.genre_flags(fit.item_ids)
    for array in (*fit[:4], flags):
        array.setflags(write=False)
    return fit, flags


def movielens_structure(
    num_actions: int = 100,
    num_effects: int | str | None = None,
    rank: int = 5,
    *,
    structure: str = "gmm",
    structure_seed: int = 0,
    covariance_type: str = "diag",
    effect_share: float = 0.75,
    als_regularization: float = 1.0,
    als_iterations: int = 20,
    als_seed: int = 0,
    data_path: str | os.PathLike | None = None,
) -> MovieLensStructure:
    """Factorise MovieLens, draw the arms and learn their prior (the per-environment part of ``movielens_bandit``).

    Arguments as in ``movielens_bandit``. The factorisation of one (data_path, rank,
    als_regularization, als_iterations, als_seed) is cached in memory (read-only arrays), so
    environments that differ only in the other arguments share one ALS fit.
    """
    if structure not in STRUCTURES:
        raise ValidationError(f"structure: expected one of {STRUCTURES}, got {structure!r}")
    k = check_integer("num_actions", num_actions, minimum=2)
    rank = check_integer("rank", rank, minimum=1)
    seed = check_integer("structure_seed", structure_seed, minimum=0)
    if structure == "genres" and num_effects not in (None, 19):
        raise ValidationError(f"num_effects: structure='genres' has the 19 genres as effects; leave it as None, "
                              f"got {num_effects!r}")
    fit, flags = _cached_factorization(None if data_path is None else str(data_path), rank,
                                       float(check_positive("als_regularization", als_regularization)),
                                       check_integer("als_iterations", als_iterations, minimum=1),
                                       check_integer("als_seed", als_seed, minimum=0))
    items = np.asarray(fit.item_embeddings)
    arms = np.random.default_rng([seed, 3]).integers(0, items.shape[0], size=k)
    if structure == "genres":
        learner = MembershipStructure(effect_share=effect_share).fit(items, flags)
        prior = learner.prior(flags[arms])
    else:
        learner = GaussianMixtureStructure(5 if num_effects is None else num_effects, covariance_type=covariance_type,
                                           effect_share=effect_share, hard=structure == "onehot",
                                           random_state=seed).fit(items)
        prior = learner.prior(items[arms])
    return MovieLensStructure(fit, arms, np.asarray(fit.item_ids)[arms], prior, learner)


def movielens_bandit(
    num_actions: int = 100,
    num_effects: int | str | None = None,
    rank: int = 5,
    *,
    structure: str = "gmm",
    rewards: str = "linear",
    noise_scale: float | None = None,
    context_pool: int = 100,
    contexts: str = "shared",
    structure_seed: int = 0,
    covariance_type: str = "diag",
    effect_share: float = 0.75,
    als_regularization: float = 1.0,
    als_iterations: int = 20,
    als_seed: int = 0,
    data_path: str | os.PathLike | None = None,
) -> Environment:
    """The meTS MovieLens bandit; see the module docstring.

    Parameters
    ----------
    num_actions : K arms (movies drawn with replacement).
    num_effects : L mixture components (default 5, the reference), or "auto" for the BIC choice
        in 1..10; must stay None for "genres", whose effects are the 19 genres.
    rank : d, the ALS rank and the context dimension.
    structure : "gmm", "onehot" or "genres".
    rewards, noise_scale, context_pool, contexts : as in ``embedding_bandit``.
    structure_seed : seeds the arms and the mixture fit.
    covariance_type : of the Gaussian mixture.
    effect_share : share of the movie-embedding variance given to the effects.
    als_regularization, als_iterations, als_seed : ALS ridge penalty, iterations and initialisation
        seed (the factorisation uses every rating; nothing is held out).
    data_path : a MovieLens folder; None reads MovieLens-100K from the recbole wheel.

    Returns
    -------
    Environment with ``model`` = ModelHyperparameters("mixed_effect_linear", {mixing (K, L),
    effect_mean (L, d), effect_cov (L·d, L·d), action_cov (K, d, d), noise_scale}) for linear
    rewards, or "mixed_effect_logistic" with the same keys but noise_scale for logistic rewards.
    """
    built = movielens_structure(num_actions, num_effects, rank, structure=structure, structure_seed=structure_seed,
                                covariance_type=covariance_type, effect_share=effect_share,
                                als_regularization=als_regularization, als_iterations=als_iterations,
                                als_seed=als_seed, data_path=data_path)
    items = np.asarray(built.factorization.item_embeddings)
    return embedding_bandit(built.factorization.user_embeddings, items[built.arms], built.prior, rewards=rewards,
                            noise_scale=noise_scale, context_pool=context_pool, contexts=contexts)
