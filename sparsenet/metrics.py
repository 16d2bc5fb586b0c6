"""Classification, regression and ranking metrics in NumPy (vectorised: np.bincount, no Python loop
over samples; `ranking_candidates` draws each user's candidates in a loop over users).

Inputs:
    y_true  (N,)    non-negative integer class labels
    y_pred  (N,)    predicted labels, or (N, C) scores / logits / probabilities (argmax is taken)

Conventions:
    * A ratio whose denominator is 0 (precision of a class never predicted, recall of a class
      absent from y_true, their F1) is reported as 0.0, without any warning.
    * Macro averages run over the classes that occur in y_true or y_pred (as scikit-learn's
      ``average="macro"`` with default labels); classes in neither are listed per class as 0.
    * Empty input (N == 0) raises DataError: no metric is defined on zero samples.

Example:
    >>> import numpy as np
    >>> y_true = np.array([0, 0, 1, 2])
    >>> y_pred = np.array([0, 1, 1, 2])
    >>> accuracy(y_true, y_pred)
    0.75
    >>> confusion_matrix(y_true, y_pred).tolist()
    [[1, 1, 0], [0, 1, 0], [0, 0, 1]]
    >>> round(macro_f1(y_true, y_pred), 4)
    0.7778
"""

from __future__ import annotations

import numpy as np

from ._checks import check_int, check_seed
from .errors import DataError, ShapeError

__all__ = [
    "accuracy",
    "confusion_matrix",
    "precision_recall_f1",
    "macro_f1",
    "classification_report",
    "rmse",
    "ranking_candidates",
    "hit_rate_ndcg",
]


def _labels(y, name: str) -> np.ndarray:
    """Validate 1-D class labels and return them as int64."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise ShapeError(f"{name} must be 1-D class labels of shape (N,), found shape {y.shape}")
    if y.dtype.kind == "f":
        if not np.isfinite(y).all() or (y != np.round(y)).any():
            raise DataError(f"{name} must hold integer class labels, found non-integer float values "
                            f"(for scores/probabilities pass a 2-D (N, C) array)")
    elif y.dtype.kind not in "biu":
        raise DataError(f"{name} must hold integer class labels, found dtype {y.dtype}")
    if y.size and y.min() < 0:
        raise DataError(f"{name} labels must be non-negative class indices, found {y.min()!r}")
    return y.astype(np.int64, copy=False)


def _prepare(y_true, y_pred, num_classes=None) -> tuple[np.ndarray, np.ndarray, int]:
    """Validate inputs; return (y_true int64 (N,), y_pred int64 (N,), K)."""
    y_true = _labels(y_true, "y_true")
    scores = np.asarray(y_pred)
    n_score_classes = 0
    if scores.ndim == 2:
        if scores.dtype.kind not in "biuf":
            raise DataError(f"y_pred scores must be real numbers, found dtype {scores.dtype}")
        if scores.shape[1] == 0:
            raise ShapeError(f"y_pred scores must have at least one column, found shape {scores.shape}")
        if scores.dtype.kind == "f" and np.isnan(scores).any():
            raise DataError("y_pred scores contain NaN; argmax over them is meaningless")
        n_score_classes = scores.shape[1]
        y_pred = np.argmax(scores, axis=1).astype(np.int64)
    elif scores.ndim == 1:
        y_pred = _labels(scores, "y_pred")
    else:
        raise ShapeError(f"y_pred must be labels (N,) or scores (N, C), found shape {scores.shape}")
    if y_true.shape[0] != y_pred.shape[0]:
        raise ShapeError(f"y_true and y_pred must have the same number of samples, "
                         f"found {y_true.shape[0]} and {y_pred.shape[0]}")
    if y_true.shape[0] == 0:
        raise DataError("metrics are undefined on empty input (0 samples)")
    seen = int(max(y_true.max(), y_pred.max())) + 1
    if num_classes is None:
        k = max(seen, n_score_classes)
    else:
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) \
                or num_classes < 1:
            raise DataError(f"num_classes must be a positive int, found {num_classes!r}")
        k = int(num_classes)
        if seen > k:
            raise DataError(f"labels must be < num_classes={k}, found label {seen - 1}")
        if n_score_classes and n_score_classes != k:
            raise ShapeError(f"y_pred scores have {n_score_classes} columns but num_classes={k}")
    return y_true, y_pred, k


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den elementwise as float64, 0.0 where den == 0 (no warning)."""
    num = num.astype(np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den != 0)


