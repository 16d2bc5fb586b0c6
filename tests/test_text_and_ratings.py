"""Text and ratings: the tokenizer, the embedded census names and MovieLens ratings, ranking and
regression metrics, the classical baselines, recommender training, and `sparsenet datasets` /
`sparsenet train` for the transformer and the recommender."""

import json
from importlib import resources

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sparsenet as sn
from gradcheck import numerical_gradient
from sparsenet.baselines import BagOfNgrams, MatrixFactorization, NgramLogisticRegression, Popularity
from sparsenet.cli import main
from sparsenet.data import DATASETS, RatingsDataset, Tokenizer, load_dataset, load_movielens, load_names
from sparsenet.errors import ConfigError, DataError, ShapeError
from sparsenet.kernels.als import csr_normal_equations
from sparsenet.losses import RatingInteractionLoss
from sparsenet.metrics import hit_rate_ndcg, ranking_candidates, rmse
from sparsenet.recommend import evaluate_recommender, sample_unrated, train_recommender


# -- tokenizer -------------------------------------------------------------------------------------
def test_tokenizer_orders_by_count_then_token_and_cuts_rare_ones():
    tok = Tokenizer("words", min_count=2).fit(["the cat sat", "The dog sat", "a cat"])
    assert tok.vocabulary == ["<pad>", "<unk>", "cat", "sat", "the"]  # 'dog', 'a' seen once
    assert tok.encode(["the bird sat"], 4).tolist() == [[4, 1, 3, 0]]
    capped = Tokenizer("words", max_size=3).fit(["b b a a c"])
    assert capped.vocabulary == ["<pad>", "<unk>", "a"]  # a tie between a and b goes to the token order
    assert Tokenizer("words").fit(["Don't stop_now"]).vocabulary[2:] == ["don't", "now", "stop"]


def test_tokenizer_pads_either_side_and_cuts_long_texts():
    tok = Tokenizer("chars").fit(["ABCDE"])
    assert tok.encode(["ABC"], 5).tolist() == [[2, 3, 4, 0, 0]]
    assert tok.encode(["ABC"], 5, pad="left").tolist() == [[0, 0, 2, 3, 4]]
    assert tok.encode(["ABCDE"], 3).tolist() == [[2, 3, 4]]  # the first tokens
    assert tok.encode(["ABCDE"], 3, pad="left").tolist() == [[4, 5, 6]]  # the last ones
    assert tok.encode([], 3).shape == (0, 3)
    assert tok.decode(tok.encode(["CAB", "E"], 4, pad="left")) == ["CAB", "E"]
    with pytest.raises(ConfigError, match="pad 'right' or 'left'"):
        tok.encode(["A"], 3, pad="middle")


def test_tokenizer_round_trips_through_plain_data_and_refuses_bad_input():
    tok = Tokenizer("chars", min_count=1).fit(["HELLO", "WORLD"])
    again = Tokenizer.from_dict(json.loads(json.dumps(tok.to_dict())))
    assert again.vocabulary == tok.vocabulary
    np.testing.assert_array_equal(again.encode(["HOLD"], 6), tok.encode(["HOLD"], 6))
    with pytest.raises(DataError, match="one str"):
        tok.fit("HELLO")
    with pytest.raises(DataError, match="texts of type str"):
        tok.encode([3], 4)
    with pytest.raises(ConfigError, match="call fit"):
        Tokenizer("chars").encode(["A"], 2)
    with pytest.raises(ConfigError, match="level 'chars' or 'words'"):
        Tokenizer("bytes")
    with pytest.raises(DataError, match="distinct strings starting with"):
        Tokenizer.from_dict({"vocabulary": ["a", "b"]})
    with pytest.raises(DataError, match=r"ids must lie in \[0, "):
        tok.decode(np.array([[99]]))


