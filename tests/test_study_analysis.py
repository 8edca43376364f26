"""Off-policy evaluation (study.analysis) against oracles computed here, never by the package.

(a) a hand log (n = 4, K = 2, known propensities): IPW, SNIPW, their standard errors, the overlap
    diagnostics, and DM / DR with a constant outcome model, all written out by hand;
(b) a simulated logging process with analytic truth: x ~ N(0, I_2), K = 3, logger π₀(a|x) = softmax(βx),
    reward r = θ_aᵀ[1, x] + N(0, 1) (so DR's per-arm linear outcome model is well specified), target
    π(a|x) = softmax(γx). The truth V(π) = E_x Σ_a π(a|x) θ_aᵀ[1, x] is a Gauss–Hermite integral (80²
    nodes) in NumPy here. The estimators' means over R replications must lie within 3 Monte-Carlo
    standard errors of it and their 95% intervals must cover at 93–97%.
(c) exactly linear rewards: per-arm least squares recovers every arm's mean, so DM = DR = the truth
    at the logged contexts; a spy regressor proves that no decision's own row enters its prediction.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from numpy.polynomial.hermite_e import hermegauss
from sklearn.dummy import DummyRegressor
from sklearn.linear_model import LinearRegression

from structbandits import ValidationError
from structbandits.study import LoggedStudy, OverlapWarning, off_policy_value
from structbandits.study.analysis import parse_target

# ------------------------------------------------------------------ (a) the hand log
HAND = dict(features=[[0.1], [0.4], [-0.3], [0.9]], actions=[0, 1, 1, 0], rewards=[1.0, 2.0, 0.0, 3.0],
            propensities=[0.5, 0.25, 0.8, 0.6], num_actions=2)
HAND_TARGET = np.array([[0.2, 0.8], [0.5, 0.5], [1.0, 0.0], [0.3, 0.7]])


def test_ipw_and_snipw_on_a_hand_log():
    result = off_policy_value(LoggedStudy(**HAND), HAND_TARGET, estimators=("ipw", "snipw"))
    table = result.table.set_index("estimator")
    # weights π(a_i|x_i)/p_i = 0.2/0.5, 0.5/0.25, 0/0.8, 0.3/0.6 = 0.4, 2, 0, 0.5; w·r = 0.4, 4, 0, 1.5
    assert table.loc["ipw", "estimate"] == pytest.approx(5.9 / 4, abs=1e-12)
    assert table.loc["snipw", "estimate"] == pytest.approx(5.9 / 2.9, abs=1e-12)
    # IPW se: sample sd of 0.4, 4, 0, 1.5 (mean 1.475) over √4
    assert table.loc["ipw", "se"] == pytest.approx(np.sqrt((1.075**2 + 2.525**2 + 1.475**2 + 0.025**2) / 3) / 2, abs=1e-12)
    # SNIPW se: linearised terms w_i (r_i - V) / mean(w), V = 59/29, mean(w) = 0.725
    v = 59 / 29
    psi = np.array([0.4 * (1 - v), 2 * (2 - v), 0.0, 0.5 * (3 - v)]) / 0.725
    assert table.loc["snipw", "se"] == pytest.approx(np.sqrt(np.sum((psi - psi.mean()) ** 2) / 3) / 2, abs=1e-12)
    z = 1.959963984540054
    assert table.loc["ipw", "ci_low"] == pytest.approx(1.475 - z * table.loc["ipw", "se"], abs=1e-9)
    assert list(result.table["interval"]) == ["normal", "normal"]


def test_overlap_diagnostics_on_a_hand_log():
    logger = np.array([[0.5, 0.5], [0.75, 0.25], [0.2, 0.8], [0.6, 0.4]])
    study = LoggedStudy(**HAND, action_probabilities=logger)
    with pytest.warns(OverlapWarning, match="IPW is not to be trusted here; the doubly robust estimate is less affected"):
        overlap = off_policy_value(study, HAND_TARGET, estimators=("ipw",), tiny=0.3).overlap
    assert overlap.effective_sample_size == pytest.approx(2.9**2 / (0.4**2 + 2**2 + 0.5**2), abs=1e-12)
    assert overlap.ess_fraction == pytest.approx(2.9**2 / 4.41 / 4, abs=1e-12)
    assert overlap.max_weight == 2.0 and overlap.mean_weight == pytest.approx(0.725)
    assert overlap.share_tiny_propensities == 0.25            # 0.25 < 0.3
    # logger's probabilities below 0.3: (1, arm 1) and (2, arm 0), where the target puts 0.5 and 1.0
    assert overlap.target_mass_on_tiny == pytest.approx((0.5 + 1.0) / 4)


def test_dm_and_dr_with_a_constant_outcome_model_by_hand():
    # leave-one-out folds keep both arms in every training part, so q̂ = 1 for every decision and arm
    table = off_policy_value(LoggedStudy(**HAND), HAND_TARGET, estimators=("dm", "dr"), folds=4,
                             outcome_model=DummyRegressor(strategy="constant", constant=1.0)).table.set_index("estimator")
    assert table.loc["dm", "estimate"] == pytest.approx(1.0)
    # DR = 1 + mean(w (r - 1)) = 1 + (0.4·0 + 2·1 + 0·(-1) + 0.5·2) / 4
    assert table.loc["dr", "estimate"] == pytest.approx(1.75)
    assert table.loc["dr", "se"] == pytest.approx(np.std([1.0, 3.0, 1.0, 2.0], ddof=1) / 2)
    assert table.loc["dm", "se"] == 0.0


# ------------------------------------------------------------------ (b) the simulated logging process
BETA = np.array([[0.0, 0.0], [0.3, -0.15], [-0.2, 0.25]])          # logger's logits β_a·x
GAMMA = np.array([[0.5, 0.0], [-0.25, 0.5], [0.0, -0.5]])          # target's logits γ_a·x
THETA = np.array([[0.5, 1.0, -0.5], [1.0, -0.5, 0.5], [0.2, 0.3, 1.0]])  # E[r | x, a] = θ_a·[1, x]


def softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def true_value(gamma=GAMMA):
    """V(π) = E_x Σ_a π(a|x) θ_a·[1, x] for x ~ N(0, I_2), by 80 × 80 Gauss–Hermite nodes."""
    nodes, weights = hermegauss(80)
    weights = weights / weights.sum()
    x = np.stack(np.meshgrid(nodes, nodes, indexing="ij"), -1).reshape(-1, 2)
    mean = np.c_[np.ones(len(x)), x] @ THETA.T
    return float(np.sum(np.outer(weights, weights).ravel() * np.sum(softmax(x @ gamma.T) * mean, axis=1)))


def simulate(rng, shape, beta=BETA):
    """Logged (x, a, r, π₀(·|x)) for a batch ``shape`` of decisions (e.g. (R, n))."""
    x = rng.normal(size=(*shape, 2))
    logger = softmax(x @ beta.T)
    actions = (rng.random((*shape, 1)) > np.cumsum(logger, axis=-1)).sum(axis=-1)
    mean = np.concatenate([np.ones((*shape, 1)), x], axis=-1) @ THETA.T
    rewards = np.take_along_axis(mean, actions[..., None], -1)[..., 0] + rng.normal(size=shape)
    return x, actions, rewards, logger


def study_of(x, actions, rewards, logger, **extra):
    propensities = np.take_along_axis(logger, actions[..., None], -1)[..., 0]
    return LoggedStudy(features=x, actions=actions, rewards=rewards, propensities=propensities, num_actions=3, **extra)


def test_truth_by_quadrature_agrees_with_monte_carlo():
    x = np.random.default_rng(11).normal(size=(1_000_000, 2))
    values = np.sum(softmax(x @ GAMMA.T) * (np.c_[np.ones(len(x)), x] @ THETA.T), axis=1)
    assert abs(values.mean() - true_value()) < 4 * values.std() / 1000


def test_means_and_coverage_over_replications():
    """R = 1000 logs of n = 300. The coverage's Monte-Carlo sd at 95% is √(0.95·0.05/1000) = 0.69%, so
    93–97% is 2.9 sds either side. IPW and SNIPW cover ~94.5% at this n (8000 replications, skewed
    weights), inside the window. DR's outcome model (per-arm ridge, 2 folds) is fitted in every
    replication: ~7 ms each. DM's se ignores the outcome model's error, so its interval need not cover
    (it covered ~65% here); its mean is checked only (ridge's shrinkage bias is far below the MC SE)."""
    replications, n = 1000, 300
    rng = np.random.default_rng(2024)
    x, actions, rewards, logger = simulate(rng, (replications, n))
    target = softmax(x @ GAMMA.T)
    truth = true_value()
    names = ("ipw", "snipw", "dm", "dr")
    estimates, covered = np.empty((replications, 4)), np.empty((replications, 4), dtype=bool)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OverlapWarning)
        for i in range(replications):
            table = off_policy_value(study_of(x[i], actions[i], rewards[i], logger[i]), target[i], estimators=names,
                                     seed=i).table
            estimates[i] = table["estimate"]
            covered[i] = (table["ci_low"] <= truth) & (truth <= table["ci_high"])
    mc_se = estimates.std(axis=0, ddof=1) / np.sqrt(replications)
    for j, name in enumerate(names):
        assert abs(estimates[:, j].mean() - truth) < 3 * mc_se[j], (name, estimates[:, j].mean(), truth, mc_se[j])
        if name != "dm":
            assert 0.93 <= covered[:, j].mean() <= 0.97, (name, covered[:, j].mean())


