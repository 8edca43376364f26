"""The per-arm refit of the logistic agents: deduplicated per-arm rows, Newton to a tolerance.

Oracles are NumPy/SciPy only: SciPy's trust-region Newton on the logistic log posterior written out
in NumPy, the Newton decrement from NumPy derivatives, and per-arm counts tallied with a dict.
"""

import doctest

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import minimize, root

from structbandits.agents import glm_ts, mets_glm
from structbandits.errors import ValidationError
from structbandits.inference import arm_rows
from structbandits.inference.arm_rows import CHUNK_ROWS, arm_rows_add, arm_rows_init, arm_rows_sum
from structbandits.inference.conjugate import gaussian_covariance, gaussian_mean
from structbandits.inference.pseudo_observations import logistic_count_terms, newton_mode

K, D = 3, 2
PRIOR_MEAN = np.array([[0.2, -0.1], [0.0, 0.3], [-0.4, 0.1]])
PRIOR_COV = np.stack([np.eye(D), 2.0 * np.eye(D), np.array([[1.0, 0.3], [0.3, 0.5]])])


# --- NumPy oracles --------------------------------------------------------------------------------

def np_log_posterior(theta, features, successes, trials, precision, mean):
    logits = features @ theta
    offset = theta - mean
    return np.sum(successes * logits - trials * np.logaddexp(0.0, logits)) - 0.5 * offset @ precision @ offset


def np_derivatives(theta, features, successes, trials, precision, mean):
    """Gradient and negative Hessian of the log posterior."""
    probability = 1.0 / (1.0 + np.exp(-(features @ theta)))
    gradient = features.T @ (successes - trials * probability) - precision @ (theta - mean)
    hessian = (features * (trials * probability * (1 - probability))[:, None]).T @ features + precision
    return gradient, hessian


def np_decrement(theta, *data):
    gradient, hessian = np_derivatives(theta, *data)
    return np.sqrt(gradient @ np.linalg.solve(hessian, gradient))


def scipy_mode(*data):
    """SciPy's trust-region Newton, then its root finder on the gradient (trust-exact alone stops ~1e-8 short)."""
    d = data[0].shape[1]
    fit = minimize(lambda t: -np_log_posterior(t, *data), np.zeros(d), method="trust-exact",
                   jac=lambda t: -np_derivatives(t, *data)[0], hess=lambda t: np_derivatives(t, *data)[1])
    polished = root(lambda t: np_derivatives(t, *data)[0], fit.x, jac=lambda t: -np_derivatives(t, *data)[1], tol=1e-14)
    assert np.max(np.abs(np_derivatives(polished.x, *data)[0])) < 1e-10
    return polished.x


def count_data(seed, rows=150, d=3, scale=1.5):
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(rows, d))
    trials = rng.integers(0, 5, size=rows).astype(float)  # some rows unused (0 trials)
    probability = 1 / (1 + np.exp(-features @ (scale * rng.normal(size=d))))
    successes = rng.binomial(trials.astype(int), probability).astype(float)
    precision = np.array([[0.8, 0.1, 0.0], [0.1, 0.5, 0.0], [0.0, 0.0, 0.3]])[:d, :d]
    return features, successes, trials, precision, 0.2 * rng.normal(size=d)


# --- Newton to a tolerance ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def newton():
    """newton_mode on raw count data, jitted once with the tolerance and the step cap as traced values."""
    def run(start, features, successes, trials, precision, mean, tolerance, max_steps):
        terms = lambda theta: logistic_count_terms(theta, features, successes, trials)
        return newton_mode(start, terms, precision, mean, tolerance, max_steps)

    return jax.jit(run)


