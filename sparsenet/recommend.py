"""Training and evaluating recommenders on a `RatingsDataset` (the embedded MovieLens ratings).

A zoo `recommender` with two outputs learns both what a user would rate an item (column 0, the
squared error on known ratings) and whether the user rates it at all (column 1, a logit against
sampled unrated items: implicit feedback, He et al. 2017). `evaluate_recommender` reports the RMSE
of column 0 on the test ratings and the top-k hit rate and NDCG of column 1 when each test item
is ranked among `negatives` items its user never rated (`sparsenet.metrics.ranking_candidates`).
A rating predictor ranks badly (it scores how much, not whether): a model of one output, or the
`MatrixFactorization` baseline, ranks by its predicted rating, which is what they have.

Example:
    >>> from sparsenet.data import load_movielens
    >>> from sparsenet.zoo import recommender
    >>> ds = load_movielens()
    >>> model = recommender(ds.num_users, ds.num_items, seed=0, dim=8, hidden=(16,))
    >>> _ = train_recommender(model, ds, epochs=1)
    >>> sorted(evaluate_recommender(model, ds))
    ['hit_rate', 'k', 'ndcg', 'negatives', 'num_users', 'rmse']
"""

from __future__ import annotations

import math

import numpy as np

from ._checks import check_int, check_seed
from .errors import ConfigError, DataError
from .losses import MSELoss, RatingInteractionLoss
from .metrics import hit_rate_ndcg, ranking_candidates, rmse

__all__ = ["train_recommender", "evaluate_recommender", "sample_unrated"]


def _outputs(model, where: str) -> int:
    """Numbers per (user, item) pair: the width of one prediction; ConfigError unless it is 1 or 2
    (a prediction of shape [N, 1] or [N, 2])."""
    out = model.predict({"user": np.zeros(1, np.int64), "item": np.zeros(1, np.int64)})
    if out.ndim != 2 or out.shape[1] not in (1, 2):
        raise ConfigError(f"{where}: expected a model of 1 or 2 outputs per pair (predictions [N, 1] or [N, 2]), "
                          f"found predictions of shape {list(out.shape)}")
    return int(out.shape[1])


def _ratings_dataset(ds, where: str) -> None:
    from .data.movielens import RatingsDataset

    if not isinstance(ds, RatingsDataset):
        raise ConfigError(f"{where}: expected a RatingsDataset (sparsenet.data.load_movielens), found "
                          f"{type(ds).__name__}")


def sample_unrated(users, known_codes, num_items: int, rng: np.random.Generator, *, rounds: int = 20) -> np.ndarray:
    """One item per entry of `users`, drawn uniformly among the items that user has no known rating
    of (`known_codes`: the sorted ``user * num_items + item`` of the known pairs); draws that hit a
    known pair are drawn again (a user who rated almost everything raises ConfigError)."""
    users = np.asarray(users, np.int64)
    items = rng.integers(0, num_items, users.size)
    for _ in range(rounds):
        codes = users * num_items + items
        pos = np.minimum(np.searchsorted(known_codes, codes), max(known_codes.size - 1, 0))
        bad = known_codes.size > 0
        bad = (known_codes[pos] == codes) if bad else np.zeros(users.size, bool)
        if not bad.any():
            return items
        items[bad] = rng.integers(0, num_items, int(bad.sum()))
    raise DataError(f"sample_unrated: after {rounds} draws some users still drew rated items "
                    f"(a user rated nearly all {num_items} items)")


