"""Structure learning: ridge ALS against closed forms, the Gaussian-mixture prior against known mixtures."""

import itertools

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from structbandits.errors import ValidationError
from structbandits.structure.factorization import als_factorize, ridge_rows
from structbandits.structure.gmm import (
    GaussianMixtureStructure,
    MembershipStructure,
    check_mixed_effect_prior,
    onehot,
)


def ratings_frame(matrix, mask):
    users, items = np.nonzero(mask)
    return pd.DataFrame({"user_id": users + 100, "item_id": items + 7, "rating": matrix[users, items]})


def low_rank(num_users, num_items, rank, seed):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(num_users, rank)) @ rng.normal(size=(rank, num_items))


# --- ALS -----------------------------------------------------------------------------------------

def test_ridge_rows_is_the_closed_form_ridge_solution_of_every_row():
    rng = np.random.default_rng(0)
    num_rows, num_cols, rank, lam = 12, 9, 3, 0.7
    mask = rng.random((num_rows, num_cols)) < 0.5
    mask[0] = False  # a row without observations gets the ridge solution with no data: zero
    values = rng.normal(size=(num_rows, num_cols))
    fixed = rng.normal(size=(num_cols, rank))
    rows, cols = np.nonzero(mask)
    solved = ridge_rows(rows, cols, values[rows, cols], fixed, num_rows, lam)
    for u in range(num_rows):
        f = fixed[mask[u]]
        expected = np.linalg.solve(f.T @ f + lam * np.eye(rank), f.T @ values[u, mask[u]])
        np.testing.assert_allclose(solved[u], expected, rtol=1e-10, atol=1e-12)


def test_each_als_half_step_minimises_its_ridge_objective():
    # With the other factor fixed, the half-step is the exact minimiser: perturbing any row raises the loss.
    rng = np.random.default_rng(1)
    mask = rng.random((15, 10)) < 0.6
    values = low_rank(15, 10, 2, 1) + 0.1 * rng.normal(size=(15, 10))
    rows, cols = np.nonzero(mask)
    items = rng.normal(size=(10, 2))
    lam = 0.5

    def loss(users):
        residual = values[rows, cols] - np.sum(users[rows] * items[cols], axis=1)
        return np.sum(residual**2) + lam * np.sum(users**2)

    users = ridge_rows(rows, cols, values[rows, cols], items, 15, lam)
    for _ in range(20):
        assert loss(users + 1e-3 * rng.normal(size=users.shape)) > loss(users)


def test_als_recovers_a_fully_observed_low_rank_matrix():
    truth = low_rank(30, 20, 3, 2)
    fit = als_factorize(ratings_frame(truth, np.ones_like(truth, bool)), 3, regularization=1e-9, iterations=100,
                        test_fraction=0.0)
    reconstruction = fit.user_embeddings @ fit.item_embeddings.T
    assert np.linalg.norm(reconstruction - truth) / np.linalg.norm(truth) < 1e-4
    np.testing.assert_array_equal(fit.user_ids, np.arange(30) + 100)
    np.testing.assert_array_equal(fit.item_ids, np.arange(20) + 7)
    assert np.isnan(fit.heldout_rmse) and fit.test_rmse.size == 0


def test_als_training_rmse_decreases_and_heldout_rmse_reaches_the_noise_level():
    rng = np.random.default_rng(3)
    noise = 0.1
    values = low_rank(80, 60, 2, 3) + noise * rng.normal(size=(80, 60))
    fit = als_factorize(ratings_frame(values, rng.random((80, 60)) < 0.6), 2, regularization=0.1, iterations=15,
                        test_fraction=0.2, seed=1)
    assert fit.train_rmse.shape == fit.test_rmse.shape == (15,)
    assert np.all(np.diff(fit.train_rmse) <= 1e-9)
    assert fit.train_rmse[-1] < 0.5 * fit.train_rmse[0]
    # Out of sample error of a well-specified rank-2 fit: the noise plus a small estimation error.
    assert noise * 0.8 < fit.heldout_rmse < noise * 1.5
    assert fit.heldout_rmse == fit.test_rmse[-1]


@pytest.mark.parametrize(("kwargs", "argument"), [
    ({"rank": 0}, "rank"), ({"regularization": 0.0}, "regularization"), ({"iterations": 0}, "iterations"),
    ({"test_fraction": 1.0}, "test_fraction"), ({"seed": -1}, "seed"),
])
def test_als_rejects_bad_arguments(kwargs, argument):
    frame = ratings_frame(np.ones((3, 3)), np.ones((3, 3), bool))
    with pytest.raises(ValidationError, match=argument):
        als_factorize(frame, **kwargs)