def test_bootstrap_percentile_interval_agrees_with_the_normal_one_on_a_large_log():
    x, actions, rewards, logger = simulate(np.random.default_rng(5), (4000,))
    study = study_of(x, actions, rewards, logger)
    normal = off_policy_value(study, softmax(x @ GAMMA.T)).table.set_index("estimator")
    boot = off_policy_value(study, softmax(x @ GAMMA.T), bootstrap=2000).table.set_index("estimator")
    assert set(boot["interval"]) == {"bootstrap"}
    np.testing.assert_array_equal(boot["estimate"], normal["estimate"])
    for name in ("ipw", "snipw", "dm", "dr"):
        low, high, estimate = boot.loc[name, "ci_low"], boot.loc[name, "ci_high"], boot.loc[name, "estimate"]
        assert low < estimate < high, name
        half = normal.loc[name, "ci_high"] - normal.loc[name, "estimate"]
        assert abs(low - normal.loc[name, "ci_low"]) < 0.12 * half, name
        assert abs(high - normal.loc[name, "ci_high"]) < 0.12 * half, name
    again = off_policy_value(study, softmax(x @ GAMMA.T), bootstrap=2000).table
    np.testing.assert_array_equal(again["ci_low"], boot["ci_low"].to_numpy())
    # SNIPW, DM and DR are translation-equivariant (ridge leaves the intercept unpenalised): rewards + 10
    # move their estimates and, resample by resample, their bootstrap intervals by exactly 10; IPW's move
    # by 10 · mean(w) instead.
    shifted = off_policy_value(study_of(x, actions, rewards + 10.0, logger), softmax(x @ GAMMA.T),
                               bootstrap=2000).table.set_index("estimator")
    for name in ("snipw", "dm", "dr"):
        for column in ("estimate", "ci_low", "ci_high"):
            assert shifted.loc[name, column] == pytest.approx(boot.loc[name, column] + 10.0, abs=1e-9), (name, column)