# -- the embedded datasets ---------------------------------------------------------------------------
def test_names_are_a_stratified_seeded_character_task():
    ds = load_names(seed=3)
    assert ds.x_train.dtype == np.int64 and ds.x_train.shape[1] == 12 and ds.classes == ("female", "male")
    y = np.concatenate([ds.y_train, ds.y_test])
    assert np.bincount(y).tolist() == [4014, 1146]
    assert abs(ds.y_test.mean() - ds.y_train.mean()) < 0.002  # stratified
    names = ds.tokenizer.decode(ds.x_train) + ds.tokenizer.decode(ds.x_test)
    assert len(set(names)) == 5160 and all(n.isalpha() and n.isupper() for n in names)
    assert np.all(ds.x_train[:, -1] != 0)  # right-aligned: every name's last letter at position 11
    again = load_names(seed=3)
    np.testing.assert_array_equal(again.x_test, ds.x_test)
    assert not np.array_equal(load_names(seed=4).y_test, ds.y_test)
    assert load_dataset("names", seed=3).tokenizer.vocabulary == ds.tokenizer.vocabulary


def test_movielens_leaves_each_users_latest_rating_out():
    from sparsenet.data.movielens import _raw

    ds = load_movielens(seed=0)
    assert (ds.n_train + ds.n_test, ds.num_users, ds.num_items) == (100_004, 671, 9066)
    assert np.array_equal(np.sort(ds.test_user), np.arange(671))  # one test rating per user
    raw = _raw()
    latest = np.full(671, -1)
    np.maximum.at(latest, raw["user"].astype(np.int64), raw["timestamp"].astype(np.int64))
    code = raw["user"].astype(np.int64) * 9066 + raw["item"]
    ts = dict(zip(code.tolist(), raw["timestamp"].tolist()))
    assert all(ts[u * 9066 + i] == latest[u] for u, i in zip(ds.test_user.tolist(), ds.test_item.tolist()))
    assert set(np.unique(ds.train_rating).tolist()) == {v / 2 for v in range(1, 11)}
    assert len(ds.titles) == 9066 and ds.titles[0].startswith("Toy Story")
    rnd = load_movielens(split="random", test_fraction=0.2, seed=1)
    assert rnd.n_test == 20_001 and rnd.split == "random"
    np.testing.assert_array_equal(load_movielens(split="random", test_fraction=0.2, seed=1).test_item, rnd.test_item)
    with pytest.raises(ConfigError, match="split 'leave_last_out' or 'random'"):
        load_movielens(split="temporal")
    with pytest.raises(ConfigError, match="test_fraction"):
        load_movielens(split="random", test_fraction=1.5)


def test_ratings_datasets_are_validated():
    i64, f32 = np.zeros(2, np.int64), np.zeros(2, np.float32)
    with pytest.raises(DataError, match=r"train items must lie in \[0, 3\)"):
        RatingsDataset(i64, np.array([0, 3]), f32, i64, i64, f32, num_users=1, num_items=3, name="t", split="x")
    with pytest.raises(DataError, match="float32 ratings"):
        RatingsDataset(i64, i64, i64, i64, i64, f32, num_users=1, num_items=3, name="t", split="x")
    with pytest.raises(DataError, match="one length"):
        RatingsDataset(i64, i64, f32[:1], i64, i64, f32, num_users=1, num_items=3, name="t", split="x")


def test_every_dataset_has_its_licence_next_to_it(capsys):
    assert set(DATASETS) == {"digits", "names", "movielens"}
    for info in DATASETS.values():
        text = resources.files("sparsenet.data").joinpath(info["licence_file"]).read_text()
        assert "Source" in text and "License" in text
    assert main(["datasets", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)["datasets"]
    assert out["movielens"]["samples"] == 100_004 and out["names"]["default_for"] == ["transformer"]


# -- metrics -----------------------------------------------------------------------------------------
def _reference_ranking(scores, k):
    hits, gains = [], []
    for row in scores:
        rank = sum(1 for s in row[1:] if s >= row[0])
        hits.append(rank < k)
        gains.append(1 / np.log2(rank + 2) if rank < k else 0.0)
    return np.mean(hits), np.mean(gains)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 6), st.integers(1, 12), st.integers(1, 5), st.integers(0, 2 ** 16))
