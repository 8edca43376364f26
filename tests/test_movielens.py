"""MovieLens: the loader (shipped wheel, user folders, missing data) and the MovieLens bandit."""

import importlib.metadata

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from structbandits.agents import lin_ts, mets
from structbandits.agents.mets import validate_mixed_effect_prior
from structbandits.data import movielens as movielens_module
from structbandits.data.movielens import GENRES, MOVIELENS_INSTALL_HINT, load_movielens
from structbandits.envs.movielens import embedding_bandit, movielens_bandit, movielens_structure
from structbandits.errors import ValidationError
from structbandits.experiments import run_experiment
from structbandits.models import marginal_action_prior
from structbandits.structure.factorization import als_factorize
from structbandits.structure.gmm import GaussianMixtureStructure, check_mixed_effect_prior


def recbole_installed() -> bool:
    try:
        importlib.metadata.distribution("recbole")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


needs_wheel = pytest.mark.skipif(not recbole_installed(),
                                 reason="MovieLens-100K ships in recbole==1.2.1: pip install --no-deps recbole==1.2.1")


@pytest.fixture(scope="module")
def ml100k():
    return load_movielens()


# --- the shipped MovieLens-100K ------------------------------------------------------------------------

@needs_wheel
def test_shipped_movielens_100k_has_the_published_counts(ml100k):
    ratings, items = ml100k.ratings, ml100k.items
    assert len(ratings) == 100_000
    assert ratings["user_id"].nunique() == 943
    assert ratings["item_id"].nunique() == 1682 == len(items)
    assert list(ratings.columns) == ["user_id", "item_id", "rating", "timestamp"]
    assert set(ratings["rating"].unique()) == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert list(items.columns) == ["item_id", "title", "year", *GENRES]
    # Every user of MovieLens-100K rated at least 20 movies (the release's inclusion rule).
    assert ratings.groupby("user_id").size().min() >= 20
    # u.item's genre counts (e.g. 725 dramas, 505 comedies, 2 unknown); every movie has a genre.
    flags = ml100k.genre_flags()
    assert flags.shape == (1682, 19) and np.all(flags.sum(axis=1) >= 1)
    counts = dict(zip(GENRES, flags.sum(axis=0).astype(int)))
    assert (counts["Drama"], counts["Comedy"], counts["unknown"]) == (725, 505, 2)
    toy_story = items.loc[items["item_id"] == 1].iloc[0]
    assert toy_story["title"] == "Toy Story" and toy_story["year"] == 1995
    assert {g for g in GENRES if toy_story[g]} == {"Animation", "Children's", "Comedy"}


@needs_wheel
def test_loader_reads_the_wheel_without_importing_recbole():
    import sys

    load_movielens()
    assert "recbole" not in sys.modules


# --- user folders ---------------------------------------------------------------------------------------

def write_100k(folder):
    (folder / "u.data").write_text("1\t10\t4\t881250949\n2\t10\t3\t881250950\n2\t20\t5\t881250951\n")
    flags_10 = ["0"] * 19
    flags_10[GENRES.index("Comedy")] = flags_10[GENRES.index("Romance")] = "1"
    flags_20 = ["0"] * 19
    flags_20[GENRES.index("Sci-Fi")] = "1"
    lines = [f"10|Amélie (2001)|01-Jan-2001||http://x|{'|'.join(flags_10)}",
             f"20|Alien (1979)|01-Jan-1979||http://y|{'|'.join(flags_20)}"]
    (folder / "u.item").write_bytes(("\n".join(lines) + "\n").encode("latin-1"))


def write_1m(folder):
    (folder / "ratings.dat").write_text("1::10::4::978300760\n1::20::2::978300761\n3::20::5::978300762\n")
    (folder / "movies.dat").write_bytes(
        "10::Amélie (2001)::Comedy|Romance\n20::Alien (1979)::Horror|Sci-Fi\n30::Nothing (1990)::\n".encode("latin-1"))


def test_loader_reads_a_100k_folder(tmp_path):
    write_100k(tmp_path)
    data = load_movielens(tmp_path)
    assert data.ratings["user_id"].tolist() == [1, 2, 2] and data.ratings["rating"].tolist() == [4.0, 3.0, 5.0]
    assert data.ratings["timestamp"].iloc[0] == 881250949
    assert data.items["title"].tolist() == ["Amélie", "Alien"] and data.items["year"].tolist() == [2001, 1979]
    np.testing.assert_array_equal(data.genre_flags([20, 10]),
                                  np.eye(19)[[GENRES.index("Sci-Fi")]].tolist()
                                  + [np.eye(19)[GENRES.index("Comedy")] + np.eye(19)[GENRES.index("Romance")]])