def accuracy(y_true, y_pred) -> float:
    """Fraction of samples whose predicted label equals the true label.

    Args:
        y_true: (N,) integer labels.
        y_pred: (N,) integer labels or (N, C) scores (argmax taken).

    Returns:
        A float in [0, 1].

    Example:
        >>> accuracy([0, 1, 2], [[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.5, 0.4, 0.1]])
        0.6666666666666666
    """
    y_true, y_pred, _ = _prepare(y_true, y_pred)
    return float(np.count_nonzero(y_true == y_pred) / y_true.shape[0])


def confusion_matrix(y_true, y_pred, num_classes: int | None = None) -> np.ndarray:
    """Counts of (true, predicted) label pairs.

    Args:
        y_true: (N,) integer labels.
        y_pred: (N,) integer labels or (N, C) scores (argmax taken).
        num_classes: K; default max label + 1 (or C for scores, whichever is larger).

    Returns:
        int64 (K, K): entry [i, j] counts samples of true class i predicted as j.

    Example:
        >>> confusion_matrix([0, 1, 1], [1, 1, 0], num_classes=3).tolist()
        [[0, 1, 0], [1, 1, 0], [0, 0, 0]]
    """
    y_true, y_pred, k = _prepare(y_true, y_pred, num_classes)
    return _confusion(y_true, y_pred, k)