# ------------------------------------------------------------------ (c) the outcome model
def test_per_arm_fits_recover_exactly_linear_rewards():
    rng = np.random.default_rng(3)
    x, actions, _, logger = simulate(rng, (200,))
    mean = np.c_[np.ones(200), x] @ THETA.T
    study = study_of(x, actions, mean[np.arange(200), actions], logger)
    target = softmax(x @ GAMMA.T)
    result = off_policy_value(study, target, estimators=("dm", "dr"), outcome_model=LinearRegression(), folds=3)
    np.testing.assert_allclose(result.outcome_predictions, mean, atol=1e-10)
    table = result.table.set_index("estimator")
    assert table.loc["dm", "estimate"] == pytest.approx(np.mean(np.sum(target * mean, axis=1)), abs=1e-10)
    assert table.loc["dr", "estimate"] == pytest.approx(table.loc["dm", "estimate"], abs=1e-10)
    assert sorted(np.bincount(result.fold)) == [66, 67, 67]


class TrainingRowSpy:
    """A regressor predicting how many of its training rows equal the query row."""

    def get_params(self, deep=True):
        return {}

    def set_params(self, **params):
        return self

    def fit(self, features, rewards):
        self.rows_ = np.asarray(features)
        return self

    def predict(self, features):
        return np.all(np.asarray(features)[:, None, :] == self.rows_[None], axis=-1).sum(axis=1).astype(float)