def test_als_rejects_bad_ratings():
    with pytest.raises(ValidationError, match="ratings"):
        als_factorize(pd.DataFrame({"user_id": [1], "item_id": [2]}))
    with pytest.raises(ValidationError, match="ratings"):
        als_factorize(pd.DataFrame({"user_id": [1], "item_id": [2], "rating": [np.nan]}))
    with pytest.raises(ValidationError, match="ratings"):
        als_factorize(np.ones((3, 3)))


# --- Gaussian-mixture structure ----------------------------------------------------------------------

MEANS = np.array([[0.0, 0.0, 0.0], [6.0, 0.0, 1.0], [0.0, 6.0, -1.0], [5.0, 5.0, 5.0]])


def mixture_sample(means, per_component, scale, seed):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(means)), per_component)
    return means[labels] + scale * rng.normal(size=(len(labels), means.shape[1])), labels


def matched_error(estimated, truth):
    """Largest distance between true and estimated means under the best matching of components."""
    return min(np.abs(estimated[list(perm)] - truth).max() for perm in itertools.permutations(range(len(truth))))


@pytest.mark.parametrize("covariance_type", ["diag", "full", "spherical"])
def test_gmm_recovers_the_means_of_a_known_mixture(covariance_type):
    x, _ = mixture_sample(MEANS, 300, 0.5, 0)
    learner = GaussianMixtureStructure(4, covariance_type=covariance_type).fit(x)
    # Each mean is estimated from ~300 points with sd 0.5: standard error ≈ 0.03 per coordinate.
    assert matched_error(learner.effect_mean_, MEANS) < 0.15
    assert learner.num_effects_ == 4 and list(learner.bic_) == [4]


@pytest.mark.parametrize(("num_components", "covariance_type"), [(2, "diag"), (3, "diag"), (4, "full")])
def test_bic_chooses_the_true_number_of_well_separated_components(num_components, covariance_type):
    x, _ = mixture_sample(MEANS[:num_components], 200, 0.5, num_components)
    learner = GaussianMixtureStructure("auto", covariance_type=covariance_type, max_effects=7).fit(x)
    assert sorted(learner.bic_) == list(range(1, 8))
    assert learner.num_effects_ == num_components
    assert learner.effect_mean_.shape == (num_components, 3)


def test_gmm_prior_is_valid_and_splits_the_embedding_variance():
    x, labels = mixture_sample(MEANS, 100, 0.7, 5)
    learner = GaussianMixtureStructure(4, effect_share=0.6).fit(x)
    arms = x[::37]
    prior = learner.prior(arms)
    k, num_effects, d = len(arms), 4, 3
    assert prior.mixing.shape == (k, num_effects) and prior.effect_cov.shape == (num_effects * d,) * 2
    np.testing.assert_allclose(prior.mixing.sum(axis=1), 1.0)
    assert np.all(prior.mixing >= 0)
    np.testing.assert_allclose(prior.mixing, learner.gmm_.predict_proba(arms))
    np.testing.assert_allclose(prior.effect_mean, learner.gmm_.means_)
    assert np.all(np.linalg.eigvalsh(prior.effect_cov) > 0) and np.all(np.linalg.eigvalsh(prior.action_cov) > 0)
    # Σ_Ψ = 0.6 · I_L ⊗ diag(var), Σ0 = 0.4 · diag(var): effect block + action = the embedding variance.
    variance = np.var(x, axis=0)
    for l, m in itertools.product(range(num_effects), repeat=2):
        block = prior.effect_cov[l * d:(l + 1) * d, m * d:(m + 1) * d]
        np.testing.assert_allclose(block, 0.6 * np.diag(variance) if l == m else 0.0)
    np.testing.assert_allclose(prior.effect_cov[:d, :d] + prior.action_cov, np.diag(variance))
    params = prior.params()
    assert params["action_cov"].shape == (k, d, d)
    # Well-separated clusters: responsibilities are nearly one-hot and agree with the generating labels.
    hard = GaussianMixtureStructure(4, hard=True).fit(x)
    assignments = hard.transform(x)
    assert set(np.unique(assignments)) == {0.0, 1.0}
    np.testing.assert_array_equal(assignments.argmax(axis=1), hard.predict(x))
    contingency = pd.crosstab(labels, hard.predict(x)).to_numpy()
    assert np.all(contingency.max(axis=1) >= 0.95 * 100)


