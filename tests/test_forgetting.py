"""Forgetting (``inference.forgetting`` and the agents' forgetting options) against independent answers.

Every expected value is written here in NumPy from the definitions, never with the package's functions:

* γ = 1 ("exponential" and "stabilised") is today's posterior bit for bit, for every agent with the option;
* exponential forgetting is the weighted batch posterior with weights γ^(t−s) toward the prior (Gaussian,
  NIG with per-arm and shared σ², scalar NIG arms, the meTS effect posterior with its own rate, Dirichlet
  counts), computed from the raw data;
* a window of w rounds is the batch posterior of the last w rounds;
* stabilised (directional) forgetting is the batch posterior of the data with observation weights W
  reweighted in *observation space*, W ← W^½ (I − (1 − γ) ûûᵀ) W^½ with û ∝ W^½ X x (eigendecompositions
  of W; the package works in information space with D x xᵀD / xᵀDx);
* hypothesis: the decayed precision never drops below the prior's (λ_min(Λ − Λ₀) ≥ −tol), NIG's α, β and
  κ never below the prior's;
* a sweep over γ runs one compiled program (the jitted program's cache holds one entry).

Each agent's programs are compiled once (a jitted scan per structure, run for several γ).
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from structbandits.agents import (
    RestlessOutcome,
    bayes_restless_policy,
    fo_gambitts,
    hier_ts,
    lin_ts,
    lin_ts_nig,
    mets,
    po_gambitts,
    standard_ts,
)
from structbandits.errors import ValidationError
from structbandits.inference import forgetting as fg
from structbandits.inference.conjugate import GaussianInfo
from structbandits.inference.nig import NIG, RegressionNIG, regression_nig_observe_block

K, D, T, NOISE = 3, 2, 9, 0.5
KEY = jax.random.PRNGKey(0)
RNG = np.random.default_rng(7)
CONTEXTS = RNG.uniform(-1, 1, size=(T, K, D))
ACTIONS = np.array([0, 1, 0, 2, 0, 1, 1, 0, 2])
REWARDS = RNG.normal(size=T) + 1.0
PRIOR_MEAN = np.array([0.3, -0.2])
PRIOR_COV = np.array([[1.0, 0.3], [0.3, 0.8]])
GAMMA = 0.7


def feed(policy, contexts, actions, rewards, params):
    def step(state, data):
        return policy.update(state, *data), None

    return jax.lax.scan(step, policy.init(KEY, params), (contexts, actions, rewards))[0]


def program(policy, contexts=CONTEXTS, actions=ACTIONS, rewards=REWARDS):
    """One compiled program of ``policy``'s structure, as a function of its params."""
    data = tuple(jax.tree.map(jnp.asarray, (contexts, actions, rewards)))
    return jax.jit(lambda params: feed(policy, *data, params))


def equal_bits(a, b) -> bool:
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def exponential_weights(rounds, gamma):
    return gamma ** (rounds - 1 - np.arange(rounds))


def window_weights(rounds, w):
    return (np.arange(rounds) >= rounds - w).astype(float)


def pulled_rows(arm):
    rows = ACTIONS == arm
    return CONTEXTS[np.arange(T), ACTIONS][rows], REWARDS[rows], rows


def sqrtm(w):
    values, vectors = np.linalg.eigh(w)
    return vectors @ np.diag(np.sqrt(np.clip(values, 0, None))) @ vectors.T


def directional_weights(xs, gamma):
    """Observation weights (n, n) of one posterior's n observations ``xs`` under stabilised forgetting,
    each applied before its observation: W ← W^½ (I − (1 − γ) ûûᵀ) W^½, û = W^½ X x / ‖W^½ X x‖, then
    the new observation with weight 1. Also the number of rounds that forgot anything."""
    w, forgot = np.zeros((0, 0)), 0
    for n, x in enumerate(xs):
        root = sqrtm(w)
        u = root @ xs[:n] @ x
        if u @ u > 1e-9 * (x @ x):
            u = u / np.linalg.norm(u)
            w = root @ (np.eye(n) - (1 - gamma) * np.outer(u, u)) @ root
            forgot += 1
        w = np.block([[w, np.zeros((n, 1))], [np.zeros((1, n)), np.ones((1, 1))]])
    return w, forgot