def test_cross_fitting_keeps_each_decision_out_of_its_own_fit_and_fills_untaken_arms():
    rng = np.random.default_rng(4)
    x, _, rewards, logger = simulate(rng, (60,))
    actions = rng.integers(0, 2, size=60)  # arm 2 never taken
    study = study_of(x, actions, rewards, logger)
    result = off_policy_value(study, "uniform", estimators=("dr",), outcome_model=TrainingRowSpy(), folds=3)
    np.testing.assert_array_equal(result.outcome_predictions[:, :2], 0.0)
    for fold in range(3):
        inside = result.fold == fold
        np.testing.assert_allclose(result.outcome_predictions[inside, 2], rewards[~inside].mean())


# ------------------------------------------------------------------ overlap warnings
def test_poor_overlap_warns_and_good_overlap_does_not():
    x, actions, rewards, logger = simulate(np.random.default_rng(6), (500,), beta=BETA * 25)  # near-deterministic
    with pytest.warns(OverlapWarning, match="IPW is not to be trusted here") as record:
        result = off_policy_value(study_of(x, actions, rewards, logger), softmax(x @ GAMMA.T))
    assert "effective sample size" in str(record[0].message) and result.overlap.ess_fraction < 0.1
    x, actions, rewards, logger = simulate(np.random.default_rng(6), (1000,))
    with warnings.catch_warnings():
        warnings.simplefilter("error", OverlapWarning)
        result = off_policy_value(study_of(x, actions, rewards, logger), softmax(x @ GAMMA.T))
    assert result.overlap.ess_fraction > 0.5 and result.overlap.problems() == []


def test_a_logger_that_always_takes_one_arm_warns_through_the_mean_weight():
    """The demo-log case: the logger took arm 0 with probability 0.999 every time; no propensity is
    tiny and the weights are all equal (ESS = n), but a uniform target's mean weight is 1/2.997, not 1."""
    study = LoggedStudy(features=np.arange(50.0)[:, None], actions=np.zeros(50), rewards=np.ones(50),
                        propensities=np.full(50, 0.999), num_actions=3)
    with pytest.warns(OverlapWarning, match="mean importance weight is 0.334"):
        result = off_policy_value(study, "uniform", estimators=("ipw", "dr"))
    assert result.overlap.ess_fraction == pytest.approx(1.0)


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("change, message", [
    (dict(target=np.full((4, 2), 0.4)), "target: expected probabilities summing to 1"),
    (dict(target=np.full((4, 3), 1 / 3)), r"target: expected shape \(4, 2\)"),
    (dict(target=lambda features: np.ones((len(features), 2))), r"target\(features\): expected probabilities summing"),
    (dict(target=lambda features: 1 / 0), "target: calling it on the features"),
    (dict(target="greedy"), "target: expected 'uniform'"),
    (dict(estimators=("ipw", "magic")), "estimators: expected distinct names"),
    (dict(bootstrap=5), "bootstrap: expected 0"),
    (dict(level=1.5), "level: expected a confidence level"),
    (dict(folds=1, estimators=("dr",)), "folds: expected an integer >= 2"),
    (dict(outcome_model=object(), estimators=("dm",)), "outcome_model: expected a scikit-learn regressor"),
    (dict(tiny=0.0), "tiny: expected a threshold"),
])
def test_bad_arguments_name_themselves(change, message):
    arguments = dict(target=HAND_TARGET) | change
    with pytest.raises(ValidationError, match=message):
        off_policy_value(LoggedStudy(**HAND), arguments.pop("target"), **arguments)


def test_parse_target():
    assert parse_target("uniform", 3) == "uniform"
    np.testing.assert_array_equal(parse_target("arm:2", 3)(np.zeros((2, 5))), [[0, 0, 1], [0, 0, 1]])
    assert parse_target("numpy:ones", 3) is np.ones
    for text, message in (("arm:3", "an arm in 0..2"), ("arm:x", "integer J"), ("greedy", "uniform, arm:J"),
                          ("no_such_module_xyz:f", "could not import"), ("numpy:pi", "to be a function")):
        with pytest.raises(ValidationError, match=f"--target: .*{message}"):
            parse_target(text, 3, name="--target")