@pytest.mark.parametrize("seed", [0, 1])
def test_newton_mode_matches_scipy_and_meets_its_tolerance(newton, seed):
    data = count_data(seed)
    reference = scipy_mode(*data)
    far = jnp.asarray([6.0, -6.0, 6.0])  # undamped Newton overshoots from here on saturated sigmoids
    fit = newton(far, *map(jnp.asarray, data), 1e-9, 50)
    assert bool(fit.converged) and 1 <= int(fit.steps) < 50
    np.testing.assert_allclose(fit.mode, reference, atol=1e-8)
    # The reported decrement is the one at the point returned, and it is within the tolerance.
    np.testing.assert_allclose(float(fit.decrement), np_decrement(np.asarray(fit.mode), *data), rtol=1e-6, atol=1e-12)
    assert np_decrement(np.asarray(fit.mode), *data) <= 1e-9
    # A loose tolerance stops earlier, at a point that meets it but not the tight one.
    loose = newton(far, *map(jnp.asarray, data), 1e-2, 50)
    assert bool(loose.converged) and int(loose.steps) < int(fit.steps)
    assert np_decrement(np.asarray(loose.mode), *data) <= 1e-2
    # The expansion's gradient and curvature are the log-likelihood's at the mode (prior excluded).
    gradient, hessian = np_derivatives(np.asarray(fit.mode), *data)
    precision, mean = data[3], data[4]
    np.testing.assert_allclose(fit.gradient, gradient + precision @ (np.asarray(fit.mode) - mean), atol=1e-9)
    np.testing.assert_allclose(fit.curvature, hessian - precision, rtol=1e-10)


def test_newton_mode_converges_where_objective_differences_are_rounding(newton):
    # 2000 rows: |log posterior| ~ 1e3, rounding ~1e-13, but a step from 1e-7 sds gains only ~1e-14.
    data = count_data(0, rows=2000)
    reference = scipy_mode(*data)
    direction = np.random.default_rng(0).normal(size=3)
    direction /= np.sqrt(direction @ np_derivatives(reference, *data)[1] @ direction)  # 1 posterior sd
    starts = jnp.asarray([reference + scale * direction for scale in (1e-6, 3e-7, 1e-7, 3e-8)])
    fits = jax.vmap(lambda start: newton(start, *map(jnp.asarray, data), 1e-12, 20))(starts)
    assert np.all(np.asarray(fits.converged)) and np.all(np.asarray(fits.steps) == 1)
    np.testing.assert_allclose(fits.mode, np.broadcast_to(reference, (4, 3)), atol=1e-12)


def test_newton_mode_reports_a_capped_fit_and_never_descends(newton):
    data = count_data(2, scale=4.0)  # nearly separable: the full step from far away overshoots
    far, tolerance = jnp.asarray([8.0, 8.0, -8.0]), 1e-2
    caps = jnp.arange(1, 9)
    fits = jax.vmap(lambda cap: newton(far, *map(jnp.asarray, data), tolerance, cap))(caps)
    decrements = np.array([np_decrement(np.asarray(mode), *data) for mode in fits.mode])
    # What each capped fit reports agrees with the oracle's decrement at the point it returns; the
    # first caps stop short (decrements from ~9 sds down through 0.08), the later ones at the tolerance.
    np.testing.assert_allclose(fits.decrement, decrements, rtol=1e-6)
    np.testing.assert_array_equal(fits.converged, decrements <= tolerance)
    assert not bool(fits.converged[0]) and bool(fits.converged[-1]) and np.any((decrements > tolerance) & (decrements < 0.1))
    np.testing.assert_array_equal(fits.steps, np.minimum(caps, np.argmax(decrements <= tolerance) + 1))
    values = [np_log_posterior(np.asarray(mode), *data) for mode in fits.mode]
    assert values[0] > np_log_posterior(np.asarray(far), *data)
    assert np.all(np.diff(values) >= -1e-9)


def test_count_log_likelihood_is_accurate_where_the_sigmoid_saturates():
    # Logits 12..18 with the outcome the sigmoid predicts: ℓ ≈ −1e-6 is a difference of terms ~15 n in
    # the textbook form; the oracle evaluates that form in extended precision (~1e-19 relative).
    rng = np.random.default_rng(6)
    features = np.stack([rng.uniform(12, 18, size=40), np.zeros(40)], axis=1) * rng.choice([-1, 1], size=(40, 1))
    trials = rng.integers(1, 6, size=40).astype(float)
    successes = np.where(features[:, 0] > 0, trials, 0.0)
    theta = np.array([1.0, 0.5])
    logits = (features @ theta).astype(np.longdouble)
    exact = np.sum(successes * logits - trials * np.log1p(np.exp(logits)))
    value = logistic_count_terms(jnp.asarray(theta), jnp.asarray(features), jnp.asarray(successes), jnp.asarray(trials))[0]
    assert -1e-3 < float(exact) < 0
    np.testing.assert_allclose(float(value), float(exact), rtol=1e-12)


# --- per-arm rows ---------------------------------------------------------------------------------