def test_hit_rate_and_ndcg_match_a_plain_reference(users, negatives, k, seed):
    scores = np.random.default_rng(seed).integers(0, 4, (users, 1 + negatives)).astype(float)  # ties
    got = hit_rate_ndcg(scores, k)
    want = _reference_ranking(scores, k)
    assert got["hit_rate"] == pytest.approx(want[0]) and got["ndcg"] == pytest.approx(want[1])


def test_ranking_treats_ties_against_the_model_and_checks_shapes():
    assert hit_rate_ndcg(np.ones((4, 100)), 10)["hit_rate"] == 0.0  # a constant scorer finds nothing
    assert hit_rate_ndcg(np.array([[2.0, 1.0, 0.0]]), 1) == {"hit_rate": 1.0, "ndcg": 1.0, "k": 1, "num_users": 1}
    with pytest.raises(ShapeError, match="at least one user and one negative"):
        hit_rate_ndcg(np.ones((3, 1)))
    with pytest.raises(DataError, match="finite"):
        hit_rate_ndcg(np.array([[np.nan, 1.0]]))
    assert rmse([1, 2, 3], [[1], [2], [5]]) == pytest.approx(np.sqrt(4 / 3))
    with pytest.raises(ShapeError):
        rmse([1, 2], [1])
    with pytest.raises(DataError, match="no values"):
        rmse([], [])


@settings(max_examples=40, deadline=None)
@given(st.integers(6, 40), st.integers(0, 2 ** 16), st.integers(1, 5))
def test_ranking_candidates_are_distinct_unrated_items(num_items, seed, negatives):
    rng = np.random.default_rng(seed)
    rated = [np.sort(rng.choice(num_items, rng.integers(1, num_items - negatives + 1), replace=False))
             for _ in range(3)]
    users = np.array([0, 1, 2, 1])
    positives = np.array([rated[u][0] for u in users])
    cand = ranking_candidates(rated, users, positives, num_items, negatives=negatives, seed=seed)
    assert cand.shape == (4, 1 + negatives) and np.array_equal(cand[:, 0], positives)
    for row, u in zip(cand, users):
        assert len(set(row[1:].tolist())) == negatives and not set(row[1:].tolist()) & set(rated[u].tolist())
        assert row[1:].min() >= 0 and row[1:].max() < num_items
    np.testing.assert_array_equal(cand, ranking_candidates(rated, users, positives, num_items, negatives=negatives,
                                                           seed=seed))


def test_ranking_candidates_refuse_users_who_rated_nearly_everything():
    with pytest.raises(DataError, match="fewer than 3 unrated items"):
        ranking_candidates([np.arange(8)], np.array([0]), np.array([0]), 10, negatives=3)


# -- losses and baselines ----------------------------------------------------------------------------
def test_rating_interaction_loss_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    out = rng.standard_normal((7, 2))
    target = np.stack([rng.uniform(0.5, 5, 7), rng.integers(0, 2, 7)], axis=1).astype(np.float64)
    target[target[:, 1] == 0, 0] = 99.0  # an unobserved pair's rating is ignored
    loss = RatingInteractionLoss(interaction_weight=0.7)
    loss(out, target)
    num = numerical_gradient(lambda: loss.forward(out, target), out, 1e-6)
    loss(out, target)
    np.testing.assert_allclose(loss.backward(), num, rtol=1e-6, atol=1e-8)
    with pytest.raises(DataError, match="0 or 1"):
        loss(out, np.full((7, 2), 0.5))
    with pytest.raises(ShapeError, match=r"\[N, 2\]"):
        loss(out[:, :1], target[:, :1])


def test_bag_of_ngrams_sees_beginnings_and_endings():
    bow = BagOfNgrams("chars", ngrams=(1, 2), min_count=1).fit(["ANA", "BOB"])
    assert bow.grams("ANA") == {"^", "A", "N", "$", "^A", "AN", "NA", "A$"}
    x = bow.transform(["ANA", "ZZ"])
    assert x.dtype == np.float32 and x[0].sum() == 8 and x[1].sum() == 2  # ZZ: only ^ and $ are known
    words = BagOfNgrams("words", ngrams=(1, 2), min_count=1).fit(["a good film", "a bad film"])
    assert "good film" in words.vocabulary
    with pytest.raises(DataError, match="occurs 5 times"):
        BagOfNgrams("chars", min_count=5).fit(["AB"])


