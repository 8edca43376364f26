"""Oracles for the causal excursion effect (weighted, centred least squares; ``study.excursion``).

Independent of the package's code:

* tiny logs computed by hand: with a constant probability p = p̃ = 0.5, no moderators and an intercept
  control, β̂ is the difference of the treated and untreated means and its sandwich standard error the
  heteroskedasticity-robust (HC0) one, √(v₁/n₁ + v₀/n₀); with logged probabilities that vary, β̂ is
  the difference of the two inverse-probability-weighted means and its clustered standard error the
  one of their influence functions summed by participant; with a moderator, β̂ is the difference of
  the two arms' separate weighted regressions on [1, S] (the fit is saturated in the treatment).
* a micro-randomised trial simulated with numpy (replications × participants vectorised, decisions in
  a loop because the randomisation probability depends on the last outcome):
  Y_t = 1 + 0.5 S_t + 0.4 S_t² + u_i + A_t (0.3 - 0.2 S_t + b_i) + e_t with participant effects u_i
  and b_i, an exogenous AR(1) moderator S_t and p_t = clip(σ(0.5 S_t + 0.8 (Y_{t-1} - 1)), 0.1, 0.9).
  As E[b_i | S_t] = 0, the true moderated excursion effect is β(S) = 0.3 - 0.2 S. Every control working
  model used omits u_i and S² (and one omits S too), so an ordinary regression with A·S interactions is
  confounded through Y_{t-1}; WCLS must not be.

Coverage: with R = 1000 replications the Monte-Carlo sd of a 95% coverage is √(0.95·0.05/1000) =
0.0069, so the accepted band [93%, 97%] is 2.9 of those sds either side of 95%; means are accepted
within 3 Monte-Carlo standard errors (sd(β̂)/√R) of the truth. The estimator is called once per
replication (about 2–4 ms each); the simulation and the OLS comparison are batched in numpy.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from structbandits.errors import ValidationError
from structbandits.study.excursion import binary_contrast, excursion_effect, excursion_effect_from_log

ALPHA0, ALPHA1, ALPHA2 = 1.0, 0.5, 0.4      # control part; S² is in no working model
BETA = np.array([0.3, -0.2])                # true moderated excursion effect β0 + β1 S
R = 1000


def simulate_mrt(seed: int, replications: int, users: int, decisions: int, *, sd_user: float = 1.0,
                 sd_user_effect: float = 1.0):
    """(R, users · decisions) arrays S, A, p, Y (participant-major) and the (users · decisions,) ids."""
    rng = np.random.default_rng(seed)
    shape = (replications, users)
    u = rng.normal(0.0, sd_user, shape)
    b = rng.normal(0.0, sd_user_effect, shape)
    out = {k: np.empty(shape + (decisions,)) for k in "SAPY"}
    s, y_prev = rng.normal(0.0, 1.0, shape), np.full(shape, ALPHA0)
    for t in range(decisions):
        if t:
            s = 0.6 * s + rng.normal(0.0, 0.8, shape)
        p = np.clip(1.0 / (1.0 + np.exp(-(0.5 * s + 0.8 * (y_prev - ALPHA0)))), 0.1, 0.9)
        a = (rng.uniform(size=shape) < p).astype(np.float64)
        y = (ALPHA0 + ALPHA1 * s + ALPHA2 * s**2 + u + a * (BETA[0] + BETA[1] * s + b)
             + rng.normal(0.0, 1.0, shape))
        for k, v in zip("SAPY", (s, a, p, y)):
            out[k][..., t] = v
        y_prev = y
    flat = {k: v.reshape(replications, -1) for k, v in out.items()}
    return flat, np.repeat(np.arange(users), decisions)


@pytest.fixture(scope="module")
def few_participants():
    return simulate_mrt(2024, R, users=30, decisions=20)


@pytest.fixture(scope="module")
def many_participants():
    return simulate_mrt(7, R, users=300, decisions=10)


def replicate(data, users, **options):
    """β̂ (R, 2) and interval bounds (R, 2) of one excursion_effect call per replication."""
    estimate, lower, upper = (np.empty((len(data["Y"]), 2)) for _ in range(3))
    for r in range(len(data["Y"])):
        effects = excursion_effect(data["Y"][r], data["A"][r], data["P"][r], moderators=data["S"][r],
                                   clusters=users, **options).effects
        estimate[r], lower[r], upper[r] = effects["estimate"], effects["ci_lower"], effects["ci_upper"]
    return estimate, lower, upper


def assert_unbiased_and_covers(estimate, lower, upper):
    mc_se = estimate.std(axis=0, ddof=1) / np.sqrt(len(estimate))
    bias = estimate.mean(axis=0) - BETA
    coverage = ((lower <= BETA) & (BETA <= upper)).mean(axis=0)
    assert np.all(np.abs(bias) <= 3 * mc_se), (bias, mc_se)
    assert np.all((0.93 <= coverage) & (coverage <= 0.97)), coverage


# ---------------------------------------------------------------- tiny logs computed by hand

Y8 = np.array([2.0, 3.5, 1.0, 4.0, 0.5, 2.5, 3.0, 1.5])
A8 = np.array([1, 1, 1, 0, 0, 0, 1, 0])


def test_constant_probability_gives_difference_in_means_with_hc0_error():
    result = excursion_effect(Y8, A8, np.full(8, 0.5), reference_probability=0.5)
    treated, untreated = Y8[A8 == 1], Y8[A8 == 0]                    # (2, 3.5, 1, 3), (4, .5, 2.5, 1.5)
    difference = treated.mean() - untreated.mean()                   # 2.375 - 2.125
    hc0 = np.sqrt(treated.var() / 4 + untreated.var() / 4)           # ddof 0: HC0
    row = result.effects.loc["intercept"]
    assert row["estimate"] == pytest.approx(0.25, abs=1e-12) and difference == pytest.approx(0.25)
    assert row["std_error"] == pytest.approx(hc0, rel=1e-10)
    assert row["statistic"] == pytest.approx(0.25 / hc0, rel=1e-10)
    assert row["p_value"] == pytest.approx(2 * stats.norm.sf(0.25 / hc0), rel=1e-8)
    assert row["ci_lower"] == pytest.approx(0.25 - 1.959963984540054 * hc0, rel=1e-10)
    # the control intercept is the outcome at A - p̃ = 0: the average of the two arms' means
    assert result.control.loc["intercept", "estimate"] == pytest.approx((2.375 + 2.125) / 2, abs=1e-12)
    assert (result.n, result.n_clusters, list(result.effects.index)) == (8, 8, ["intercept"])


def test_varying_probabilities_give_weighted_means_with_clustered_error():
    p = np.array([0.2, 0.6, 0.5, 0.3, 0.8, 0.4, 0.7, 0.25])
    users = np.array(["a", "a", "b", "b", "c", "c", "d", "d"])
    p_ref = 0.4
    w = np.where(A8 == 1, p_ref / p, (1 - p_ref) / (1 - p))
    w1, w0 = w * A8, w * (1 - A8)
    m1, m0 = (w1 @ Y8) / w1.sum(), (w0 @ Y8) / w0.sum()
    influence = w1 * (Y8 - m1) / w1.sum() - w0 * (Y8 - m0) / w0.sum()
    per_user = np.array([influence[users == k].sum() for k in "abcd"])
    result = excursion_effect(Y8, A8, p, reference_probability=p_ref, clusters=users)
    assert result.beta[0] == pytest.approx(m1 - m0, rel=1e-10)
    assert result.std_error[0] == pytest.approx(np.sqrt(per_user @ per_user), rel=1e-10)
    assert result.n_clusters == 4
    unclustered = excursion_effect(Y8, A8, p, reference_probability=p_ref)
    assert unclustered.std_error[0] == pytest.approx(np.sqrt(influence @ influence), rel=1e-10)
    # t intervals: n_clusters - dim(θ) = 4 - 2 degrees of freedom
    t = excursion_effect(Y8, A8, p, reference_probability=p_ref, clusters=users, interval="t", level=0.9)
    half = stats.t(2).ppf(0.95) * np.sqrt(per_user @ per_user)
    assert t.df == 2 and t.effects["ci_upper"].iloc[0] == pytest.approx(m1 - m0 + half, rel=1e-10)


@pytest.mark.parametrize("p_ref", [0.3, 0.7])
def test_moderated_effect_is_the_difference_of_the_arms_weighted_regressions(p_ref):
    rng = np.random.default_rng(3)
    n = 40
    s = rng.normal(size=n)
    p = rng.uniform(0.2, 0.8, n)
    a = (rng.uniform(size=n) < p).astype(float)
    a[:2] = [0, 1]
    y = 1 + s + a * (0.5 - s) + rng.normal(size=n)
    beta, cov = np.zeros(2), np.zeros((2, 2))
    for arm, sign, w in ((1, 1, 1 / p), (0, -1, 1 / (1 - p))):      # weights up to a constant per arm
        rows = a == arm
        X, wr = np.column_stack([np.ones(rows.sum()), s[rows]]), w[rows]
        bread = X.T @ (wr[:, None] * X)
        coef = np.linalg.solve(bread, X.T @ (wr * y[rows]))
        score = (wr * (y[rows] - X @ coef))[:, None] * X
        beta += sign * coef
        cov += np.linalg.inv(bread) @ (score.T @ score) @ np.linalg.inv(bread)
    result = excursion_effect(y, a, p, moderators=pd.DataFrame({"stress": s}), reference_probability=p_ref)
    assert list(result.effects.index) == ["intercept", "stress"]
    np.testing.assert_allclose(result.beta, beta, rtol=1e-10)
    np.testing.assert_allclose(result.covariance, cov, rtol=1e-9)
    at = result.effect_at([[0.0], [1.5]])
    np.testing.assert_allclose(at["estimate"], [beta[0], beta[0] + 1.5 * beta[1]], rtol=1e-10)
    assert at["std_error"].iloc[1] == pytest.approx(np.sqrt(cov[0, 0] + 3 * cov[0, 1] + 2.25 * cov[1, 1]))


# ---------------------------------------------------------------- simulated micro-randomised trials

@pytest.mark.parametrize("control", ["moderator", "intercept only"])
def test_unbiased_and_covers_with_thirty_participants(few_participants, control):
    """30 participants × 20 decisions, corrected sandwich by participant with t intervals (the paper's)."""
    data, users = few_participants
    options = {"control": np.zeros((data["Y"].shape[1], 0))} if control == "intercept only" else {}
    estimate, lower, upper = replicate(data, users, small_sample_correction=True, interval="t", **options)
    assert_unbiased_and_covers(estimate, lower, upper)


def test_plain_sandwich_covers_with_many_participants(many_participants):
    """300 participants × 10 decisions: the default (uncorrected sandwich, normal intervals) by participant."""
    data, users = many_participants
    assert_unbiased_and_covers(*replicate(data, users))


def test_regression_with_interactions_is_confounded_where_wcls_is_not(few_participants):
    """The reason WCLS exists: the history-dependent randomisation ties A_t to u_i through Y_{t-1}."""
    data, users = few_participants
    S, A, Y = data["S"], data["A"], data["Y"]
    X = np.stack([np.ones_like(S), S, A, A * S], axis=-1)                      # (R, n, 4)
    ols = np.linalg.solve(np.einsum("rni,rnj->rij", X, X), np.einsum("rni,rn->ri", X, Y)[..., None])[..., 0]
    ols_bias = ols[:, 2:].mean(axis=0) - BETA
    ols_mc_se = ols[:, 2:].std(axis=0, ddof=1) / np.sqrt(R)
    assert np.all(np.abs(ols_bias) > 10 * ols_mc_se), (ols_bias, ols_mc_se)  # measured ≈ (0.7, 0.3)
    wcls = np.array([excursion_effect(Y[r], A[r], data["P"][r], moderators=S[r]).beta for r in range(200)])
    assert np.all(np.abs(wcls.mean(axis=0) - BETA) < np.abs(ols_bias) / 5)


def test_ignoring_participants_under_covers(few_participants):
    """Participants' own treatment effects b_i correlate their decisions: intervals that treat decisions
    as independent are too narrow (measured 79% for β0 against 94% clustered; 400 replications put
    90% 5 Monte-Carlo sds above that)."""
    data, _ = few_participants
    _, lower, upper = replicate({k: v[:400] for k, v in data.items()}, None)
    coverage = ((lower <= BETA) & (BETA <= upper)).mean(axis=0)
    assert coverage[0] < 0.9, coverage


# ---------------------------------------------------------------- multi-arm logs

def test_arm_against_the_rest_from_full_or_chosen_probabilities():
    rng = np.random.default_rng(5)
    n = 300
    probs = rng.dirichlet(np.ones(3) * 3, n)
    actions = np.array([rng.choice(3, p=row) for row in probs])
    features = rng.normal(size=(n, 2))
    rewards = features[:, 0] + (actions == 2) * (0.4 + 0.3 * features[:, 1]) + rng.normal(size=n)
    a, p = binary_contrast(actions, probs, 2)
    np.testing.assert_array_equal(a, actions == 2)
    np.testing.assert_allclose(p, probs[:, 2])
    a12, p12 = binary_contrast(actions, probs, [1, 2])
    np.testing.assert_allclose(p12, probs[:, 1] + probs[:, 2])
    chosen = probs[np.arange(n), actions]
    with pytest.raises(ValidationError, match="treatment_probabilities"):
        binary_contrast(actions, chosen, 2)
    with pytest.raises(ValidationError, match="treatment_probabilities"):
        binary_contrast(actions, chosen, 2, num_actions=3)
    _, p_given = binary_contrast(actions, chosen, 2, treatment_probabilities=probs[:, 2])
    np.testing.assert_allclose(p_given, probs[:, 2])
    with pytest.raises(ValidationError, match="treatment_probabilities"):           # another arm's probability
        binary_contrast(actions, chosen, 2, treatment_probabilities=probs[:, 1])
    log = SimpleNamespace(features=features, actions=actions, rewards=rewards, propensities=probs)
    from_log = excursion_effect_from_log(log, 2, moderator_columns=[1])
    direct = excursion_effect(rewards, actions == 2, probs[:, 2], moderators=features[:, 1], control=features)
    pd.testing.assert_frame_equal(from_log.effects.reset_index(drop=True), direct.effects.reset_index(drop=True))
    assert list(from_log.effects.index) == ["intercept", "feature_1"]


def test_log_attributes_of_a_logged_study_are_used():
    """A ``LoggedStudy``-like log: chosen-action propensities, and optionally the full probabilities."""
    rng = np.random.default_rng(11)
    n = 200
    features = rng.normal(size=(n, 2))
    p1 = 1 / (1 + np.exp(-features[:, 0]))
    actions = (rng.uniform(size=n) < p1).astype(int)
    rewards = features[:, 1] + 0.5 * actions + rng.normal(size=n)
    chosen = np.where(actions == 1, p1, 1 - p1)
    direct = excursion_effect(rewards, actions, p1, moderators=features[:, 0], control=features)
    two_arms = SimpleNamespace(features=features, actions=actions, rewards=rewards, propensities=chosen,
                               num_actions=2, action_probabilities=None, feature_names=("stress", "steps"))
    from_log = excursion_effect_from_log(two_arms, 1, moderator_columns=[0])
    np.testing.assert_allclose(from_log.beta, direct.beta, rtol=1e-12)
    assert list(from_log.effects.index) == ["intercept", "stress"]
    assert list(from_log.control.index) == ["intercept", "stress", "steps"]
    three_arms = SimpleNamespace(features=features, actions=actions, rewards=rewards, propensities=chosen,
                                 num_actions=3, action_probabilities=np.column_stack([1 - p1, p1, 0 * p1]))
    np.testing.assert_allclose(excursion_effect_from_log(three_arms, 1, moderator_columns=[0]).beta, direct.beta)
    with pytest.raises(ValidationError, match="treatment_probabilities"):
        excursion_effect_from_log(SimpleNamespace(**{**vars(three_arms), "action_probabilities": None}), 1)


def test_two_arms_need_only_the_chosen_propensity():
    actions = np.array([0, 1, 1, 0, 1])
    chosen = np.array([0.3, 0.6, 0.8, 0.9, 0.5])
    a, p = binary_contrast(actions, chosen, 1, num_actions=2)
    np.testing.assert_allclose(p, [0.7, 0.6, 0.8, 0.1, 0.5])
    a0, p0 = binary_contrast(actions, chosen, 0, num_actions=2)
    np.testing.assert_allclose(p0, 1 - p)
    np.testing.assert_array_equal(a0, 1 - a)


# ---------------------------------------------------------------- validation

@pytest.mark.parametrize("kwargs, match", [
    ({"treatment_probability": [0.5, 0.0, 0.5, 0.5]}, "treatment_probability.*undefined"),
    ({"treatment_probability": [0.5, 1.0, 0.5, 0.5]}, "treatment_probability.*strictly"),
    ({"treatment_probability": [0.5, 0.5, 0.5]}, "treatment_probability.*shape"),
    ({"treatment": [0, 1, 2, 0]}, "treatment.*0, 1"),
    ({"treatment": [1, 1, 1, 1]}, "treatment.*both"),
    ({"outcomes": [1.0, np.nan, 0.0, 2.0]}, "outcomes.*finite"),
    ({"reference_probability": 1.2}, "reference_probability"),
    ({"moderators": np.ones((3, 1))}, "moderators.*shape"),
    ({"moderators": np.ones(4)}, "full column rank"),
    ({"clusters": [0, 0, 1]}, "clusters.*shape"),
    ({"clusters": [0, 0, 1, 1]}, "clusters.*more clusters"),
    ({"interval": "bootstrap"}, "interval"),
    ({"level": 95}, "level"),
])
def test_bad_input_names_the_argument(kwargs, match):
    args = {"outcomes": [1.0, 2.0, 0.5, 3.0], "treatment": [0, 1, 1, 0],
            "treatment_probability": [0.5, 0.4, 0.6, 0.5]} | kwargs
    with pytest.raises(ValidationError, match=match):
        excursion_effect(args.pop("outcomes"), args.pop("treatment"), args.pop("treatment_probability"), **args)


def test_bad_log_names_the_argument():
    with pytest.raises(ValidationError, match="log.*propensities"):
        excursion_effect_from_log(SimpleNamespace(features=np.ones((3, 1)), actions=[0, 1, 0], rewards=[1, 2, 3]), 1)
    log = SimpleNamespace(features=np.ones((3, 1)), actions=[0, 1, 0], rewards=[1.0, 2, 3],
                          propensities=np.array([[0.5, 0.5]] * 3))
    with pytest.raises(ValidationError, match="moderator_columns"):
        excursion_effect_from_log(log, 1, moderator_columns=[4])
    with pytest.raises(ValidationError, match="treated"):
        excursion_effect_from_log(log, "arm one")
    with pytest.raises(ValidationError, match="propensities.*sum"):
        binary_contrast([0, 1], [[0.5, 0.6], [0.5, 0.5]], 1)
