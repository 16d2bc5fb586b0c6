"""Classical baselines that the text and recommender models are measured against, in the same
tables and JSON: bag-of-n-grams logistic regression (text), popularity and biased matrix
factorisation (ratings). Each is seeded and deterministic.

Example:
    >>> clf = NgramLogisticRegression(level="chars", min_count=1, epochs=50).fit(["ANNA", "BOB", "EMMA", "TOM"],
    ...                                                                        [0, 1, 0, 1])
    >>> clf.predict(["ANNA", "BOB"]).tolist()
    [0, 1]
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from ._checks import check_int, check_seed
from .data.text import _texts
from .errors import ConfigError, DataError, ShapeError

__all__ = ["BagOfNgrams", "NgramLogisticRegression", "Popularity", "MatrixFactorization"]


class BagOfNgrams:
    """Binary bag-of-n-grams features: character n-grams of ``^text$`` (``level="chars"``; the
    markers let a model see beginnings and endings) or word n-grams (``level="words"``, the words
    of `Tokenizer("words")`), of every length in `ngrams` (inclusive range). The vocabulary keeps the
    n-grams seen at least `min_count` times while fitting, the `max_features` most frequent (ties by
    the n-gram itself)."""

    def __init__(self, level: str = "words", *, ngrams=(1, 2), min_count: int = 2, max_features: int = 20_000):
        from .data.text import Tokenizer

        if level not in ("chars", "words"):
            raise ConfigError(f"BagOfNgrams: expected level 'chars' or 'words', found {level!r}")
        if not isinstance(ngrams, (tuple, list)) or len(ngrams) != 2:
            raise ConfigError(f"BagOfNgrams: expected ngrams (low, high), found {ngrams!r}")
        lo, hi = (check_int(n, "n-gram length", "BagOfNgrams") for n in ngrams)
        if hi < lo:
            raise ConfigError(f"BagOfNgrams: expected ngrams (low, high) with low <= high, found {ngrams}")
        self.level, self.ngrams = level, (lo, hi)
        self.min_count = check_int(min_count, "min_count", "BagOfNgrams")
        self.max_features = check_int(max_features, "max_features", "BagOfNgrams")
        self._words = Tokenizer("words")
        self.vocabulary: dict[str, int] = {}

    def grams(self, text: str) -> set[str]:
        """The distinct n-grams of one text."""
        if not isinstance(text, str):
            raise DataError(f"BagOfNgrams: expected texts of type str, found {type(text).__name__}")
        tokens = list(f"^{text}$") if self.level == "chars" else self._words.split(text)
        sep = "" if self.level == "chars" else " "
        return {sep.join(tokens[i:i + n]) for n in range(self.ngrams[0], self.ngrams[1] + 1)
                for i in range(len(tokens) - n + 1)}

    def fit(self, texts) -> "BagOfNgrams":
        counts = Counter()
        for text in _texts(texts, "BagOfNgrams.fit"):
            counts.update(self.grams(text))
        kept = sorted((g for g, c in counts.items() if c >= self.min_count), key=lambda g: (-counts[g], g))
        self.vocabulary = {g: j for j, g in enumerate(kept[:self.max_features])}
        if not self.vocabulary:
            raise DataError(f"BagOfNgrams: no n-gram occurs {self.min_count} times in the training texts")
        return self

    def transform(self, texts) -> np.ndarray:
        """float32 [len(texts), features]: 1 where the text holds the n-gram."""
        if not self.vocabulary:
            raise ConfigError("BagOfNgrams.transform: call fit(texts) first")
        texts = _texts(texts, "BagOfNgrams.transform")
        out = np.zeros((len(texts), len(self.vocabulary)), np.float32)
        for row, text in enumerate(texts):
            cols = [self.vocabulary[g] for g in self.grams(text) if g in self.vocabulary]
            out[row, cols] = 1.0
        return out


class NgramLogisticRegression:
    """Multinomial logistic regression on `BagOfNgrams` features, trained with the engine (one
    Linear layer, softmax cross-entropy, AdamW with `weight_decay` as the L2 penalty)."""

    def __init__(self, level: str = "words", *, ngrams=(1, 2), min_count: int = 2, max_features: int = 20_000,
                 epochs: int = 30, lr: float = 1e-2, batch_size: int = 64, weight_decay: float = 1e-2,
                 seed: int = 0):
        self.features = BagOfNgrams(level, ngrams=ngrams, min_count=min_count, max_features=max_features)
        self.epochs = check_int(epochs, "epochs", "NgramLogisticRegression", low=0)
        self.lr, self.batch_size, self.weight_decay = float(lr), int(batch_size), float(weight_decay)
        self.seed = check_seed(seed, "NgramLogisticRegression")
        self.model = None

    def fit(self, texts, y) -> "NgramLogisticRegression":
        from .nn import Linear, Sequential
        from .optim import AdamW
        from .train import check_labels, fit

        texts = _texts(texts, "NgramLogisticRegression.fit")
        y = check_labels(np.asarray(y), len(texts))
        x = self.features.fit(texts).transform(texts)
        self.num_classes = int(y.max()) + 1 if y.size else 1
        self.model = Sequential(Linear(x.shape[1], max(self.num_classes, 2), seed=self.seed))
        opt = AdamW(self.model.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        fit(self.model, x, y, epochs=self.epochs, batch_size=self.batch_size, optimizer=opt, seed=self.seed,
            quiet=True)
        return self

    def scores(self, texts) -> np.ndarray:
        """Logits [len(texts), classes]."""
        if self.model is None:
            raise ConfigError("NgramLogisticRegression: call fit(texts, y) first")
        return self.model.predict(self.features.transform(texts))

    def predict(self, texts) -> np.ndarray:
        return self.scores(texts).argmax(axis=1)


def _fitted(obj, attr: str, where: str):
    if not hasattr(obj, attr):
        raise ConfigError(f"{where}: call fit(dataset) first")


def _pairs(users, items, where: str) -> tuple[np.ndarray, np.ndarray]:
    users, items = np.asarray(users), np.asarray(items)
    if users.shape != items.shape or users.dtype.kind not in "iu" or items.dtype.kind not in "iu":
        raise ShapeError(f"{where}: expected integer users and items of one shape, found "
                         f"{users.dtype} {users.shape} and {items.dtype} {items.shape}")
    return users.astype(np.int64, copy=False), items.astype(np.int64, copy=False)


class Popularity:
    """Scores each item by its number of training ratings, whoever the user (the ItemPop baseline
    of He et al. 2017); its rating prediction is the training mean."""

    def fit(self, ds) -> "Popularity":
        from .recommend import _ratings_dataset

        _ratings_dataset(ds, "Popularity.fit")
        self.counts = np.bincount(ds.train_item, minlength=ds.num_items).astype(np.float64)
        self.mean = float(np.mean(ds.train_rating)) if ds.n_train else 0.0
        return self

    def rank_scores(self, users, items) -> np.ndarray:
        _fitted(self, "counts", "Popularity.rank_scores")
        _, items = _pairs(users, items, "Popularity.rank_scores")
        return self.counts[items]

    def ratings(self, users, items) -> np.ndarray:
        _fitted(self, "counts", "Popularity.ratings")
        _, items = _pairs(users, items, "Popularity.ratings")
        return np.full(items.shape, self.mean)


class MatrixFactorization:
    """Biased matrix factorisation, rating ~ mean + b_u + b_i + p_u . q_i (Koren, Bell & Volinsky
    2009), fitted by alternating least squares with an L2 penalty `reg` on factors and biases;
    factors start from N(0, 0.1) drawn with `seed`. Ranks items by predicted rating."""

    def __init__(self, dim: int = 32, *, reg: float = 5.0, iterations: int = 10, seed: int = 0):
        self.dim = check_int(dim, "dim", "MatrixFactorization")
        if isinstance(reg, bool) or not isinstance(reg, (int, float)) or not reg > 0:
            raise ConfigError(f"MatrixFactorization: expected a penalty reg > 0, found {reg!r}")
        self.reg = float(reg)
        self.iterations = check_int(iterations, "iterations", "MatrixFactorization", low=0)
        self.seed = check_seed(seed, "MatrixFactorization")

    def fit(self, ds) -> "MatrixFactorization":
        from .recommend import _ratings_dataset

        _ratings_dataset(ds, "MatrixFactorization.fit")
        if ds.n_train == 0:
            raise DataError("MatrixFactorization.fit: the training part holds no ratings")
        rng = np.random.default_rng(self.seed)
        u, i = ds.train_user, ds.train_item
        r = ds.train_rating.astype(np.float64)
        self.mean = float(r.mean())
        k = self.dim + 1  # a factor vector plus a bias
        users = np.concatenate([rng.normal(0, 0.1, (ds.num_users, self.dim)), np.zeros((ds.num_users, 1))], axis=1)
        items = np.concatenate([rng.normal(0, 0.1, (ds.num_items, self.dim)), np.zeros((ds.num_items, 1))], axis=1)
        for _ in range(self.iterations):
            users = self._solve(u, i, r, users, items, k)
            items = self._solve(i, u, r, items, users, k)
        # a user or item with no training rating keeps no random factors: it is predicted by the rest
        users[np.bincount(u, minlength=ds.num_users) == 0] = 0
        items[np.bincount(i, minlength=ds.num_items) == 0] = 0
        self.user_factors, self.user_bias = users[:, :-1], users[:, -1]
        self.item_factors, self.item_bias = items[:, :-1], items[:, -1]
        return self

    def _solve(self, rows, cols, r, own, other, k) -> np.ndarray:
        """Each row's (factors, bias) by regularised least squares against the others' fixed
        (factors, bias): r - mean - b_other ~ [p, b] . [q, 1]; the normal equations of all rows
        are summed in one pass (`kernels.als.csr_normal_equations`) and solved in one batch."""
        from .kernels.als import csr_normal_equations

        order = np.argsort(rows, kind="stable")
        counts = np.bincount(rows, minlength=own.shape[0])
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        features = np.array(other, dtype=np.float64, order="C")  # a copy: its last column becomes 1
        features[:, -1] = 1.0  # the bias's feature
        targets = np.ascontiguousarray(r[order] - self.mean - other[cols[order], -1])
        gram = np.zeros((own.shape[0], k, k))
        rhs = np.zeros((own.shape[0], k))
        csr_normal_equations(indptr, np.ascontiguousarray(cols[order]), targets, features, gram, rhs)
        has = counts > 0
        out = own.copy()
        out[has] = np.linalg.solve(gram[has] + self.reg * np.eye(k), rhs[has][:, :, None])[:, :, 0]
        return out

    def ratings(self, users, items) -> np.ndarray:
        _fitted(self, "user_factors", "MatrixFactorization.ratings")
        users, items = _pairs(users, items, "MatrixFactorization.ratings")
        return (self.mean + self.user_bias[users] + self.item_bias[items]
                + np.sum(self.user_factors[users] * self.item_factors[items], axis=-1))

    rank_scores = ratings
