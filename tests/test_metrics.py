"""Tests of sparsenet.metrics: hand-computed cases, edge cases, and agreement with scikit-learn."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsenet.errors import DataError, ShapeError
from sparsenet.metrics import (
    accuracy,
    classification_report,
    confusion_matrix,
    macro_f1,
    precision_recall_f1,
)

# ----------------------------------------------------------------------------- hand-computed

Y_TRUE = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 3])
Y_PRED = np.array([0, 1, 0, 1, 2, 2, 2, 0, 2, 3])


def test_confusion_matrix_by_hand():
    cm = confusion_matrix(Y_TRUE, Y_PRED)
    assert cm.dtype == np.int64
    assert cm.tolist() == [
        [2, 1, 0, 0],
        [0, 1, 1, 0],
        [1, 0, 3, 0],
        [0, 0, 0, 1],
    ]
    assert confusion_matrix(Y_TRUE, Y_PRED, num_classes=6).shape == (6, 6)


def test_precision_recall_f1_by_hand():
    p, r, f, s = precision_recall_f1(Y_TRUE, Y_PRED)
    np.testing.assert_allclose(p, [2 / 3, 1 / 2, 3 / 4, 1.0])
    np.testing.assert_allclose(r, [2 / 3, 1 / 2, 3 / 4, 1.0])
    np.testing.assert_allclose(f, [2 / 3, 1 / 2, 3 / 4, 1.0])
    assert s.dtype == np.int64 and s.tolist() == [3, 2, 4, 1]
    assert accuracy(Y_TRUE, Y_PRED) == 0.7
    assert macro_f1(Y_TRUE, Y_PRED) == pytest.approx((2 / 3 + 1 / 2 + 3 / 4 + 1) / 4)


def test_asymmetric_precision_recall():
    # class 0: tp=1, predicted 3 times, true 1 time -> P=1/3, R=1, F1=0.5
    p, r, f, s = precision_recall_f1([0, 1, 1], [0, 0, 0])
    np.testing.assert_allclose(p, [1 / 3, 0.0])
    np.testing.assert_allclose(r, [1.0, 0.0])
    np.testing.assert_allclose(f, [0.5, 0.0])
    assert s.tolist() == [1, 2]


def test_scores_are_argmaxed():
    scores = np.array([[2.0, 1.0, 0.0], [0.1, 0.3, 0.2], [-1.0, -5.0, -0.5], [0.0, 0.0, 9.0]])
    y_true = [0, 1, 0, 2]
    assert accuracy(y_true, scores) == 0.75
    np.testing.assert_array_equal(confusion_matrix(y_true, scores),
                                  confusion_matrix(y_true, [0, 1, 2, 2]))
    # the number of score columns fixes K even if the last class never occurs
    assert confusion_matrix([0, 1], [[1.0, 0, 0, 0], [0, 1.0, 0, 0]]).shape == (4, 4)


def test_class_never_predicted_has_zero_precision_without_warning():
    with np.errstate(all="raise"):  # any 0/0 would raise FloatingPointError
        p, r, f, s = precision_recall_f1([0, 1, 2, 2], [0, 1, 1, 1])
    assert p[2] == 0.0 and r[2] == 0.0 and f[2] == 0.0 and s[2] == 2
    assert p[1] == pytest.approx(1 / 3) and r[1] == 1.0


def test_class_absent_everywhere_is_zero_and_excluded_from_macro():
    p, r, f, s = precision_recall_f1([0, 2], [0, 2], num_classes=4)
    assert p.tolist() == [1.0, 0.0, 1.0, 0.0]
    assert s.tolist() == [1, 0, 1, 0]
    assert macro_f1([0, 2], [0, 2], num_classes=4) == 1.0  # classes 1 and 3 occur nowhere
    rep = classification_report([0, 2], [0, 2], num_classes=4)
    assert rep["macro"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0}


def test_all_wrong():
    assert accuracy([0, 1], [1, 0]) == 0.0
    assert macro_f1([0, 1], [1, 0]) == 0.0


def test_classification_report_is_json_and_consistent():
    rep = classification_report(Y_TRUE, Y_PRED)
    text = json.dumps(rep)  # plain Python types only
    assert json.loads(text) == rep
    assert rep["num_samples"] == 10 and rep["num_classes"] == 4
    assert rep["accuracy"] == 0.7
    assert rep["per_class"]["support"] == [3, 2, 4, 1]
    assert rep["confusion_matrix"] == confusion_matrix(Y_TRUE, Y_PRED).tolist()
    assert rep["macro"]["f1"] == pytest.approx(macro_f1(Y_TRUE, Y_PRED))
    assert all(type(v) is float for v in rep["per_class"]["f1"])


def test_accepts_lists_and_integral_floats():
    assert accuracy([0, 1, 2], np.array([0.0, 1.0, 1.0])) == pytest.approx(2 / 3)


# ----------------------------------------------------------------------------- errors


def test_empty_input_raises():
    # Documented choice: metrics on 0 samples are undefined and raise DataError.
    for fn in (accuracy, confusion_matrix, precision_recall_f1, macro_f1, classification_report):
        with pytest.raises(DataError, match="empty"):
            fn(np.array([], dtype=int), np.array([], dtype=int))


def test_length_mismatch():
    with pytest.raises(ShapeError, match="3 and 2"):
        accuracy([0, 1, 2], [0, 1])
    with pytest.raises(ShapeError, match="3 and 2"):
        confusion_matrix([0, 1, 2], np.zeros((2, 3)))


@pytest.mark.parametrize(
    "y_true, y_pred, err, message",
    [
        ([0, -1], [0, 1], DataError, "non-negative"),
        ([0, 1], [0, -2], DataError, "non-negative"),
        ([0, 1], [0.2, 0.9], DataError, "non-integer"),
        ([0.5, 1], [0, 1], DataError, "non-integer"),
        (["a", "b"], [0, 1], DataError, "integer class labels"),
        ([[0, 1]], [0, 1], ShapeError, "1-D"),
        ([0, 1], np.zeros((2, 2, 2)), ShapeError, r"\(N, C\)"),
        ([0, 1], np.array([[0.0, np.nan], [1.0, 0.0]]), DataError, "NaN"),
        ([0, 1], np.zeros((2, 0)), ShapeError, "at least one column"),
    ],
)
def test_bad_labels(y_true, y_pred, err, message):
    with pytest.raises(err, match=message):
        precision_recall_f1(y_true, y_pred)


def test_num_classes_validation():
    with pytest.raises(DataError, match="num_classes=2.*label 2"):
        confusion_matrix([0, 2], [0, 1], num_classes=2)
    with pytest.raises(DataError, match="positive int"):
        confusion_matrix([0, 1], [0, 1], num_classes=0)
    with pytest.raises(ShapeError, match="3 columns"):
        confusion_matrix([0, 1], np.zeros((2, 3)), num_classes=4)


# ----------------------------------------------------------------------------- against scikit-learn

labels_pairs = st.integers(1, 60).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 6), min_size=n, max_size=n),
        st.lists(st.integers(0, 6), min_size=n, max_size=n),
    )
)


@pytest.mark.filterwarnings("ignore::UserWarning")  # sklearn's single-label notice
@settings(max_examples=150, deadline=None)
@given(labels_pairs)
def test_matches_sklearn(pair):
    skm = pytest.importorskip("sklearn.metrics")
    y_true, y_pred = (np.array(v) for v in pair)
    k = int(max(y_true.max(), y_pred.max())) + 1
    labels = list(range(k))

    assert accuracy(y_true, y_pred) == pytest.approx(skm.accuracy_score(y_true, y_pred))
    np.testing.assert_array_equal(confusion_matrix(y_true, y_pred),
                                  skm.confusion_matrix(y_true, y_pred, labels=labels))
    p, r, f, s = precision_recall_f1(y_true, y_pred)
    sp, sr, sf, ss = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average=None, zero_division=0)
    np.testing.assert_allclose(p, sp)
    np.testing.assert_allclose(r, sr)
    np.testing.assert_allclose(f, sf)
    np.testing.assert_array_equal(s, ss)
    # macro over the classes present in y_true or y_pred == sklearn's default labels
    assert macro_f1(y_true, y_pred) == pytest.approx(
        skm.f1_score(y_true, y_pred, average="macro", zero_division=0))
    rep = classification_report(y_true, y_pred)
    assert rep["macro"]["precision"] == pytest.approx(
        skm.precision_score(y_true, y_pred, average="macro", zero_division=0))
    assert rep["macro"]["recall"] == pytest.approx(
        skm.recall_score(y_true, y_pred, average="macro", zero_division=0))


@pytest.mark.filterwarnings("ignore::UserWarning")
@settings(max_examples=50, deadline=None)
@given(st.integers(1, 40), st.integers(1, 6), st.integers(0, 2**32 - 1))
def test_scores_match_sklearn_on_argmax(n, k, seed):
    skm = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(n, k))
    y_true = rng.integers(0, k, size=n)
    y_pred = scores.argmax(axis=1)
    np.testing.assert_array_equal(confusion_matrix(y_true, scores),
                                  skm.confusion_matrix(y_true, y_pred, labels=list(range(k))))
    assert accuracy(y_true, scores) == pytest.approx(skm.accuracy_score(y_true, y_pred))