def tally(actions, features, rewards):
    """{(arm, row): [trials, successes]} by brute force."""
    counts = {}
    for arm, row, reward in zip(actions, map(tuple, features), rewards):
        entry = counts.setdefault((int(arm), row), [0.0, 0.0])
        entry[0] += 1
        entry[1] += reward
    return counts


def table_counts(rows):
    features, trials, successes = (np.asarray(a) for a in (rows.features, rows.trials, rows.successes))
    found = {}
    for arm in range(trials.shape[0]):
        for slot in np.flatnonzero(trials[arm] > 0):
            key = (arm, tuple(features[arm, slot]))
            assert key not in found, "a row stored twice for one arm"
            found[key] = [trials[arm, slot], successes[arm, slot]]
    return found


def test_arm_rows_deduplicate_sum_in_chunks_and_count_what_does_not_fit():
    rng = np.random.default_rng(3)
    pool = rng.uniform(-1, 1, size=(6, D))
    pool[3:, 0] = pool[:3, 0]  # rows that differ in one feature only
    n = 3 * CHUNK_ROWS
    # arm 0: continuous rows (3 chunks); arm 1: a pool of 6; arm 2: a pool of 6 into 4 slots
    actions = rng.integers(0, 3, size=n)
    features = np.where((actions == 0)[:, None], rng.normal(size=(n, D)), pool[rng.integers(0, 6, size=n)])
    rewards = rng.integers(0, 2, size=n).astype(float)

    @jax.jit
    def build(actions, features, rewards):
        def add(rows, data):
            return arm_rows_add(rows, *data)[0], None
        rows = jax.lax.scan(add, arm_rows_init(3, n, D), (actions, features, rewards))[0]
        small = jax.lax.scan(add, arm_rows_init(3, 4, D), (actions, features, rewards))[0]
        theta = jnp.asarray([0.3, -0.7])
        sums = [arm_rows_sum(rows, arm, lambda *chunk: logistic_count_terms(theta, *chunk)) for arm in range(3)]
        return rows, small, sums

    rows, small, sums = build(jnp.asarray(actions), jnp.asarray(features), jnp.asarray(rewards))
    assert table_counts(rows) == tally(actions, features, rewards)
    np.testing.assert_array_equal(rows.filled, [np.sum(actions == 0), len({tuple(x) for x in features[actions == 1]}),
                                                len({tuple(x) for x in features[actions == 2]})])
    for arm in range(3):  # the chunked sums against the plain sums over the arm's observations
        mine = actions == arm
        successes, trials = rewards[mine], np.ones(mine.sum())
        theta = np.array([0.3, -0.7])
        zeros = (np.zeros((D, D)), np.zeros(D))
        gradient, hessian = np_derivatives(theta, features[mine], successes, trials, *zeros)
        np.testing.assert_allclose(sums[arm][0], np_log_posterior(theta, features[mine], successes, trials, *zeros))
        np.testing.assert_allclose(sums[arm][1], gradient, atol=1e-12)
        np.testing.assert_allclose(sums[arm][2], hessian, rtol=1e-12)
    # 4 slots per arm: the first 4 distinct rows of each arm are kept, later new rows dropped.
    kept, dropped = {}, 0
    for arm, row, reward in zip(actions, map(tuple, features), rewards):
        if (int(arm), row) in kept or sum(key[0] == arm for key in kept) < 4:
            entry = kept.setdefault((int(arm), row), [0.0, 0.0])
            entry[0] += 1
            entry[1] += reward
        else:
            dropped += 1
    assert table_counts(small) == kept and int(small.dropped) == dropped > 0


# --- the agents -----------------------------------------------------------------------------------

def feed(policy, contexts, actions, rewards):
    def step(state, data):
        return policy.update(state, *data), None

    return jax.lax.scan(step, policy.init(jax.random.PRNGKey(0)), (contexts, actions, rewards))[0]