def gaussian_batch(x, y, weights):
    """Λ, h of the Gaussian posterior with prior N(PRIOR_MEAN, PRIOR_COV) and noise NOISE, observation
    weights a vector (n,) or a matrix (n, n)."""
    w = np.diag(weights) if np.ndim(weights) == 1 else weights
    p0 = np.linalg.inv(PRIOR_COV)
    return p0 + x.T @ w @ x / NOISE**2, p0 @ PRIOR_MEAN + x.T @ w @ y / NOISE**2


def nig_batch(x, y, weights, alpha0, beta0):
    """(Λ, η, α, β) of the NIG regression posterior, θ | σ² ~ N(PRIOR_MEAN, σ² PRIOR_COV), weights as above."""
    w = np.diag(weights) if np.ndim(weights) == 1 else weights
    p0 = np.linalg.inv(PRIOR_COV)
    precision, info = p0 + x.T @ w @ x, p0 @ PRIOR_MEAN + x.T @ w @ y
    mean = np.linalg.solve(precision, info)
    beta = beta0 + 0.5 * (y @ w @ y + PRIOR_MEAN @ p0 @ PRIOR_MEAN - mean @ precision @ mean)
    return precision, info, alpha0 + 0.5 * np.trace(w), beta


def precision_of(chol):
    return np.asarray(chol) @ np.swapaxes(np.asarray(chol), -1, -2)


# --- LinTS ----------------------------------------------------------------------------------------------


def build_lints(**options):
    return lin_ts(PRIOR_MEAN, PRIOR_COV, NOISE, num_actions=K, **options)