def test_ngram_logistic_regression_learns_endings():
    rng = np.random.default_rng(0)
    stems = ["".join(rng.choice(list("BCDFGKLMNPRST"), 4)) for _ in range(200)]
    texts = [s + ("A" if k % 2 else "O") for k, s in enumerate(stems)]
    y = np.arange(200) % 2
    clf = NgramLogisticRegression("chars", ngrams=(1, 2), epochs=20, lr=1e-2).fit(texts[:150], y[:150])
    assert np.mean(clf.predict(texts[150:]) == y[150:]) == 1.0
    again = NgramLogisticRegression("chars", ngrams=(1, 2), epochs=20, lr=1e-2).fit(texts[:150], y[:150])
    np.testing.assert_array_equal(again.scores(texts[150:]), clf.scores(texts[150:]))  # seeded


def _normal_equations_reference(indptr, cols, targets, features):
    k = features.shape[1]
    gram, rhs = np.zeros((indptr.size - 1, k, k)), np.zeros((indptr.size - 1, k))
    for g in range(indptr.size - 1):
        f = features[cols[indptr[g]:indptr[g + 1]]]
        gram[g], rhs[g] = f.T @ f, f.T @ targets[indptr[g]:indptr[g + 1]]
    return gram, rhs


@pytest.mark.nojit
@settings(max_examples=30, deadline=None)
@given(st.integers(0, 6), st.integers(1, 5), st.integers(1, 4), st.integers(0, 2 ** 16))
def test_als_normal_equations_match_numpy(rows, n_cols, k, seed):
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 4, rows)  # empty rows included
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    cols = rng.integers(0, n_cols, int(indptr[-1]))
    targets, features = rng.standard_normal(cols.size), rng.standard_normal((n_cols, k))
    gram, rhs = np.zeros((rows, k, k)), np.zeros((rows, k))
    csr_normal_equations(indptr, cols, targets, features, gram, rhs)
    want = _normal_equations_reference(indptr, cols, targets, features)
    np.testing.assert_allclose(gram, want[0], atol=1e-12)
    np.testing.assert_allclose(rhs, want[1], atol=1e-12)


def _toy_ratings(users=30, items=40, per_user=12, seed=0):
    """Ratings from a rank-2 taste model; users watch popular items more often."""
    rng = np.random.default_rng(seed)
    pu, qi = rng.standard_normal((users, 2)), rng.standard_normal((items, 2))
    pop = np.exp(-np.arange(items) / 10)
    rows = [(u, i) for u in range(users) for i in rng.choice(items, per_user, replace=False, p=pop / pop.sum())]
    u, i = (np.array(v, np.int64) for v in zip(*rows))
    r = np.clip(np.round(2 * (3 + np.sum(pu[u] * qi[i], axis=1))) / 2, 0.5, 5).astype(np.float32)
    test = np.zeros(u.size, bool)
    test[np.arange(users) * per_user] = True  # one test rating per user
    return RatingsDataset(u[~test], i[~test], r[~test], u[test], i[test], r[test], num_users=users, num_items=items,
                          name="toy", split="leave_last_out")


def test_popularity_and_matrix_factorisation_baselines():
    ds = _toy_ratings()
    pop = Popularity().fit(ds)
    assert pop.rank_scores(np.array([0]), np.array([0]))[0] == np.sum(ds.train_item == 0)
    mf = MatrixFactorization(dim=2, reg=0.1, iterations=10, seed=0).fit(ds)
    fitted = rmse(ds.train_rating, mf.ratings(ds.train_user, ds.train_item))
    assert fitted < 0.6 * rmse(ds.train_rating, pop.ratings(ds.train_user, ds.train_item))
    again = MatrixFactorization(dim=2, reg=0.1, iterations=10, seed=0).fit(ds)
    np.testing.assert_array_equal(again.ratings(ds.test_user, ds.test_item), mf.ratings(ds.test_user, ds.test_item))
    scores = evaluate_recommender(pop, ds, k=5, negatives=10, seed=0)
    assert 0 <= scores["hit_rate"] <= 1 and scores["num_users"] == 30


