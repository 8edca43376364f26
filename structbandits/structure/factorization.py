"""Matrix factorisation of ratings into user and item embeddings by alternating least squares.

Observed ratings r_ui ≈ x_uᵀ v_i with ridge penalties (the meTS MovieLens recipe: rank 5, ridge 1,
20 iterations, factors initialised Uniform[-1, 1]):

    minimise  Σ_{(u,i) observed} (r_ui − x_uᵀ v_i)²  +  λ Σ_u ||x_u||²  +  λ Σ_i ||v_i||²

Each half-step is exact: with the items fixed, every user's row is the ridge solution
x_u = (Σ_i v_i v_iᵀ + λ I)⁻¹ Σ_i r_ui v_i over the items u rated (and symmetrically for items).
All rows are solved at once: the per-row Gram matrices and right-hand sides are accumulated with
one sparse incidence-matrix product and solved as a batch of Cholesky systems, so nothing loops
over users or items. Only observed entries enter the loss; ratings are not centred, so x_uᵀ v_i
predicts the rating itself (this is the reward scale of the MovieLens bandit).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
import scipy.sparse

from structbandits.errors import ValidationError, check_finite, check_integer, check_positive

__all__ = ["Factorization", "als_factorize", "ridge_rows"]


class Factorization(NamedTuple):
    """Result of ``als_factorize``.

    Attributes
    ----------
    user_embeddings : (U, r) one row per user, in ``user_ids`` order.
    item_embeddings : (I, r) one row per item, in ``item_ids`` order.
    user_ids, item_ids : (U,), (I,) the ids the rows belong to (sorted).
    train_rmse : (iterations,) RMSE on the training ratings after each full iteration.
    test_rmse : (iterations,) RMSE on the held-out ratings after each iteration (empty if none held out).
    heldout_rmse : the final held-out RMSE (NaN if nothing was held out).
    """

    user_embeddings: np.ndarray
    item_embeddings: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray
    train_rmse: np.ndarray
    test_rmse: np.ndarray
    heldout_rmse: float


def ridge_rows(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, fixed: np.ndarray, num_rows: int,
               regularization: float) -> np.ndarray:
    """One ALS half-step: every row's ridge regression on the fixed factors of the columns it observed.

    Parameters
    ----------
    rows, cols : (n,) integer indices of the observed entries (row in [0, num_rows), col into ``fixed``).
    values : (n,) observed values.
    fixed : (C, r) the factors held fixed (item factors when solving for users).
    num_rows : number of rows to solve for; rows without observations get the zero vector.
    regularization : ridge penalty λ > 0.

    Returns
    -------
    (num_rows, r) with row u equal to (F_uᵀ F_u + λ I)⁻¹ F_uᵀ y_u, F_u the fixed factors of u's entries.
    """
    rank = fixed.shape[1]
    incidence = scipy.sparse.csr_matrix((np.ones(len(rows)), (rows, np.arange(len(rows)))), shape=(num_rows, len(rows)))
    factors = fixed[cols]                                                    # (n, r)
    grams = incidence @ (factors[:, :, None] * factors[:, None, :]).reshape(len(rows), rank * rank)
    rhs = incidence @ (factors * values[:, None])                            # (num_rows, r)
    grams = grams.reshape(num_rows, rank, rank) + regularization * np.eye(rank)
    chol = np.linalg.cholesky(grams)
    # Two batched triangular solves with the Cholesky factor (no explicit inverse).
    half = np.linalg.solve(chol, rhs[:, :, None])
    return np.linalg.solve(np.swapaxes(chol, 1, 2), half)[:, :, 0]


def _rmse(users: np.ndarray, items: np.ndarray, rows: np.ndarray, cols: np.ndarray, values: np.ndarray) -> float:
    if len(values) == 0:
        return float("nan")
    predictions = np.einsum("nr,nr->n", users[rows], items[cols])
    return float(np.sqrt(np.mean((predictions - values) ** 2)))


def _check_ratings(ratings) -> pd.DataFrame:
    if not isinstance(ratings, pd.DataFrame):
        raise ValidationError(f"ratings: expected a pandas DataFrame with columns user_id, item_id, rating, "
                              f"got {type(ratings).__name__}")
    missing = [c for c in ("user_id", "item_id", "rating") if c not in ratings.columns]
    if missing:
        raise ValidationError(f"ratings: expected columns user_id, item_id, rating; missing {missing}")
    if len(ratings) == 0:
        raise ValidationError("ratings: expected at least one rating, got an empty DataFrame")
    check_finite("ratings['rating']", ratings["rating"].to_numpy())
    return ratings


def als_factorize(
    ratings: pd.DataFrame,
    rank: int = 5,
    *,
    regularization: float = 1.0,
    iterations: int = 20,
    test_fraction: float = 0.1,
    seed: int = 0,
    init_scale: float = 1.0,
) -> Factorization:
    """Factorise observed ratings into user and item embeddings by ridge ALS.

    Parameters
    ----------
    ratings : DataFrame with columns user_id, item_id, rating (e.g. ``load_movielens().ratings``).
    rank : embedding dimension r >= 1.
    regularization : ridge penalty λ > 0 on both factors.
    iterations : full iterations (users then items) >= 1.
    test_fraction : share of ratings held out for the held-out RMSE, in [0, 1).
    seed : seeds the split and the Uniform[-init_scale, init_scale] initialisation.
    init_scale : half-width of the initial factors (> 0).

    Returns
    -------
    Factorization; embeddings cover every user and item in ``ratings`` (one only held out keeps
    the zero vector the ridge gives it).
    """
    ratings = _check_ratings(ratings)
    rank = check_integer("rank", rank, minimum=1)
    regularization = float(check_positive("regularization", regularization))
    iterations = check_integer("iterations", iterations, minimum=1)
    test_fraction = float(check_finite("test_fraction", test_fraction))
    if not 0.0 <= test_fraction < 1.0:
        raise ValidationError(f"test_fraction: expected a value in [0, 1), got {test_fraction}")
    seed = check_integer("seed", seed, minimum=0)
    init_scale = float(check_positive("init_scale", init_scale))

    user_ids, user_index = np.unique(ratings["user_id"].to_numpy(), return_inverse=True)
    item_ids, item_index = np.unique(ratings["item_id"].to_numpy(), return_inverse=True)
    values = ratings["rating"].to_numpy(dtype=np.float64)
    held_out = np.random.default_rng([seed, 1]).random(len(values)) < test_fraction
    train, test = ~held_out, held_out

    rng = np.random.default_rng([seed, 2])
    users = rng.uniform(-init_scale, init_scale, (len(user_ids), rank))
    items = rng.uniform(-init_scale, init_scale, (len(item_ids), rank))
    train_rmse, test_rmse = [], []
    tu, ti, tv = user_index[train], item_index[train], values[train]
    for _ in range(iterations):
        users = ridge_rows(tu, ti, tv, items, len(user_ids), regularization)
        items = ridge_rows(ti, tu, tv, users, len(item_ids), regularization)
        train_rmse.append(_rmse(users, items, tu, ti, tv))
        if test.any():
            test_rmse.append(_rmse(users, items, user_index[test], item_index[test], values[test]))
    return Factorization(users, items, user_ids, item_ids, np.asarray(train_rmse), np.asarray(test_rmse),
                         test_rmse[-1] if test_rmse else float("nan"))