def test_gmm_validates_its_inputs():
    x, _ = mixture_sample(MEANS, 20, 0.5, 0)
    with pytest.raises(ValidationError, match="covariance_type"):
        GaussianMixtureStructure(2, covariance_type="banded").fit(x)
    with pytest.raises(ValidationError, match="effect_share"):
        GaussianMixtureStructure(2, effect_share=1.0).fit(x)
    with pytest.raises(ValidationError, match="num_effects"):
        GaussianMixtureStructure(0).fit(x)
    with pytest.raises(ValidationError, match="item_embeddings"):
        GaussianMixtureStructure(2).fit(np.ones(5))
    with pytest.raises(ValidationError, match="fit"):
        GaussianMixtureStructure(2).prior(x)
    fitted = GaussianMixtureStructure(2).fit(x)
    with pytest.raises(ValidationError, match=r"expected shape \(n, 3\)"):
        fitted.prior(x[:, :2])


# --- Known memberships (genres) ------------------------------------------------------------------------

def test_membership_prior_uses_normalised_multi_hot_weights_and_weighted_group_means():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(40, 3))
    flags = (rng.random((40, 5)) < 0.4).astype(float)
    flags[:, 4] = 0.0  # a group nobody belongs to is dropped
    flags[flags.sum(axis=1) == 0, 0] = 1.0
    learner = MembershipStructure().fit(x, flags)
    np.testing.assert_array_equal(learner.groups_, [0, 1, 2, 3])
    b = flags[:, :4] / flags[:, :4].sum(axis=1, keepdims=True)
    np.testing.assert_allclose(learner.mixing_, b)
    for l in range(4):
        expected = sum(b[i, l] * x[i] for i in range(40)) / b[:, l].sum()
        np.testing.assert_allclose(learner.effect_mean_[l], expected)
    prior = learner.prior(flags[:6])
    np.testing.assert_allclose(prior.mixing, b[:6])
    assert prior.effect_cov.shape == (12, 12)
    hard = MembershipStructure(hard=True).fit(x, flags)
    np.testing.assert_array_equal(hard.mixing_, onehot(np.argmax(flags[:, :4], axis=1), 4))
    np.testing.assert_allclose(hard.effect_mean_, learner.effect_mean_)


def test_membership_structure_rejects_items_without_a_group():
    x = np.random.default_rng(0).normal(size=(4, 2))
    flags = np.eye(4)[:, :3]
    with pytest.raises(ValidationError, match="row 3 belongs to none"):
        MembershipStructure().fit(x, flags)
    with pytest.raises(ValidationError, match="memberships"):
        MembershipStructure().fit(x, -np.eye(4))
    with pytest.raises(ValidationError, match="memberships"):
        MembershipStructure().fit(x, np.eye(3))


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 6), st.booleans())
def test_membership_mixing_rows_lie_on_the_simplex(seed, num_groups, hard):
    rng = np.random.default_rng(seed)
    weights = rng.random((12, num_groups)) * (rng.random((12, num_groups)) < 0.5)
    weights[np.arange(12), rng.integers(0, num_groups, 12)] += 1.0
    prior = MembershipStructure(hard=hard).fit(rng.normal(size=(12, 2)), weights).prior(weights)
    check_mixed_effect_prior(*prior)
    assert np.all(prior.mixing >= 0)


def test_check_mixed_effect_prior_rejects_invalid_priors():
    mean, cov, action = np.zeros((2, 2)), np.eye(4), np.eye(2)
    with pytest.raises(ValidationError, match="mixing"):
        check_mixed_effect_prior(np.array([[0.7, 0.7]]), mean, cov, action)
    with pytest.raises(ValidationError, match="mixing"):
        check_mixed_effect_prior(np.array([[1.0, 0.0, 0.0]]), mean, cov, action)
    with pytest.raises(ValidationError, match="effect_cov"):
        check_mixed_effect_prior(np.array([[1.0, 0.0]]), mean, -np.eye(4), action)
    with pytest.raises(ValidationError, match="effect_cov"):
        check_mixed_effect_prior(np.array([[1.0, 0.0]]), mean, np.eye(3), action)
    with pytest.raises(ValidationError, match="action_cov"):
        check_mixed_effect_prior(np.array([[1.0, 0.0]]), mean, cov, np.zeros((2, 2)))