def test_sampled_negatives_are_never_known_pairs():
    ds = _toy_ratings()
    known = np.unique(ds.train_user * ds.num_items + ds.train_item)
    users = np.repeat(ds.train_user, 4)
    items = sample_unrated(users, known, ds.num_items, np.random.default_rng(0))
    assert not np.isin(users * ds.num_items + items, known).any()
    with pytest.raises(DataError, match="rated nearly all"):
        sample_unrated(np.zeros(5, np.int64), np.arange(40), 40, np.random.default_rng(0))


def test_a_recommender_learns_ratings_and_ranking_and_is_seeded():
    ds = _toy_ratings()
    model = sn.zoo.recommender(ds.num_users, ds.num_items, seed=0, dim=8, hidden=(16,))
    before = evaluate_recommender(model, ds, k=5, negatives=20, seed=0)
    history = train_recommender(model, ds, epochs=30, batch_size=32, lr=5e-3, seed=0)
    after = evaluate_recommender(model, ds, k=5, negatives=20, seed=0)
    assert history.loss[-1] < 0.5 * history.loss[0]
    assert after["rmse"] < before["rmse"] and after["hit_rate"] > before["hit_rate"]
    assert after["hit_rate"] >= evaluate_recommender(Popularity().fit(ds), ds, k=5, negatives=20, seed=0)["hit_rate"] - 0.1
    twin = sn.zoo.recommender(ds.num_users, ds.num_items, seed=0, dim=8, hidden=(16,))
    train_recommender(twin, ds, epochs=30, batch_size=32, lr=5e-3, seed=0)
    np.testing.assert_array_equal(twin.predict(ds.inputs("test")), model.predict(ds.inputs("test")))
    one = sn.zoo.recommender(ds.num_users, ds.num_items, seed=0, dim=8, hidden=(16,), outputs=1)
    h1 = train_recommender(one, ds, epochs=5, batch_size=32, lr=5e-3, lr_schedule="constant")
    assert h1.loss[-1] < h1.loss[0]
    with pytest.raises(ConfigError, match="1 or 2 outputs"):
        train_recommender(sn.zoo.recommender(30, 40, outputs=3), ds, epochs=1)


# -- the zoo and the command line --------------------------------------------------------------------
def test_build_model_passes_the_index_models_sizes():
    model = sn.build_model("transformer", input_shape=(12,), vocab_size=28, num_classes=2, dim=16, heads=2,
                           layers=1, ffn=32, dropout=0.1)
    x = np.random.default_rng(0).integers(0, 28, (5, 12))
    assert model.predict(x).shape == (5, 2)
    np.testing.assert_array_equal(model.predict(x), model.predict(x))  # dropout is off in inference
    rec = sn.build_model("recommender", num_users=5, num_items=7, dim=4, hidden=(8,), dropout=0.2)
    assert rec.predict({"user": np.array([4]), "item": np.array([6])}).shape == (1, 2)
    with pytest.raises(ConfigError, match="the arguments of sparsenet.zoo.transformer"):
        sn.build_model("transformer", vocabulary=3)
    with pytest.raises(ConfigError, match="takes no options"):
        sn.build_model("lenet300", dim=3)