def test_loader_reads_a_1m_folder(tmp_path):
    write_1m(tmp_path)
    data = load_movielens(str(tmp_path))
    assert len(data.ratings) == 3 and data.ratings["item_id"].tolist() == [10, 20, 20]
    assert data.items["item_id"].tolist() == [10, 20, 30]
    assert data.items["title"].tolist() == ["Amélie", "Alien", "Nothing"]
    flags = data.genre_flags()
    assert {GENRES[j] for j in np.flatnonzero(flags[1])} == {"Horror", "Sci-Fi"}
    assert {GENRES[j] for j in np.flatnonzero(flags[2])} == {"unknown"}  # listed without genres


def test_loader_rejects_unknown_genres_and_dangling_ratings(tmp_path):
    write_1m(tmp_path)
    (tmp_path / "movies.dat").write_text("10::A (2001)::Comedy|Space Opera\n20::B (1979)::Horror\n")
    with pytest.raises(ValidationError, match="Space Opera"):
        load_movielens(tmp_path)
    (tmp_path / "movies.dat").write_text("10::A (2001)::Comedy\n")
    with pytest.raises(ValidationError, match=r"missing from .*movies.dat: \[20\]"):
        load_movielens(tmp_path)


# --- missing data -----------------------------------------------------------------------------------------

def test_missing_folder_says_how_to_get_the_data(tmp_path):
    with pytest.raises(ValidationError, match="pip install --no-deps recbole==1.2.1"):
        load_movielens(tmp_path / "nowhere")
    with pytest.raises(ValidationError, match="u.data \\+ u.item, ratings.dat \\+ movies.dat"):
        load_movielens(tmp_path)


def test_missing_wheel_says_how_to_get_the_data(monkeypatch):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(movielens_module.importlib.metadata, "distribution", not_installed)
    with pytest.raises(ValidationError) as error:
        load_movielens()
    assert "recbole wheel is not installed" in str(error.value)
    assert MOVIELENS_INSTALL_HINT in str(error.value)


# --- the bandit --------------------------------------------------------------------------------------------

def synthetic_embedding_bandit(rewards="linear", contexts="shared", k=6, d=3):
    rng = np.random.default_rng(0)
    users, items = rng.normal(size=(40, d)), rng.normal(size=(30, d)) + 1.0
    prior = GaussianMixtureStructure(2).fit(items).prior(items[:k])
    env = embedding_bandit(users, items[:k], prior, rewards=rewards, context_pool=10, contexts=contexts)
    return env, users, items[:k]


def test_embedding_bandit_draws_users_as_contexts_and_movies_as_arms():
    env, users, arms = synthetic_embedding_bandit()
    state = env.init(jax.random.PRNGKey(3))
    np.testing.assert_array_equal(state.theta, arms)
    pool_rows = [int(np.flatnonzero(np.all(users == x, axis=1))[0]) for x in np.asarray(state.context_pool)]
    assert len(set(pool_rows)) == 10  # distinct users from the embedding table
    x = env.context(state, jax.random.PRNGKey(4))
    assert x.shape == env.context_shape == (3,)
    assert any(np.array_equal(x, row) for row in np.asarray(state.context_pool))
    np.testing.assert_allclose(env.mean_rewards(state, x), arms @ np.asarray(x))
    # Linear rewards: mean x'θ_a and standard deviation σ = 0.5.
    draws = jax.vmap(lambda key: env.reward(state, key, x, 2))(jax.random.split(jax.random.PRNGKey(5), 4000))
    assert abs(float(draws.mean()) - float(arms[2] @ x)) < 4 * 0.5 / np.sqrt(4000)
    assert abs(float(draws.std()) - 0.5) < 0.03
    assert env.model.model == "mixed_effect_linear" and env.model.params["noise_scale"] == 0.5
    validate_mixed_effect_prior(*(env.model.params[n] for n in ("mixing", "effect_mean", "effect_cov", "action_cov")))


def test_embedding_bandit_per_arm_contexts_and_logistic_rewards():
    env, _, arms = synthetic_embedding_bandit(rewards="logistic", contexts="per_arm")
    state = env.init(jax.random.PRNGKey(0))
    x = env.context(state, jax.random.PRNGKey(1))
    assert x.shape == env.context_shape == (6, 3)
    np.testing.assert_allclose(env.mean_rewards(state, x), 1 / (1 + np.exp(-np.sum(arms * np.asarray(x), axis=1))))
    draws = jax.vmap(lambda key: env.reward(state, key, x, 0))(jax.random.split(jax.random.PRNGKey(2), 4000))
    assert set(np.unique(draws)) <= {0.0, 1.0}
    p = float(env.mean_rewards(state, x)[0])
    assert abs(float(draws.mean()) - p) < 4 * np.sqrt(p * (1 - p) / 4000) + 1e-3
    assert env.model.model == "mixed_effect_logistic" and "noise_scale" not in env.model.params


