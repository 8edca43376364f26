"""Bandit policies' hyperparameters are data: ``tests/params_as_data.py``'s check, one case per
constructor × numeric hyperparameter.

For meTS (dense and factored), HierTS, LinTS, LinUCB, meTS-GLM (dense and factored), HierTS-GLM,
GLM-TS and standard NIG TS, two policies differing only in one hyperparameter value are built and
played for a few rounds on a tiny instance (3 arms, 2 effects, 2 features) by the shared round loop.
The check asserts that one jitted program serves both values and that policy A's functions given
policy B's params reproduce policy B (built from scratch by its constructor) bit for bit; a value
left in a closure makes A-with-B's-params play like A.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from params_as_data import check_params_are_data

from structbandits.agents import (
    glm_ts,
    hier_ts,
    hier_ts_glm,
    lin_ts,
    lin_ucb,
    mets,
    mets_glm,
    numpyro_ts,
    standard_ts,
    uniform_random,
)
from structbandits.models import linear_bandit

K, L, D = 3, 2, 2
_rng = np.random.default_rng(0)
MIXING = _rng.normal(size=(K, L))
EFFECT_MEAN = _rng.normal(size=(L, D))
_A = _rng.normal(size=(L * D, L * D))
EFFECT_COV = _A @ _A.T / (L * D) + np.eye(L * D)
ACTION_COV = 0.5 * np.eye(D)
THETA = _rng.normal(size=(K, D))
OTHER_COV = np.array([[2.0, 0.6], [0.6, 0.3]])
MIXED = {"mixing": MIXING, "effect_mean": EFFECT_MEAN, "effect_cov": EFFECT_COV, "action_cov": ACTION_COV}


def shared_context(key):
    return jax.random.normal(key, (D,))


def per_arm_context(key):
    return jax.random.normal(key, (K, D))


def gaussian_reward(key, x, a):
    return (x if x.ndim == 1 else x[a]) @ jnp.asarray(THETA)[a] + 0.3 * jax.random.normal(key)


def bernoulli_reward(key, x, a):
    logit = (x if x.ndim == 1 else x[a]) @ jnp.asarray(THETA)[a]
    return (jax.random.uniform(key) < jax.nn.sigmoid(logit)).astype(x.dtype)


def nig_context(key):
    return jnp.zeros(())  # standard TS ignores the context


def nig_reward(key, x, a):
    return 70.0 + 4.0 * a + 6.0 * jax.random.normal(key)


def _mets(factored=False, **change):
    kwargs = {**MIXED, "noise_scale": 0.5, **change}
    return mets(kwargs.pop("mixing"), kwargs.pop("effect_mean"), kwargs.pop("effect_cov"), kwargs.pop("action_cov"),
                kwargs.pop("noise_scale"), factored=factored)


def _mets_factored(**change):
    return _mets(factored=True, **change)


def _hier_ts(**change):
    kwargs = {"effect_mean": EFFECT_MEAN, "effect_cov": EFFECT_COV, "action_cov": ACTION_COV, "noise_scale": 0.5,
              **change}
    return hier_ts(kwargs["effect_mean"], kwargs["effect_cov"], kwargs["action_cov"], kwargs["noise_scale"],
                   num_actions=K)


def _lin_ts(**change):
    kwargs = {"prior_mean": np.zeros(D), "prior_cov": np.eye(D), "noise_scale": 0.5, **change}
    return lin_ts(kwargs["prior_mean"], kwargs["prior_cov"], kwargs["noise_scale"], num_actions=K)


def _lin_ucb(**change):
    kwargs = {"prior_mean": np.zeros(D), "prior_cov": np.eye(D), "noise_scale": 0.5, "delta": 0.05,
              "prior_radius": None, **change}
    return lin_ucb(kwargs["prior_mean"], kwargs["prior_cov"], kwargs["noise_scale"], num_actions=K,
                   delta=kwargs["delta"], prior_radius=kwargs["prior_radius"])


def _mets_glm(factored=False, **change):
    kwargs = {**MIXED, **change}
    return mets_glm(kwargs["mixing"], kwargs["effect_mean"], kwargs["effect_cov"], kwargs["action_cov"],
                    history_size=8, factored=factored, newton_steps=2)


def _mets_glm_factored(**change):
    return _mets_glm(factored=True, **change)


def _hier_ts_glm(**change):
    kwargs = {"effect_mean": EFFECT_MEAN, "effect_cov": EFFECT_COV, "action_cov": ACTION_COV, **change}
    return hier_ts_glm(kwargs["effect_mean"], kwargs["effect_cov"], kwargs["action_cov"], num_actions=K,
                       history_size=8, newton_steps=2)


def _glm_ts(**change):
    kwargs = {"prior_mean": np.zeros(D), "prior_cov": np.eye(D), **change}
    return glm_ts(kwargs["prior_mean"], kwargs["prior_cov"], num_actions=K, history_size=8, newton_steps=2)


def _standard_ts(**change):
    return standard_ts(K, propensity_draws=4, **change)


# (constructor, hyperparameter, value A, value B, context, reward); sizes keep every case tiny.
CASES = [
    (_mets, "mixing", MIXING, -MIXING[::-1], shared_context, gaussian_reward),
    (_mets, "effect_mean", EFFECT_MEAN, EFFECT_MEAN + 1.5, shared_context, gaussian_reward),
    (_mets, "effect_cov", EFFECT_COV, 0.2 * EFFECT_COV, shared_context, gaussian_reward),
    (_mets, "action_cov", ACTION_COV, OTHER_COV, per_arm_context, gaussian_reward),
    (_mets, "noise_scale", 0.5, 2.0, shared_context, gaussian_reward),
    (_mets_factored, "effect_cov", EFFECT_COV, np.diag(np.diag(EFFECT_COV)) * 3.0,
     shared_context, gaussian_reward),
    (_hier_ts, "effect_mean", EFFECT_MEAN, -EFFECT_MEAN, shared_context, gaussian_reward),
    (_hier_ts, "effect_cov", EFFECT_COV, 4.0 * EFFECT_COV, shared_context, gaussian_reward),
    (_hier_ts, "action_cov", ACTION_COV, OTHER_COV, shared_context, gaussian_reward),
    (_hier_ts, "noise_scale", 0.5, 2.0, shared_context, gaussian_reward),
    (_lin_ts, "prior_mean", np.zeros(D), np.array([1.0, -2.0]), shared_context, gaussian_reward),
    (_lin_ts, "prior_cov", np.eye(D), OTHER_COV, shared_context, gaussian_reward),
    (_lin_ts, "noise_scale", 0.5, 2.0, per_arm_context, gaussian_reward),
    (_lin_ucb, "prior_mean", np.zeros(D), np.array([1.0, -2.0]), shared_context, gaussian_reward),
    (_lin_ucb, "prior_cov", np.eye(D), OTHER_COV, shared_context, gaussian_reward),
    (_lin_ucb, "noise_scale", 0.5, 2.0, shared_context, gaussian_reward),
    (_lin_ucb, "delta", 0.999, 1e-12, shared_context, gaussian_reward),
    (_lin_ucb, "prior_radius", 0.0, 10.0, shared_context, gaussian_reward),
    (_mets_glm, "mixing", MIXING, -MIXING[::-1], shared_context, bernoulli_reward),
    (_mets_glm, "effect_mean", EFFECT_MEAN, EFFECT_MEAN + 1.5, shared_context, bernoulli_reward),
    (_mets_glm, "effect_cov", EFFECT_COV, 0.2 * EFFECT_COV, shared_context, bernoulli_reward),
    (_mets_glm, "action_cov", ACTION_COV, OTHER_COV, per_arm_context, bernoulli_reward),
    (_mets_glm_factored, "effect_cov", EFFECT_COV, np.diag(np.diag(EFFECT_COV)) * 3.0,
     shared_context, bernoulli_reward),
    (_hier_ts_glm, "effect_mean", EFFECT_MEAN, -EFFECT_MEAN, shared_context, bernoulli_reward),
    (_hier_ts_glm, "effect_cov", EFFECT_COV, 4.0 * EFFECT_COV, shared_context, bernoulli_reward),
    (_hier_ts_glm, "action_cov", ACTION_COV, OTHER_COV, shared_context, bernoulli_reward),
    (_glm_ts, "prior_mean", np.zeros(D), np.array([1.0, -2.0]), shared_context, bernoulli_reward),
    (_glm_ts, "prior_cov", np.eye(D), OTHER_COV, per_arm_context, bernoulli_reward),
    (_standard_ts, "prior_mean", 77.0, 60.0, nig_context, nig_reward),
    (_standard_ts, "prior_kappa", 5.0, 0.5, nig_context, nig_reward),
    (_standard_ts, "prior_alpha", 1.0, 4.0, nig_context, nig_reward),
    (_standard_ts, "prior_beta", 10.0, 200.0, nig_context, nig_reward),
]


@pytest.mark.parametrize("build, name, value_a, value_b, context, reward", CASES,
                         ids=[f"{case[0].__name__[1:]}-{case[1]}" for case in CASES])
def test_hyperparameter_is_data(build, name, value_a, value_b, context, reward):
    check_params_are_data(lambda value: build(**{name: value}), value_a, value_b, context, reward, rounds=8)


def test_policies_without_numeric_hyperparameters_take_params_none():
    # uniform_random has none; numpyro_ts's live inside the user's program (bound by functools.partial).
    key = jax.random.PRNGKey(0)
    model = functools.partial(linear_bandit, jnp.zeros((K, D)), jnp.broadcast_to(jnp.eye(D), (K, D, D)), 0.5)
    generic = numpyro_ts(model, num_actions=K, example_context=jnp.zeros(D), history_size=4, laplace_steps=2)
    for policy in (uniform_random(K), generic):
        assert policy.params is None
        state = jax.eval_shape(lambda k, p=policy: p.init(k, None), key)
        assert state.params is None
        action, _ = jax.eval_shape(policy.act, state, key, jnp.zeros(D))
        assert action.shape == ()