def test_a_dropout_transformer_round_trips_through_files_and_onnx(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from sparsenet.onnx import export_onnx

    model = sn.zoo.transformer(28, 12, 2, seed=0, dim=16, heads=2, layers=1, ffn=32, dropout=0.2)
    x = np.random.default_rng(1).integers(0, 28, (4, 12))
    sn.save_model(model, tmp_path / "t.safetensors")
    np.testing.assert_array_equal(sn.load(tmp_path / "t.safetensors").predict(x), model.predict(x))
    sess = ort.InferenceSession(export_onnx(model, None).SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(None, {"tokens": x})[0], model.predict(x), rtol=1e-4, atol=1e-5)


def test_sparsenet_train_runs_the_text_and_ratings_recipes(tmp_path, capsys):
    out = tmp_path / "tf.safetensors"
    assert main(["train", "--model", "transformer", "--epochs", "1", "--json", "-o", str(out)]) == 0
    f = json.loads(capsys.readouterr().out)
    assert f["dataset"] == "names" and f["test_samples"] == 1290 and 0 <= f["test_macro_recall"] <= 1
    base = f["baselines"]["bag_of_ngrams_logistic_regression"]
    assert base["test_accuracy"] > 0.8 and base["ngrams"] == [1, 4]
    loaded = sn.load(out)
    tok = Tokenizer.from_dict(loaded.meta["tokenizer"])
    x = tok.encode(["MARY", "JOHN"], 12, pad="left")
    assert loaded.predict(x).shape == (2, 2)
    assert main(["train", "--model", "recommender", "--epochs", "1", "--json"]) == 0
    f = json.loads(capsys.readouterr().out)
    assert f["dataset"] == "movielens" and f["test_users"] == 671 and f["negatives"] == 99
    assert set(f["baselines"]) == {"popularity", "matrix_factorization"}
    assert f["baselines"]["matrix_factorization"]["test_rmse"] < f["baselines"]["popularity"]["test_rmse"]
    assert main(["train", "--model", "recommender", "--dataset", "digits"]) == 1
    assert "expected a ratings dataset" in capsys.readouterr().err


# -- pruning the tables ------------------------------------------------------------------------------
def test_frequency_prunes_the_rarest_rows_and_auto_keeps_tables_in_row_formats():
    from sparsenet.prune import compiled, prune
    from sparsenet.quantize import quantize_model

    ds = _toy_ratings()
    model = sn.zoo.recommender(ds.num_users, ds.num_items, seed=0, dim=8, hidden=(16,))
    r = prune(model, method="frequency", granularity="embedding-row", sparsity=0.5, data=(ds.inputs("train"),))
    assert set(r.layers) == {"user_emb", "item_emb"}
    items = {n.name: n.op for n in model.nodes}["item_emb"].weight.to_dense()
    kept = np.any(items != 0, axis=1)
    counts = np.bincount(ds.train_item, minlength=ds.num_items)
    assert kept.sum() == 20 and counts[kept].min() >= counts[~kept].max()  # the most looked-up half stays
    x = ds.inputs("test")
    want = model.predict(x)
    small = compiled(model, "auto", repeats=1, min_time=1e-5)  # it tried BSR on a table, and failed
    tables = {n.name: n.op.weight.format_name for n in small.nodes if n.name.endswith("_emb")}
    assert set(tables.values()) <= {"dense", "csr"}
    np.testing.assert_allclose(small.predict(x), want, rtol=1e-5, atol=1e-6)
    q = quantize_model(small, layers=["user_emb", "item_emb"])
    assert {n.name: n.op.weight.format_name for n in q.nodes if hasattr(n.op, "weight")}["fc1"] == "dense"
    assert {n.name: n.op.weight.format_name[0] for n in q.nodes if n.name.endswith("_emb")} == {
        "user_emb": "q", "item_emb": "q"}
    np.testing.assert_allclose(q.predict(x), want, rtol=0.05, atol=0.05)
    with pytest.raises(ConfigError, match="no weighted layer named nope"):
        quantize_model(small, layers=["nope"])
    with pytest.raises(ConfigError, match="are not Embedding layers"):
        prune(sn.build_model("lenet300"), method="frequency", sparsity=0.5, data=(np.zeros((4, 64), np.float32),))
    with pytest.raises(ConfigError, match="pass data"):
        prune(model, method="frequency", granularity="embedding-row", sparsity=0.5)


def test_commands_that_need_classes_refuse_ratings(tmp_path, capsys):
    path = tmp_path / "m.safetensors"
    sn.save_model(sn.build_model("lenet300"), path)
    assert main(["prune", str(path), "-o", str(tmp_path / "p.safetensors"), "--dataset", "movielens"]) == 1
    err = capsys.readouterr().err
    assert "sparsenet prune --dataset: expected a classification dataset" in err and "sparsenet.recommend" in err
    from sparsenet.data import classification_dataset

    assert classification_dataset("names", "here").num_classes == 2


def test_recommender_tools_refuse_what_they_cannot_use():
    from sparsenet.quantize import quantize_model
    from sparsenet.zoo import train_recipe

    ds = _toy_ratings()
    with pytest.raises(ConfigError, match="expected a RatingsDataset"):
        evaluate_recommender(Popularity(), load_dataset("names"))
    with pytest.raises(ConfigError, match="call fit"):
        Popularity().rank_scores(np.array([0]), np.array([0]))
    with pytest.raises(ConfigError, match="reg > 0"):
        MatrixFactorization(reg=0)
    three = sn.zoo.recommender(ds.num_users, ds.num_items, dim=4, hidden=(8,), outputs=3)
    with pytest.raises(ConfigError, match="1 or 2 outputs per pair"):
        evaluate_recommender(three, ds)
    one = sn.zoo.recommender(ds.num_users, ds.num_items, dim=4, hidden=(8,), outputs=1)
    assert evaluate_recommender(one, ds, k=5, negatives=10)["num_users"] == 30  # one number per pair: ranks by it
    model = sn.zoo.recommender(ds.num_users, ds.num_items, seed=0, dim=4, hidden=(8,))
    before = model.predict(ds.inputs("test"))
    assert train_recommender(model, ds, epochs=0).loss == []
    np.testing.assert_array_equal(model.predict(ds.inputs("test")), before)
    with pytest.raises(ConfigError, match="interaction_weight >= 0"):
        train_recommender(model, ds, epochs=1, interaction_weight=-1.0)
    with pytest.raises(ConfigError, match="flatten does not apply"):
        load_dataset("movielens", flatten=True)
    with pytest.raises(ConfigError, match="holds token ids"):
        train_recipe("lenet300", "names")
    assert sn.build_model("recommender", input_shape=None, num_users=3, num_items=4, dim=2,
                          hidden=(2,)).predict({"user": np.array([2]), "item": np.array([3])}).shape == (1, 2)
    with pytest.raises(ConfigError, match="expected layers as layer names"):
        quantize_model(model, layers=5)


def test_ranking_candidates_check_users_and_never_draw_the_positive():
    with pytest.raises(DataError, match=r"users must lie in \[0, 1\)"):
        ranking_candidates([np.array([0])], np.array([-1]), np.array([0]), 10, negatives=2)
    # the positive missing from the user's rated items is still never drawn as a negative
    cand = ranking_candidates([np.array([], np.int64)], np.zeros(50, np.int64), np.full(50, 3), 5, negatives=4)
    assert np.all(cand[:, 0] == 3) and not np.any(cand[:, 1:] == 3)


def test_a_tokenizer_description_with_bad_fields_is_refused():
    good = Tokenizer("chars").fit(["AB"]).to_dict()
    for bad, match in ((dict(good, lower="yes"), "'lower' true or false"), (dict(good, level="bytes"), "level"),
                       (dict(good, extra=1), "expected a dict"), (dict(good, max_size=3), "exceeds its max_size")):
        with pytest.raises(DataError, match=match):
            Tokenizer.from_dict(bad)
    with pytest.raises(DataError, match="ragged rows"):
        Tokenizer.from_dict(good).decode([[1, 2], [1]])


def test_frequency_counts_lookups_inside_no_grad_too():
    from sparsenet.nn.module import no_grad
    from sparsenet.prune.importance import Frequency

    ds = _toy_ratings()
    model = sn.zoo.recommender(ds.num_users, ds.num_items, seed=0, dim=4, hidden=(8,))
    layers = {n.name: n.op for n in model.nodes if n.name.endswith("_emb")}
    with no_grad():
        scores = Frequency(batch_size=7)(model, layers, (ds.inputs("train"),))
    counts = np.bincount(ds.train_item, minlength=ds.num_items)
    np.testing.assert_array_equal(np.floor(scores["item_emb"][:, 0]), counts)
    with pytest.raises(ConfigError, match="batch_size"):
        Frequency(batch_size=0)