def test_lin_ts_forgetting():
    off = program(build_lints())(build_lints().params)
    for kind in ("exponential", "stabilised"):
        policies = [build_lints(forgetting=kind, forgetting_rate=rate) for rate in (1.0, GAMMA)]
        run = program(policies[0])
        same, forgot = (run(p.params) for p in policies)
        assert run._cache_size() == 1  # both rates, one program
        assert equal_bits(same.posterior, off.posterior), f"{kind} at γ = 1 changed the posterior"
        for arm in range(K):
            x, y, rows = pulled_rows(arm)
            if kind == "exponential":  # every arm decays every round: weight γ^(T−1−s) of round s
                weights = exponential_weights(T, GAMMA)[rows]
            else:
                weights, _ = directional_weights(x, GAMMA)
            precision, info = gaussian_batch(x, y, weights)
            np.testing.assert_allclose(precision_of(forgot.posterior.precision_chol[arm]), precision, rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(forgot.posterior.info[arm], info, rtol=1e-10, atol=1e-12)
    windowed = program(build_lints(forgetting="window", window=4))(build_lints(forgetting="window", window=4).params)
    for arm in range(K):
        x, y, rows = pulled_rows(arm)
        precision, info = gaussian_batch(x, y, window_weights(T, 4)[rows])
        np.testing.assert_allclose(precision_of(windowed.posterior.precision_chol[arm]), precision, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(windowed.posterior.info[arm], info, rtol=1e-10, atol=1e-12)


# --- LinTS-NIG ------------------------------------------------------------------------------------------


def build_nig(shared=False, **options):
    return lin_ts_nig(PRIOR_MEAN, PRIOR_COV, 2.0, 1.5, num_actions=K, shared=shared, **options)


@pytest.mark.parametrize("shared", [False, True])
def test_lin_ts_nig_forgetting(shared):
    off = program(build_nig())(build_nig().params) if not shared else None
    kinds = ("exponential", "stabilised", "window") if not shared else ("exponential",)
    for kind in kinds:
        options = {"forgetting": kind, "window": 4} if kind == "window" else {"forgetting": kind}
        policies = [build_nig(shared, **options, forgetting_rate=rate) for rate in ((1.0,) if kind == "window"
                                                                                      else (1.0, GAMMA))]
        run = program(policies[0])
        if kind != "window" and not shared:
            same = run(policies[0].params)
            assert equal_bits(same.posterior, off.posterior), f"{kind} at γ = 1 changed the posterior"
        state = run(policies[-1].params).posterior
        alpha, beta = 2.0, 1.5
        for arm in range(K):
            x, y, rows = pulled_rows(arm)
            forgot = 0
            if kind == "exponential":
                weights = exponential_weights(T, GAMMA)[rows]
            elif kind == "window":
                weights = window_weights(T, 4)[rows]
            else:
                weights, forgot = directional_weights(x, GAMMA)
            precision, info, arm_alpha, arm_beta = nig_batch(x, y, weights, 2.0, 1.5)
            if kind == "stabilised":  # α counts whole observations less (1 − γ) per forgetting round
                arm_alpha = 2.0 + 0.5 * (len(y) - (1 - GAMMA) * forgot)
            np.testing.assert_allclose(precision_of(state.precision_chol[arm]), precision, rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(state.info[arm], info, rtol=1e-10, atol=1e-12)
            if not shared:
                np.testing.assert_allclose([state.alpha[arm], state.beta[arm]], [arm_alpha, arm_beta], rtol=1e-10)
            alpha, beta = alpha + arm_alpha - 2.0, beta + arm_beta - 1.5
        if shared:  # one σ²: α and β pool every arm's weighted data
            np.testing.assert_allclose([state.alpha, state.beta], [alpha, beta], rtol=1e-10)


# --- Standard TS (scalar NIG arms) ---------------------------------------------------------------------------


def test_standard_ts_forgetting():
    prior = dict(prior_mean=1.0, prior_kappa=2.0, prior_alpha=1.5, prior_beta=2.0)
    off_policy = standard_ts(K, **prior)
    off = program(off_policy)(off_policy.params)

    def batch(y, w):  # the NIG posterior with weighted observations, from its definition
        kappa = 2.0 + w.sum()
        mean = (2.0 * 1.0 + w @ y) / kappa
        return mean, kappa, 1.5 + 0.5 * w.sum(), 2.0 + 0.5 * (w @ y**2 + 2.0 * 1.0**2 - kappa * mean**2)

    for kind in ("exponential", "stabilised", "window"):
        options = {"forgetting": kind, "window": 4} if kind == "window" else {"forgetting": kind}
        rates = (1.0,) if kind == "window" else (1.0, GAMMA)
        policies = [standard_ts(K, **prior, **options, forgetting_rate=rate) for rate in rates]
        run = program(policies[0])
        if kind != "window":
            assert equal_bits(run(policies[0].params).arms, off.arms), f"{kind} at γ = 1 changed the posterior"
        arms = run(policies[-1].params).arms
        for arm in range(K):
            _, y, rows = pulled_rows(arm)
            if kind == "exponential":
                expected = batch(y, exponential_weights(T, GAMMA)[rows])
            elif kind == "window":
                expected = batch(y, window_weights(T, 4)[rows])
            else:  # x = 1: W^½(I − (1 − γ)ûûᵀ)W^½ on the arm's own rewards
                w, forgot = directional_weights(np.ones((len(y), 1)), GAMMA)
                kappa = 2.0 + w.sum()
                mean = (2.0 + w.sum(axis=0) @ y) / kappa
                expected = (mean, kappa, 1.5 + 0.5 * (len(y) - (1 - GAMMA) * forgot),
                            2.0 + 0.5 * (y @ w @ y + 2.0 - kappa * mean**2))
            got = [float(field[0, arm]) for field in arms]
            np.testing.assert_allclose(got, expected, rtol=1e-10)


# --- meTS: two levels ---------------------------------------------------------------------------------------

L = 2
MIXING = RNG.uniform(-1, 1, size=(K, L))
EFFECT_MEAN = RNG.normal(size=(L, D))
_A = RNG.normal(size=(L * D, L * D))
EFFECT_COV = _A @ _A.T / (L * D) + np.eye(L * D)
ACTION_COV = 0.3 * np.eye(D)


def mets_evidence(weights):
    """Every arm's evidence (P_i, u_i) about its mean A_i ψ given its observations weighted by ``weights(i)``,
    a matrix W_i: θ_i ~ N(A_i ψ, Σ0) integrated out in observation space, y_i ~ N(X_i A_i ψ, X_i Σ0 X_iᵀ + σ² I)
    for the reweighted data (W_i^½ X_i, W_i^½ y_i)."""
    evidence = []
    for arm in range(K):
        x, y, _ = pulled_rows(arm)
        root = sqrtm(weights(arm))
        xw, yw = root @ x, root @ y
        cov = xw @ ACTION_COV @ xw.T + NOISE**2 * np.eye(len(y))
        evidence.append((xw.T @ np.linalg.solve(cov, xw), xw.T @ np.linalg.solve(cov, yw)))
    return evidence


def mets_oracle(weights):
    """The effect posterior of vec ψ (precision, information): the prior plus Σ_i A_iᵀ P_i A_i, A_iᵀ u_i."""
    precision = np.linalg.inv(EFFECT_COV)
    info = precision @ EFFECT_MEAN.reshape(-1)
    for arm, (p, u) in enumerate(mets_evidence(weights)):
        a = np.kron(MIXING[arm], np.eye(D))  # θ_i's mean is A_i vec ψ
        precision, info = precision + a.T @ p @ a, info + a.T @ u
    return precision, info


def test_mets_forgetting_two_levels():
    """The arms' conditionals θ_i | ψ forget at γ = 0.6, the effect posterior at γ_Ψ = 0.9: exponential with the
    dense effect posterior, stabilised with the factored one (per effect l, the prior block plus Σ_i b_il² P_i)."""
    def build(**options):
        return mets(MIXING, EFFECT_MEAN, EFFECT_COV, ACTION_COV, NOISE, **options)

    off = program(build())(build().params)
    for kind, factored in (("exponential", False), ("stabilised", True)):
        rates = ((1.0, 1.0), (0.6, 0.9), (1.0, 0.9))  # (γ, γ_Ψ); the last: only the effects forget
        policies = [build(forgetting=kind, forgetting_rate=a, effect_forgetting_rate=b, factored=factored)
                    for a, b in rates]
        run = program(policies[0])
        states = [run(p.params).posterior for p in policies]
        assert run._cache_size() == 1  # every pair of rates, one program
        if not factored:
            assert equal_bits(states[0], off._replace(params=states[0].params)), f"{kind} at γ = 1 changed the posterior"

        def weights(arm, rate):
            x, _, rows = pulled_rows(arm)
            return np.diag(exponential_weights(T, rate)[rows]) if kind == "exponential" else directional_weights(x, rate)[0]

        for (arm_rate, effect_rate), forgot in zip(rates[1:], states[1:]):
            for arm in range(K):
                x, y, _ = pulled_rows(arm)
                w = weights(arm, arm_rate)
                np.testing.assert_allclose(precision_of(forgot.conditional_chol[arm]),
                                           np.linalg.inv(ACTION_COV) + x.T @ w @ x / NOISE**2, rtol=1e-10)
                np.testing.assert_allclose(forgot.moment[arm], x.T @ w @ y / NOISE**2, rtol=1e-10, atol=1e-12)
            if not factored:
                precision, info = mets_oracle(lambda arm: weights(arm, effect_rate))
                np.testing.assert_allclose(forgot.effect_precision, precision, rtol=1e-9)
                np.testing.assert_allclose(forgot.effect_info, info, rtol=1e-9, atol=1e-10)
                continue
            evidence = mets_evidence(lambda arm: weights(arm, effect_rate))
            for l in range(L):
                block = EFFECT_COV[l * D:(l + 1) * D, l * D:(l + 1) * D]
                np.testing.assert_allclose(forgot.effect_precision[l], np.linalg.inv(block) + sum(
                    MIXING[i, l] ** 2 * evidence[i][0] for i in range(K)), rtol=1e-9)
                np.testing.assert_allclose(forgot.effect_info[l], np.linalg.solve(block, EFFECT_MEAN[l]) + sum(
                    MIXING[i, l] * evidence[i][1] for i in range(K)), rtol=1e-9, atol=1e-10)
    windowed = program(build(forgetting="window", window=4))(build(forgetting="window", window=4).params).posterior
    precision, info = mets_oracle(lambda arm: np.diag(window_weights(T, 4)[pulled_rows(arm)[2]]))
    np.testing.assert_allclose(windowed.effect_precision, precision, rtol=1e-9)
    np.testing.assert_allclose(windowed.effect_info, info, rtol=1e-9, atol=1e-10)


# --- GAMBITTS reward stages ----------------------------------------------------------------------------------


class MediatedContext(NamedTuple):
    cell: jax.Array
    treatments: jax.Array


def test_gambitts_reward_forgetting():
    treatments = RNG.normal(size=(T, K, 2))
    contexts = MediatedContext(jnp.zeros(T, jnp.int32), jnp.asarray(treatments))
    draws = RNG.normal(size=(K, 1, 5, 2))
    prior = dict(reward_prior_mean=(1.0, 0.0), reward_prior_precision=(0.5, 2.0))

    def build(agent, **options):
        if agent == "fo":
            return fo_gambitts(K, 1, [0, 1], **prior, **options)
        return po_gambitts(draws, [0, 1], **prior, **options)

    phi = np.concatenate([np.ones((T, 1)), treatments[np.arange(T), ACTIONS]], axis=1)  # [1, z] of the delivered z
    p0 = np.diag([0.5, 2.0, 2.0])
    for agent in ("fo", "po"):
        off = program(build(agent), contexts)(build(agent).params).reward
        # The two agents share the reward update (``gaussian_forget_observe``, whose "stabilised" is
        # ``gaussian_forget_directional``, LinTS's): fo checks γ = 1 and the exponential oracle, po the window too.
        for kind in ("exponential", "window") if agent == "po" else ("exponential",):
            options = {"reward_forgetting": kind}
            if kind == "window":
                options["reward_window"] = 4
            rates = (1.0,) if kind == "window" else (1.0, GAMMA)
            policies = [build(agent, **options, reward_forgetting_rate=rate) for rate in rates]
            run = program(policies[0], contexts)
            if kind != "window":
                assert equal_bits(run(policies[0].params).reward, off), f"{agent} {kind} at γ = 1"
            reward = run(policies[-1].params).reward
            w = np.diag(exponential_weights(T, GAMMA) if kind == "exponential" else window_weights(T, 4))
            np.testing.assert_allclose(precision_of(reward.precision_chol), p0 + phi.T @ w @ phi, rtol=1e-10)
            np.testing.assert_allclose(reward.info, p0 @ [1.0, 0.0, 0.0] + phi.T @ w @ REWARDS, rtol=1e-10, atol=1e-12)


# --- Bayesian restless learners (Dirichlet counts) ----------------------------------------------------------


class Moves(NamedTuple):
    states: jax.Array


def test_bayes_restless_forgetting():
    arms, states, rounds = 3, 2, 6
    prior = np.full((arms, states, 2, states), 0.5)
    groups = np.array([0, 0, 1])
    s = RNG.integers(0, states, size=(rounds + 1, arms))
    moves = RNG.integers(0, 2, size=(rounds, arms))
    data = (Moves(jnp.asarray(s[:-1])), jnp.asarray(moves),
            RestlessOutcome(jnp.zeros((rounds, arms)), jnp.asarray(s[1:])))

    def build(**options):
        return bayes_restless_policy("NoAct", prior, groups, **options)

    def run_of(policy):
        return jax.jit(lambda params: feed(policy, *data, params))

    off = run_of(build())(build().params).counts

    def counts(weights):  # Σ_t w_t · one-hot(i, s_t, a_t, s_{t+1})
        n = np.zeros(prior.shape)
        for t in range(rounds):
            for i in range(arms):
                n[i, s[t, i], moves[t, i], s[t + 1, i]] += weights[t, i]
        return n

    for kind in ("exponential", "stabilised"):
        policies = [build(forgetting=kind, forgetting_rate=rate) for rate in (1.0, GAMMA)]
        run = run_of(policies[0])
        assert equal_bits(run(policies[0].params).counts, off)
        got = run(policies[1].params).counts
        if kind == "exponential":
            expected = counts(np.repeat(exponential_weights(rounds, GAMMA)[:, None], arms, axis=1))
        else:  # a transition's count decays by γ at each later visit of its own row (i, s, a)
            weights = np.ones((rounds, arms))
            for t in range(rounds):
                for i in range(arms):
                    later = sum(s[u, i] == s[t, i] and moves[u, i] == moves[t, i] for u in range(t + 1, rounds))
                    weights[t, i] = GAMMA**later
            expected = counts(weights)
        np.testing.assert_allclose(got, expected, rtol=1e-12)
    windowed = run_of(build(forgetting="window", window=2))(build(forgetting="window", window=2).params).counts
    np.testing.assert_allclose(windowed, counts(np.repeat(window_weights(rounds, 2)[:, None], arms, axis=1)), rtol=0)


# --- Properties of the algebra ----------------------------------------------------------------------------------


@jax.jit
def _decayed(prior_chol, prior_info, xs, ys, rate):
    """Λ after exponential and after stabilised forgetting of a stream, and the NIG after stabilised
    forgetting (the NIG's exponential rule is checked value by value in ``test_lin_ts_nig_forgetting``)."""
    prior = GaussianInfo(prior_chol, prior_info)
    nig_prior = RegressionNIG(prior_chol[None], prior_info[None], jnp.ones(1), jnp.ones(1))

    def step(carry, data):
        exp, stab, nig = carry
        x, y = data
        exp = fg.gaussian_forget_observe("exponential", exp, prior, x, y, 1.0, rate)[0]
        stab = fg.gaussian_forget_observe("stabilised", stab, prior, x, y, 1.0, rate)[0]
        nig = regression_nig_observe_block(fg.regression_nig_forget_directional_block(nig, nig_prior, 0, x, rate), 0, x, y)
        return (exp, stab, nig), None

    return jax.lax.scan(step, (prior, prior, nig_prior), (xs, ys))[0]


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), rate=st.floats(0.05, 1.0), rank=st.integers(1, 3))
def test_forgetting_never_drops_below_the_prior(seed, rate, rank):
    """Random PSD priors, data confined to a random subspace of dimension ``rank`` (where directional
    forgetting differs most from the exponential one) and γ: λ_min(Λ − Λ₀) ≥ −tol for both rules, and the
    stabilised NIG's α, β never below the prior's."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(3, 3))
    p0 = a @ a.T + 0.05 * np.eye(3)
    basis = rng.normal(size=(rank, 3))
    xs = rng.normal(size=(12, rank)) @ basis * rng.uniform(0.1, 10)
    ys = rng.normal(size=12) * 5
    chol = np.linalg.cholesky(p0)
    exp, stab, nig = _decayed(jnp.asarray(chol), jnp.asarray(p0 @ rng.normal(size=3)), jnp.asarray(xs),
                                            jnp.asarray(ys), rate)
    for chol in (exp.precision_chol, stab.precision_chol, nig.precision_chol[0]):
        data = precision_of(chol) - p0
        assert np.linalg.eigvalsh(data).min() >= -1e-9 * np.abs(data).max()
    assert float(nig.alpha[0]) >= 1.0 and float(nig.beta[0]) >= 1.0 - 1e-12


@jax.jit
def _decayed_counts(prior, ys, concentration, prior_concentration, rate):
    """Scalar NIG arms after both forgetting rules and an observation per round; decayed Dirichlet counts."""
    def step(p, y):
        p = fg.nig_forget_directional(fg.nig_forget(p, prior, rate), prior, rate)
        return NIG((p.kappa * p.mean + y) / (p.kappa + 1), p.kappa + 1, p.alpha + 0.5,
                   p.beta + p.kappa * (y - p.mean) ** 2 / (2 * (p.kappa + 1))), None

    return jax.lax.scan(step, prior, ys)[0], fg.dirichlet_forget(concentration, prior_concentration, rate)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), rate=st.floats(0.05, 1.0))
def test_scalar_nig_and_dirichlet_never_drop_below_the_prior(seed, rate):
    rng = np.random.default_rng(seed)
    prior = NIG(*(jnp.asarray(v) for v in (rng.normal(), rng.uniform(0.1, 5), rng.uniform(0.1, 5), rng.uniform(0.1, 5))))
    alpha0 = rng.uniform(0.01, 2, size=4)
    p, decayed = _decayed_counts(prior, jnp.asarray(rng.normal(size=6) * 10), jnp.asarray(alpha0 + rng.integers(0, 5, size=4)),
                                 jnp.asarray(alpha0), rate)
    assert p.kappa >= prior.kappa and p.alpha >= prior.alpha and p.beta >= prior.beta * (1 - 1e-12)
    assert np.all(np.asarray(decayed) >= alpha0)


# --- Boundaries ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("options, message", [
    ({"forgetting": "stabilized"}, "forgetting: expected None or one of"),
    ({"forgetting": "exponential", "forgetting_rate": 0.0}, r"forgetting_rate: expected a forgetting rate γ in \(0, 1\]"),
    ({"forgetting": "exponential", "forgetting_rate": 1.5}, "forgetting_rate: expected"),
    ({"forgetting_rate": 0.9}, "forgetting_rate: only used with forgetting='exponential' or 'stabilised'"),
    ({"forgetting": "window"}, "window: expected the window length"),
    ({"forgetting": "window", "window": 0}, "window"),
    ({"forgetting": "exponential", "window": 5}, "window: only used with forgetting='window'"),
])
def test_bad_forgetting_options_name_the_argument(options, message):
    for build in (build_lints, build_nig, lambda **o: standard_ts(K, **o),
                  lambda **o: mets(MIXING, EFFECT_MEAN, EFFECT_COV, ACTION_COV, NOISE, **o),
                  lambda **o: bayes_restless_policy("NoAct", np.ones((2, 2, 2, 2)), [0, 1], **o)):
        with pytest.raises(ValidationError, match=message):
            build(**options)
    gambitts_options = {f"reward_{key}": value for key, value in options.items()}
    with pytest.raises(ValidationError, match=f"reward_{message.split(':')[0]}:"):
        fo_gambitts(K, 1, [0], **gambitts_options)


def test_mets_effect_rate_and_hier_ts_options_are_validated():
    with pytest.raises(ValidationError, match="effect_forgetting_rate: only used with"):
        mets(MIXING, EFFECT_MEAN, EFFECT_COV, ACTION_COV, NOISE, effect_forgetting_rate=0.9)
    with pytest.raises(ValidationError, match="effect_forgetting_rate: expected"):
        mets(MIXING, EFFECT_MEAN, EFFECT_COV, ACTION_COV, NOISE, forgetting="exponential", effect_forgetting_rate=2.0)
    # HierTS passes meTS' forgetting options on (the rates land in its params) and names an unknown one.
    policy = hier_ts(EFFECT_MEAN, EFFECT_COV, ACTION_COV, NOISE, num_actions=K, forgetting="exponential",
                     forgetting_rate=0.8, effect_forgetting_rate=0.95)
    assert (float(policy.params.forgetting_rate), float(policy.params.effect_forgetting_rate)) == (0.8, 0.95)
    with pytest.raises(ValidationError, match="forget: unknown option of hier_ts"):
        hier_ts(EFFECT_MEAN, EFFECT_COV, ACTION_COV, NOISE, num_actions=K, forget="exponential")
