"""LinTS-NIG (``agents.lin_ts_nig``), its regression NIG (``inference.nig``) and its program
(``models.linear_bandit_nig``) against independent answers.

Oracles, none of them the package's code:
- the textbook batch NIG posterior written in NumPy (Λ_n = Λ_0 + XᵀX, m_n = Λ_n⁻¹(Λ_0 m_0 + Xᵀy),
  a_n = a_0 + n/2, b_n = b_0 + ½(yᵀy + m_0ᵀΛ_0m_0 − m_nᵀΛ_nm_n), raw sums of squares: the package
  tracks b by prediction residuals instead), per arm and, with one shared σ², as one NIG over the
  stacked coefficients with the block-diagonal Λ;
- NUTS on the same NumPyro program (``check_posterior``, slow);
- exact selection probabilities from scipy: with two arms sharing σ² the score gap is a scaled
  Student-t; with a σ² per arm P(s₀ > s₁) = ∫ f₁(s) P(s₀ > s) ds by quadrature of two Student-t laws;
- ``check_params_are_data`` (policies built from scratch by the constructor); a uniform-random run.

Planted bugs, each failing a test here: β's increment without the ½ (sequential: the state and
propensity tests; batch: the closed-form tests; NUTS check too); the shared α incremented by ½·K per
observation (once per arm); the update applied to arm (a + 1) mod K (also the learning test);
``init`` ignoring its params (every params-as-data case); the per-arm closed form used for the
shared-σ² program (NUTS check).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer import Predictive
from params_as_data import check_params_are_data
from scipy import integrate, stats

from structbandits.agents import lin_ts_nig, uniform_random
from structbandits.envs import linear_contextual_bandit
from structbandits.errors import ValidationError
from structbandits.experiments import run_experiment
from structbandits.inference import posterior
from structbandits.inference.nig import (
    RegressionNIG,
    linear_bandit_nig_posterior,
    regression_nig_observe_batch,
    regression_nig_prior,
)
from structbandits.models import linear_bandit_nig

K, D, N = 3, 2, 40
RNG = np.random.default_rng(5)
PRIOR_MEAN = RNG.normal(size=(K, D))
PRIOR_COV = np.stack([a @ a.T + 0.5 * np.eye(D) for a in RNG.normal(size=(K, D, D))])
ALPHA, BETA = np.array([2.0, 3.5, 1.2]), np.array([1.0, 0.4, 2.5])  # per arm; shared uses ALPHA[0], BETA[0]
CONTEXTS = RNG.uniform(-1, 1, (N, K, D))  # one row per arm
ACTIONS = RNG.integers(0, K, N)
REWARDS = RNG.normal(1.0, 2.0, N)


def textbook(mean0, cov0, a0, b0, xs, ys):
    """(Λ_n, m_n, a_n, b_n) of one NIG block, with explicit inverses and raw sums of squares."""
    precision0 = np.linalg.inv(cov0)
    precision = precision0 + xs.T @ xs
    mean = np.linalg.solve(precision, precision0 @ mean0 + xs.T @ ys)
    return precision, mean, a0 + len(ys) / 2, b0 + 0.5 * (ys @ ys + mean0 @ precision0 @ mean0 - mean @ precision @ mean)


def arm_data(arm):
    rows = ACTIONS == arm
    return CONTEXTS[rows, arm], REWARDS[rows]


def expected(shared):
    """Per-arm (Λ, m) and (a, b): per arm (K,), or shared scalars from the block-diagonal joint NIG."""
    if not shared:
        blocks = [textbook(PRIOR_MEAN[k], PRIOR_COV[k], ALPHA[k], BETA[k], *arm_data(k)) for k in range(K)]
        return [b[0] for b in blocks], [b[1] for b in blocks], np.array([b[2] for b in blocks]), np.array([b[3] for b in blocks])
    # One NIG over the stacked coefficients (K·d,): Λ_0 block-diagonal, x zero outside the pulled arm's block.
    precision0 = np.zeros((K * D, K * D))
    for k in range(K):
        precision0[k * D:(k + 1) * D, k * D:(k + 1) * D] = np.linalg.inv(PRIOR_COV[k])
    xs = np.zeros((N, K * D))
    for t, (k, x) in enumerate(zip(ACTIONS, CONTEXTS[np.arange(N), ACTIONS])):
        xs[t, k * D:(k + 1) * D] = x
    precision, mean, a, b = textbook(PRIOR_MEAN.reshape(-1), np.linalg.inv(precision0), ALPHA[0], BETA[0], xs, REWARDS)
    return ([precision[k * D:(k + 1) * D, k * D:(k + 1) * D] for k in range(K)], list(mean.reshape(K, D)), a, b)


def assert_state_is(nig: RegressionNIG, shared):
    precisions, means, a, b = expected(shared)
    chol = np.asarray(nig.precision_chol)
    for k in range(K):
        precision = chol[k] @ chol[k].T
        np.testing.assert_allclose(precision, precisions[k], rtol=1e-10, err_msg=f"Λ of arm {k}")
        np.testing.assert_allclose(np.linalg.solve(precision, np.asarray(nig.info[k])), means[k], rtol=1e-9, atol=1e-12,
                                   err_msg=f"m of arm {k}")
    np.testing.assert_allclose(np.asarray(nig.alpha), a, rtol=1e-12, err_msg="a_n")
    np.testing.assert_allclose(np.asarray(nig.beta), b, rtol=1e-9, err_msg="b_n")


def policy(shared, **kwargs):
    alpha, beta = (ALPHA[0], BETA[0]) if shared else (ALPHA, BETA)
    return lin_ts_nig(PRIOR_MEAN, PRIOR_COV, alpha, beta, shared=shared, **kwargs)


@pytest.mark.parametrize("shared", [False, True])
def test_sequential_updates_equal_the_textbook_batch_posterior(shared):
    agent = policy(shared)

    def run(state, inputs):
        context, action, reward = inputs
        return agent.update(state, context, action, reward), None

    state, _ = jax.jit(lambda s: jax.lax.scan(run, s, (jnp.asarray(CONTEXTS), jnp.asarray(ACTIONS), jnp.asarray(REWARDS))))(
        agent.init(jax.random.PRNGKey(0)))
    assert np.bincount(ACTIONS, minlength=K).min() >= 8  # every arm's block is exercised
    assert_state_is(state.posterior, shared)


@pytest.mark.parametrize("shared", [False, True])
def test_the_program_closed_form_equals_the_textbook_posterior(shared):
    # The program's contexts are the pulled arm's rows; the closed form registered for posterior().
    pulled = CONTEXTS[np.arange(N), ACTIONS]
    alpha, beta = (ALPHA[0], BETA[0]) if shared else (ALPHA, BETA)
    nig = linear_bandit_nig_posterior(*(jnp.asarray(v) for v in (PRIOR_MEAN, PRIOR_COV, alpha, beta, pulled, ACTIONS, REWARDS)),
                                      shared=shared)
    assert_state_is(nig, shared)
    result = posterior(linear_bandit_nig, dict(prior_mean=PRIOR_MEAN, prior_cov=PRIOR_COV, alpha=alpha, beta=beta,
                                               contexts=pulled, actions=ACTIONS, rewards=REWARDS, shared=shared),
                       num_draws=20_000)
    assert result.method == "conjugate"
    assert result.draws["theta"].shape == (2, 20_000, K, D)
    assert result.draws["noise_var"].shape == ((2, 20_000) if shared else (2, 20_000, K))
    _, means, a, b = expected(shared)
    np.testing.assert_allclose(result.mean("theta"), np.stack(means), rtol=1e-9)
    # σ² ~ InvGamma(a_n, b_n): the draws' mean within 4 standard errors of b/(a − 1).
    draws = result.draws["noise_var"].reshape(40_000, -1)
    sd = np.sqrt(stats.invgamma.var(a, scale=b) / 40_000)
    assert np.all(np.abs(draws.mean(0) - stats.invgamma.mean(a, scale=b)) < 4 * sd)


def test_batch_update_with_masks_equals_the_textbook_posterior():
    xs, ys = CONTEXTS[:, 0], REWARDS
    mask = ACTIONS == 1
    prior = regression_nig_prior(jnp.asarray(PRIOR_MEAN[0]), jnp.asarray(PRIOR_COV[0]), 2.0, 1.0)
    got = regression_nig_observe_batch(prior, jnp.asarray(xs), jnp.asarray(ys), jnp.asarray(mask))
    precision, mean, a, b = textbook(PRIOR_MEAN[0], PRIOR_COV[0], 2.0, 1.0, xs[mask], ys[mask])
    chol = np.asarray(got.precision_chol)
    np.testing.assert_allclose(chol @ chol.T, precision, rtol=1e-10)
    np.testing.assert_allclose(np.linalg.solve(precision, np.asarray(got.info)), mean, rtol=1e-9)
    np.testing.assert_allclose([float(got.alpha), float(got.beta)], [a, b], rtol=1e-10)


def t_score(nig_mean, precision, a, b, x):
    """Arm score xᵀθ under the NIG marginal: Student-t, 2a dof, loc xᵀm, scale √(b/a · xᵀΛ⁻¹x)."""
    return stats.t(df=2 * a, loc=x @ nig_mean, scale=np.sqrt(b / a * x @ np.linalg.solve(precision, x)))


@pytest.mark.parametrize("shared", [True, False])
def test_monte_carlo_propensities_match_the_exact_selection_probability(shared):
    # Two arms after a little data; shared context.
    rng = np.random.default_rng(3)
    agent = lin_ts_nig(np.zeros(D), np.eye(D), 2.5, 1.5, num_actions=2, shared=shared, propensity_draws=1000)
    xs, arms = rng.uniform(-1, 1, (12, D)), np.tile([0, 1], 6)
    ys = xs @ np.array([0.3, -0.2]) + 0.1 * arms + rng.normal(0, 0.8, 12)
    state = agent.init(jax.random.PRNGKey(0))
    for x, a, y in zip(xs, arms, ys):
        state = agent.update(state, jnp.asarray(x), jnp.asarray(a), jnp.asarray(y))
    x = np.array([0.7, -0.4])
    blocks = [textbook(np.zeros(D), np.eye(D), 2.5, 1.5, xs[arms == k], ys[arms == k]) for k in range(2)]
    if shared:
        # s₀ − s₁ | σ² ~ N(xᵀ(m₀ − m₁), σ² xᵀ(Λ₀⁻¹ + Λ₁⁻¹)x), σ² ~ InvGamma(a, b): a scaled Student-t.
        _, _, a, b = textbook(np.zeros(2 * D), np.eye(2 * D), 2.5, 1.5,
                              np.concatenate([xs * (arms == 0)[:, None], xs * (arms == 1)[:, None]], axis=1), ys)
        gap = x @ (blocks[0][1] - blocks[1][1])
        spread = x @ (np.linalg.solve(blocks[0][0], x) + np.linalg.solve(blocks[1][0], x))
        exact = stats.t.cdf(gap / np.sqrt(b / a * spread), df=2 * a)
    else:
        s0, s1 = (t_score(m, p, a, b, x) for p, m, a, b in blocks)
        exact = integrate.quad(lambda s: s1.pdf(s) * s0.sf(s), -np.inf, np.inf, epsabs=1e-12)[0]
    assert 0.15 < exact < 0.85  # not a degenerate check
    calls = 400  # sequential decisions (lax.map: compiles as one decision does, unlike vmap's batched loops)
    actions, info = jax.jit(lambda keys: jax.lax.map(lambda k: agent.act(state, k, jnp.asarray(x)), keys))(
        jax.random.split(jax.random.PRNGKey(1), calls))
    actions, reported = np.asarray(actions), np.asarray(info.propensity)
    arm0 = np.where(actions == 0, reported, 1 - reported)  # each an M-draw estimate of P(arm 0)
    mc_sd = np.sqrt(exact * (1 - exact) / 1000)
    assert abs(arm0[0] - exact) < 4 * mc_sd
    assert abs(arm0.mean() - exact) < 4 * mc_sd / np.sqrt(calls)
    # ... and the actions are drawn with that probability.
    assert abs(np.mean(actions == 0) - exact) < 4 * np.sqrt(exact * (1 - exact) / calls)


def _context(key):
    return jax.random.uniform(key, (D,), minval=-1.0, maxval=1.0)


def _reward(key, context, action):
    return context @ jnp.array([0.5, -0.5]) * (action == 0) + 0.3 * jax.random.normal(key)


@pytest.mark.parametrize(("name", "values"), [
    ("prior_mean", (np.zeros(D), np.array([0.5, -1.0]))),
    ("prior_cov", (np.eye(D), np.array([[2.0, 0.3], [0.3, 0.5]]))),
    ("alpha", (2.0, 4.0)),
    ("beta", (1.0, 0.2)),
])
@pytest.mark.parametrize("shared", [False, True])
def test_hyperparameters_are_data(name, values, shared):
    base = dict(prior_mean=np.zeros(D), prior_cov=np.eye(D), alpha=2.0, beta=1.0)
    check_params_are_data(lambda value: lin_ts_nig(**{**base, name: value}, num_actions=3, shared=shared,
                                                    propensity_draws=4),
                          *values, _context, _reward, rounds=4)


def test_it_learns_with_unknown_noise():
    env = linear_contextual_bandit(5, 3, noise_scale=0.5)
    agents = {"lints-nig": lin_ts_nig(np.zeros(3), np.eye(3), 2.0, 0.5, num_actions=5), "random": uniform_random(5)}
    frame = run_experiment(agents, env, horizon=200, num_seeds=4, progress=False)
    regret = frame[frame["round"] == frame["round"].max()].groupby("agent")["cumulative_regret"].mean()
    assert regret["lints-nig"] < 0.6 * regret["random"], regret


def test_posterior_draws_have_the_program_sites():
    for shared, var_shape in ((False, (7, K)), (True, (7,))):
        agent = policy(shared)
        draws = jax.jit(agent.posterior_draws, static_argnums=2)(agent.init(jax.random.PRNGKey(0)), jax.random.PRNGKey(1), 7)
        assert draws["theta"].shape == (7, K, D) and draws["noise_var"].shape == var_shape
        assert np.all(np.asarray(draws["noise_var"]) > 0)


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(prior_mean=np.zeros(2), prior_cov=np.eye(3), alpha=2.0, beta=1.0, num_actions=2), r"prior_cov: expected shape \(..., 2, 2\)"),
    (dict(prior_mean=np.zeros(2), prior_cov=-np.eye(2), alpha=2.0, beta=1.0, num_actions=2), "prior_cov: expected a positive-definite"),
    (dict(prior_mean=[np.nan, 0.0], prior_cov=np.eye(2), alpha=2.0, beta=1.0, num_actions=2), "prior_mean: expected finite"),
    (dict(prior_mean=np.zeros(2), prior_cov=np.eye(2), alpha=0.0, beta=1.0, num_actions=2), "alpha: expected values > 0"),
    (dict(prior_mean=np.zeros(2), prior_cov=np.eye(2), alpha=2.0, beta=-1.0, num_actions=2), "beta: expected values > 0"),
    (dict(prior_mean=np.zeros(2), prior_cov=np.eye(2), alpha=np.ones(3), beta=1.0, num_actions=2),
     r"alpha: expected a scalar or shape \(2,\) \(one per arm\), got shape \(3,\)"),
    (dict(prior_mean=np.zeros(2), prior_cov=np.eye(2), alpha=np.ones(2), beta=1.0, num_actions=2, shared=True),
     r"alpha: expected a scalar with shared=True"),
    (dict(prior_mean=np.zeros(2), prior_cov=np.eye(2), alpha=2.0, beta=1.0, num_actions=2, shared="yes"),
     "shared: expected True or False, got 'yes'"),
    (dict(prior_mean=np.zeros(2), prior_cov=np.eye(2), alpha=2.0, beta=1.0), "num_actions: expected the number of arms"),
    (dict(prior_mean=np.zeros(2), prior_cov=np.eye(2), alpha=2.0, beta=1.0, num_actions=2, propensity_draws=-1),
     "propensity_draws"),
])
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValidationError, match=message):
        lin_ts_nig(**kwargs)


def test_bad_program_data_is_named():
    data = dict(prior_mean=PRIOR_MEAN, prior_cov=PRIOR_COV, alpha=ALPHA, beta=BETA, contexts=CONTEXTS[:, 0],
                actions=ACTIONS, rewards=REWARDS)
    with pytest.raises(ValidationError, match=r"data\['alpha'\]: expected shape \(\) with shared=True"):
        posterior(linear_bandit_nig, {**data, "shared": True})
    with pytest.raises(ValidationError, match=r"data\['beta'\]: expected values > 0"):
        posterior(linear_bandit_nig, {**data, "beta": -BETA})
    with pytest.raises(ValidationError, match=r"data\['actions'\]: expected arm indices in \[0, 3\)"):
        posterior(linear_bandit_nig, {**data, "actions": ACTIONS + 1})


def nuts_data(shared, seed):
    rng = np.random.default_rng(seed)
    k, n = 2, 60
    mean, cov = jnp.zeros((k, D)), jnp.broadcast_to(jnp.eye(D), (k, D, D))
    contexts, actions = jnp.asarray(rng.uniform(-1, 1, (n, D))), jnp.asarray(rng.integers(0, k, n))
    program = functools.partial(linear_bandit_nig, shared=shared)
    rewards = Predictive(program, num_samples=1)(jax.random.PRNGKey(seed), mean, cov, 4.0, 2.0, contexts, actions)["reward"][0]
    return dict(prior_mean=mean, prior_cov=cov, alpha=4.0, beta=2.0, contexts=contexts, actions=actions, rewards=rewards,
                shared=shared)


@pytest.mark.slow
@pytest.mark.parametrize("shared", [False, True])
def test_the_closed_form_agrees_with_nuts_on_the_program(shared):
    from structbandits.diagnostics import check_posterior

    check = check_posterior(linear_bandit_nig, nuts_data(shared, 0), num_draws=500, num_warmup=300)
    assert check.method == "conjugate" and check.passed, str(check)
    assert set(check.table["site"]) == {"theta", "noise_var"}