def _confusion(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(y_true * k + y_pred, minlength=k * k).reshape(k, k).astype(np.int64)


def _per_class(cm: np.ndarray):
    tp = np.diag(cm)
    predicted = cm.sum(axis=0)
    support = cm.sum(axis=1)
    precision = _safe_div(tp, predicted)
    recall = _safe_div(tp, support)
    f1 = _safe_div(2 * tp, predicted + support)  # = 2PR / (P + R) where defined
    return precision, recall, f1, support.astype(np.int64), (predicted + support) > 0


def precision_recall_f1(y_true, y_pred, num_classes: int | None = None):
    """Per-class precision, recall, F1 and support.

    Args:
        y_true: (N,) integer labels.
        y_pred: (N,) integer labels or (N, C) scores (argmax taken).
        num_classes: K; default max label + 1 (or C for scores, whichever is larger).

    Returns:
        (precision, recall, f1, support): float64 (K,), float64 (K,), float64 (K,), int64 (K,).
        Undefined ratios (class never predicted / absent from y_true) are 0.0.

    Example:
        >>> p, r, f, s = precision_recall_f1([0, 0, 1], [0, 1, 1])
        >>> p.tolist(), r.tolist(), s.tolist()
        ([1.0, 0.5], [0.5, 1.0], [2, 1])
    """
    y_true, y_pred, k = _prepare(y_true, y_pred, num_classes)
    precision, recall, f1, support, _ = _per_class(_confusion(y_true, y_pred, k))
    return precision, recall, f1, support


def macro_f1(y_true, y_pred, num_classes: int | None = None) -> float:
    """Unweighted mean of per-class F1 over the classes occurring in y_true or y_pred.

    Example:
        >>> macro_f1([0, 0, 1], [0, 0, 1])
        1.0
    """
    y_true, y_pred, k = _prepare(y_true, y_pred, num_classes)
    _, _, f1, _, present = _per_class(_confusion(y_true, y_pred, k))
    return float(f1[present].mean())


def classification_report(y_true, y_pred, num_classes: int | None = None) -> dict:
    """All the metrics above as a JSON-serialisable dict of plain Python floats, ints and lists.

    Returns:
        {
          "num_samples": int, "num_classes": K, "accuracy": float,
          "per_class": {"precision": [K floats], "recall": [K floats], "f1": [K floats],
                        "support": [K ints]},
          "macro": {"precision": float, "recall": float, "f1": float},
          "confusion_matrix": [[K ints] * K],
        }
        Macro averages run over classes present in y_true or y_pred.

    Example:
        >>> rep = classification_report([0, 1, 1], [0, 1, 0])
        >>> rep["accuracy"], rep["per_class"]["support"]
        (0.6666666666666666, [1, 2])
    """
    y_true, y_pred, k = _prepare(y_true, y_pred, num_classes)
    cm = _confusion(y_true, y_pred, k)
    precision, recall, f1, support, present = _per_class(cm)
    return {
        "num_samples": int(y_true.shape[0]),
        "num_classes": k,
        "accuracy": float(np.trace(cm) / y_true.shape[0]),
        "per_class": {
            "precision": precision.tolist(),
            "recall": recall.tolist(),
            "f1": f1.tolist(),
            "support": support.tolist(),
        },
        "macro": {
            "precision": float(precision[present].mean()),
            "recall": float(recall[present].mean()),
            "f1": float(f1[present].mean()),
        },
        "confusion_matrix": cm.tolist(),
    }


def rmse(y_true, y_pred) -> float:
    """Root mean squared error of predictions `y_pred` against `y_true` (same number of values; an
    ``[N, 1]`` prediction counts as ``[N]``), computed in float64.

    >>> rmse([1.0, 2.0], [1.0, 4.0])
    1.4142135623730951
    """
    t = np.asarray(y_true, np.float64).reshape(-1)
    p = np.asarray(y_pred, np.float64).reshape(-1)
    if t.size != p.size:
        raise ShapeError(f"rmse: expected as many predictions as targets, found {p.size} and {t.size}")
    if t.size == 0:
        raise DataError("rmse: no values (N == 0)")
    if not (np.isfinite(t).all() and np.isfinite(p).all()):
        raise DataError("rmse: targets and predictions must be finite")
    return float(np.sqrt(np.mean((t - p) ** 2)))


def ranking_candidates(rated, users, positives, num_items: int, *, negatives: int = 99,
                       seed: int = 0) -> np.ndarray:
    """The candidates of a sampled ranking evaluation (He et al. 2017): for each test pair
    (users[j], positives[j]), row j of the int64 result ``[len(users), 1 + negatives]`` holds the
    positive item first, then `negatives` distinct items that user never rated (``rated[u]``: the
    sorted items user u rated), drawn uniformly with `seed` (same seed, same rows).

    >>> ranking_candidates([np.array([0, 1])], np.array([0]), np.array([1]), 5, negatives=3, seed=0).tolist()
    [[1, 2, 3, 4]]
    """
    negatives = check_int(negatives, "negatives", "ranking_candidates", low=1)
    rng = np.random.default_rng(check_seed(seed, "ranking_candidates"))
    users = np.asarray(users, np.int64).reshape(-1)
    positives = np.asarray(positives, np.int64).reshape(-1)
    if users.shape != positives.shape:
        raise ShapeError(f"ranking_candidates: expected one positive per user, found {positives.size} "
                         f"for {users.size}")
    if users.size and (users.min() < 0 or users.max() >= len(rated)):
        raise DataError(f"ranking_candidates: users must lie in [0, {len(rated)}), found range "
                        f"[{users.min()}, {users.max()}]")
    if positives.size and (positives.min() < 0 or positives.max() >= num_items):
        raise DataError(f"ranking_candidates: items must lie in [0, {num_items}), found range "
                        f"[{positives.min()}, {positives.max()}]")
    out = np.empty((users.size, 1 + negatives), np.int64)
    out[:, 0] = positives
    for j, u in enumerate(users.tolist()):
        # sorted and distinct, the positive included (never drawn as a negative)
        seen = np.union1d(np.asarray(rated[u], np.int64), positives[j:j + 1])
        pool = num_items - seen.size
        if pool < negatives:
            raise DataError(f"ranking_candidates: user {u} rated {seen.size} of {num_items} items: fewer than "
                            f"{negatives} unrated items remain to sample from")
        # draw among the unrated items by their rank: position r -> r + (number of rated items <= it)
        ranks = np.sort(rng.choice(pool, negatives, replace=False))
        out[j, 1:] = ranks + np.searchsorted(seen - np.arange(seen.size), ranks, side="right")
    return out


def hit_rate_ndcg(scores, k: int = 10) -> dict:
    """Top-k hit rate and NDCG of rows of candidate scores whose column 0 is the positive item
    (see `ranking_candidates`). The positive's rank counts every candidate that scores as high or
    higher (ties go against the model: a constant scorer hits nothing). Returns
    ``{"hit_rate": HR@k, "ndcg": NDCG@k, "k": k, "num_users": rows}``; NDCG@k is
    1/log2(rank + 2) for a positive of rank < k (rank 0 is first), else 0, averaged.

    >>> hit_rate_ndcg(np.array([[3.0, 1.0, 2.0], [0.0, 1.0, 2.0]]), k=2)["hit_rate"]
    0.5
    """
    k = check_int(k, "k", "hit_rate_ndcg", low=1)
    s = np.asarray(scores, np.float64)
    if s.ndim != 2 or s.shape[1] < 2 or s.shape[0] == 0:
        raise ShapeError(f"hit_rate_ndcg: expected scores [users, 1 + negatives] with at least one user "
                         f"and one negative, found shape {s.shape}")
    if not np.isfinite(s).all():
        raise DataError("hit_rate_ndcg: scores must be finite")
    rank = (s[:, 1:] >= s[:, :1]).sum(axis=1)
    hit = rank < k
    return {"hit_rate": float(hit.mean()), "ndcg": float(np.where(hit, 1.0 / np.log2(rank + 2.0), 0.0).mean()),
            "k": k, "num_users": int(s.shape[0])}