def interleaved_rounds(seed, rounds, pooled):
    """Per-arm contexts (rounds, K, D), drawn from a pool of 4 (``pooled``) or continuous; runs of one
    arm interleaved with switches; Bernoulli rewards."""
    rng = np.random.default_rng(seed)
    pool = rng.uniform(-1, 1, size=(4, D))
    contexts = pool[rng.integers(0, 4, size=(rounds, K))] if pooled else rng.uniform(-1, 1, size=(rounds, K, D))
    actions = np.repeat(rng.integers(0, K, size=rounds // 3 + 1), 3)[:rounds]
    actions[::7] = rng.integers(0, K, size=len(actions[::7]))
    theta = rng.normal(size=(K, D))
    logits = np.einsum("td,td->t", contexts[np.arange(rounds), actions], theta[actions])
    rewards = (rng.uniform(size=rounds) < 1 / (1 + np.exp(-logits))).astype(float)
    return contexts, actions, rewards


@pytest.fixture(scope="module")
def windowed_glm_ts():
    window = 50
    policy = glm_ts(PRIOR_MEAN, PRIOR_COV, history_size=window)
    return window, jax.jit(lambda *data: feed(policy, *data))


@pytest.mark.parametrize("pooled", [True, False])
def test_per_arm_rows_and_posteriors_follow_the_window_when_arms_interleave(windowed_glm_ts, pooled):
    window, run = windowed_glm_ts
    rounds = 160
    contexts, actions, rewards = interleaved_rounds(4, rounds, pooled)
    features = contexts[np.arange(rounds), actions]
    state = run(jnp.asarray(contexts), jnp.asarray(actions), jnp.asarray(rewards))
    # The table holds exactly the counts of the last `window` rounds, arms interleaved.
    recent = slice(rounds - window, rounds)
    assert table_counts(state.arm_rows) == tally(actions[recent], features[recent], rewards[recent])
    if pooled:
        assert np.all(np.asarray(state.arm_rows.filled) <= 4)  # a pool of 4: at most 4 rows per arm
    assert int(state.arm_rows.dropped) == 0 and int(state.failed_refits) == 0
    # Each arm's posterior is the Laplace posterior of the window at its last pull (SciPy's mode).
    for arm in range(K):
        last = np.flatnonzero(actions == arm)[-1]
        rows = (actions == arm) & (np.arange(rounds) > last - window) & (np.arange(rounds) <= last)
        precision = np.linalg.inv(PRIOR_COV[arm])
        data = (features[rows], rewards[rows], np.ones(rows.sum()), precision, PRIOR_MEAN[arm])
        mode = scipy_mode(*data)
        posterior = jax.tree.map(lambda leaf: leaf[arm], state.posterior)
        np.testing.assert_allclose(gaussian_mean(posterior), mode, atol=1e-7)
        np.testing.assert_allclose(gaussian_covariance(posterior), np.linalg.inv(np_derivatives(mode, *data)[1]),
                                   rtol=1e-6)
        np.testing.assert_allclose(state.mode[arm], mode, atol=1e-7)


def test_refits_that_stop_before_the_tolerance_are_counted():
    contexts, actions, rewards = interleaved_rounds(5, 30, pooled=True)
    data = tuple(map(jnp.asarray, (contexts, actions, rewards)))
    capped = {"history_size": 30, "newton_steps": 1, "newton_tol": 1e-12}
    # One step from the previous mode after each new observation never reaches 1e-12 sds: all 30 count.
    # (The default settings count none: the window test here and tests/test_glm.py.)
    for policy in (mets_glm(np.zeros((K, 1)), np.zeros((1, D)), np.eye(D), PRIOR_COV, **capped),
                   glm_ts(PRIOR_MEAN, PRIOR_COV, **capped)):
        assert int(feed(policy, *data).failed_refits) == 30


def test_arm_rows_doctest():
    assert doctest.testmod(arm_rows).failed == 0


def test_per_arm_options_are_validated():
    with pytest.raises(ValidationError, match="refit: expected one of 'per_arm', 'history'"):
        glm_ts(PRIOR_MEAN, PRIOR_COV, history_size=10, refit="window")
    with pytest.raises(ValidationError, match="newton_tol: expected values > 0"):
        glm_ts(PRIOR_MEAN, PRIOR_COV, history_size=10, newton_tol=0.0)
    with pytest.raises(ValidationError, match="arm_capacity: expected an integer >= 1"):
        mets_glm(np.ones((K, 1)), np.zeros((1, D)), np.eye(D), PRIOR_COV, history_size=10, arm_capacity=0)
    with pytest.raises(ValidationError, match="newton_steps: expected an integer >= 1"):
        glm_ts(PRIOR_MEAN, PRIOR_COV, history_size=10, newton_steps=0, refit="history")