def train_recommender(model, ds, *, epochs: int = 10, batch_size: int = 256, lr: float = 1e-3,
                      negatives: int = 4, interaction_weight: float = 1.0, lr_schedule: str = "cosine",
                      optimizer=None, seed: int = 0, quiet: bool = True):
    """Train a recommender graph (inputs ``user``, ``item``) on the training part of `ds`.

    Two outputs: every epoch pairs each training rating with `negatives` fresh unrated items of
    the same user (drawn with `seed` and the epoch; unrated means not in the training part), and
    fits a `RatingInteractionLoss` (`interaction_weight` weighs the implicit part). One output: the
    squared error of the ratings alone. `lr_schedule` "cosine" lowers the learning rate epoch by
    epoch along half a cosine; "constant" keeps it. Returns the `History` of all epochs.
    """
    from .optim import Adam
    from .train import History, fit

    _ratings_dataset(ds, "train_recommender")
    epochs = check_int(epochs, "epochs", "train_recommender", low=0)
    negatives = check_int(negatives, "negatives", "train_recommender", low=0)
    seed = check_seed(seed, "train_recommender")
    if lr_schedule not in ("constant", "cosine"):
        raise ConfigError(f"train_recommender: expected lr_schedule 'constant' or 'cosine', found {lr_schedule!r}")
    if not interaction_weight >= 0:
        raise ConfigError(f"train_recommender: expected interaction_weight >= 0, found {interaction_weight!r}")
    two = _outputs(model, "train_recommender") == 2
    optimizer = optimizer or Adam(model.parameters(), lr=lr)
    base_lr = optimizer.lr
    x = ds.inputs("train")
    known = np.unique(ds.train_user * ds.num_items + ds.train_item)
    history = History()
    loss = RatingInteractionLoss(interaction_weight) if two else MSELoss()
    for epoch in range(epochs):
        if lr_schedule == "cosine":
            optimizer.lr = base_lr * 0.5 * (1 + math.cos(math.pi * epoch / epochs))
        rng = np.random.default_rng([seed, epoch])
        if two:
            neg_users = np.repeat(ds.train_user, negatives)
            neg_items = sample_unrated(neg_users, known, ds.num_items, rng)
            xb = {"user": np.concatenate([x["user"], neg_users]), "item": np.concatenate([x["item"], neg_items])}
            y = np.zeros((xb["user"].size, 2), np.float32)
            y[:ds.n_train, 0] = ds.train_rating
            y[:ds.n_train, 1] = 1.0
        else:
            xb, y = x, ds.train_rating
        h = fit(model, xb, y, epochs=1, batch_size=batch_size, optimizer=optimizer, loss=loss,
                seed=int(rng.integers(2 ** 31)), quiet=quiet)
        history.loss += h.loss
        history.seconds += h.seconds
    optimizer.lr = base_lr
    model.eval()
    return history


def evaluate_recommender(model, ds, *, k: int = 10, negatives: int = 99, seed: int = 0) -> dict:
    """RMSE on the test ratings and HR@k / NDCG@k of each test item among `negatives` items its
    user never rated (drawn with `seed`: the same candidates for every model evaluated with it).

    `model`: a recommender graph (column 0 rates; column 1, if there is one, ranks) or a baseline
    with ``ratings(users, items)`` and ``rank_scores(users, items)`` (`sparsenet.baselines`).
    Returns ``{"rmse", "hit_rate", "ndcg", "k", "negatives", "num_users"}`` (plain floats and ints).
    """
    _ratings_dataset(ds, "evaluate_recommender")
    if not hasattr(model, "rank_scores"):
        _outputs(model, "evaluate_recommender")
    cand = ranking_candidates(ds.rated(), ds.test_user, ds.test_item, ds.num_items, negatives=negatives, seed=seed)
    users = np.repeat(ds.test_user, cand.shape[1])
    if hasattr(model, "rank_scores"):
        rated = model.ratings(ds.test_user, ds.test_item)
        scores = model.rank_scores(users, cand.reshape(-1)).reshape(cand.shape)
    else:
        rated = model.predict(ds.inputs("test"))[:, 0]
        out = model.predict({"user": users, "item": cand.reshape(-1)})
        scores = out[:, -1].reshape(cand.shape)
    ranking = hit_rate_ndcg(scores, k)
    return {"rmse": rmse(ds.test_rating, rated), "hit_rate": ranking["hit_rate"], "ndcg": ranking["ndcg"],
            "k": ranking["k"], "negatives": int(negatives), "num_users": ranking["num_users"]}