def test_embedding_bandit_validates_its_arguments():
    rng = np.random.default_rng(0)
    users, items = rng.normal(size=(5, 2)), rng.normal(size=(8, 2))
    prior = GaussianMixtureStructure(2).fit(items).prior(items[:3])
    with pytest.raises(ValidationError, match="context_pool"):
        embedding_bandit(users, items[:3], prior, context_pool=6)
    with pytest.raises(ValidationError, match="prior"):
        embedding_bandit(users, items[:4], prior)
    with pytest.raises(ValidationError, match="noise_scale"):
        embedding_bandit(users, items[:3], prior, rewards="logistic", noise_scale=1.0)
    with pytest.raises(ValidationError, match="contexts"):
        embedding_bandit(users, items[:3], prior, contexts="all")


@needs_wheel
@pytest.mark.parametrize("structure", ["gmm", "onehot", "genres"])
def test_movielens_bandit_structures(structure, ml100k):
    built = movielens_structure(12, structure=structure, structure_seed=1)
    env = movielens_bandit(12, structure=structure, structure_seed=1)
    items = built.factorization.item_embeddings
    state = env.init(jax.random.PRNGKey(0))
    np.testing.assert_array_equal(state.theta, items[built.arms])
    np.testing.assert_array_equal(built.arm_item_ids, built.factorization.item_ids[built.arms])
    mixing = env.model.params["mixing"]
    np.testing.assert_allclose(mixing.sum(axis=1), 1.0)
    if structure == "genres":
        flags = ml100k.genre_flags(built.arm_item_ids)
        np.testing.assert_allclose(mixing, flags / flags.sum(axis=1, keepdims=True))
    elif structure == "onehot":
        assert set(np.unique(mixing)) <= {0.0, 1.0} and mixing.shape == (12, 5)
    else:
        np.testing.assert_allclose(mixing, built.learner.gmm_.predict_proba(items[built.arms]))
    # The context is a user's embedding: x'θ predicts ratings on the 1..5 scale on average.
    x = env.context(state, jax.random.PRNGKey(1))
    assert 1.0 < float(jnp.mean(env.mean_rewards(state, x))) < 6.0


@needs_wheel
def test_movielens_bandit_runs_mets():
    env = movielens_bandit(8, 3, context_pool=20)
    params = env.model.params
    prior = [params[n] for n in ("mixing", "effect_mean", "effect_cov", "action_cov")]
    results = run_experiment({"mets": mets(*prior, params["noise_scale"])}, env, horizon=30, num_seeds=2,
                             progress=False)
    assert len(results) == 2 * 30 and np.all(results["expected_regret"] >= -1e-12)
    # The structure-blind baseline gets the marginal prior of each arm under the declared model.
    lin_ts(*marginal_action_prior(*map(jnp.asarray, prior)), params["noise_scale"])


@needs_wheel
def test_movielens_bandit_validates_its_arguments():
    with pytest.raises(ValidationError, match="structure"):
        movielens_bandit(5, structure="tags")
    with pytest.raises(ValidationError, match="num_effects"):
        movielens_bandit(5, 3, structure="genres")
    with pytest.raises(ValidationError, match="num_actions"):
        movielens_bandit(1)


# --- structure learned on the real embeddings -------------------------------------------------------------

@needs_wheel
def test_als_and_the_learned_prior_on_movielens_100k(ml100k):
    fit = als_factorize(ml100k.ratings, 5)
    assert fit.user_embeddings.shape == (943, 5) and fit.item_embeddings.shape == (1682, 5)
    assert np.all(np.diff(fit.train_rmse) <= 1e-9)
    # Better out of sample than predicting every rating by the global mean.
    assert fit.heldout_rmse < ml100k.ratings["rating"].std()
    learner = GaussianMixtureStructure("auto").fit(fit.item_embeddings)
    assert sorted(learner.bic_) == list(range(1, 11))
    assert learner.num_effects_ == min(learner.bic_, key=learner.bic_.get)
    prior = check_mixed_effect_prior(*learner.prior(fit.item_embeddings[:50]))
    assert prior.mixing.shape == (50, learner.num_effects_)


@needs_wheel
def test_movielens_bandit_can_choose_the_number_of_effects_by_bic():
    built = movielens_structure(10, "auto", structure_seed=2)
    assert built.prior.mixing.shape == (10, built.learner.num_effects_)
    env = movielens_bandit(10, "auto", structure_seed=2, rewards="logistic")
    assert env.model.model == "mixed_effect_logistic"
    np.testing.assert_allclose(env.model.params["mixing"], built.prior.mixing)
