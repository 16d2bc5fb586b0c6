"""Tests of sparsenet.data: embedded digits, seeded stratified split, array-file loading."""

import json

import numpy as np
import pytest

from sparsenet.data import Dataset, load_arrays, load_dataset, load_digits, train_test_split
from sparsenet.data import digits as digits_module
from sparsenet.errors import ConfigError, DataError, DTypeError, ShapeError

# ----------------------------------------------------------------------------- embedded digits


def test_digits_shapes_dtypes_and_range():
    x, y = load_digits()
    assert x.shape == (1797, 1, 8, 8) and x.dtype == np.float32 and x.flags.c_contiguous
    assert y.shape == (1797,) and y.dtype == np.int64
    assert x.min() == 0.0 and x.max() == 1.0
    # normalised values are exact multiples of 1/16
    np.testing.assert_array_equal(x * 16, np.round(x * 16))
    assert set(np.unique(y).tolist()) == set(range(10))


def test_digits_flatten_raw_and_dtype():
    x, _ = load_digits(flatten=True, normalize=False, dtype=np.float64)
    assert x.shape == (1797, 64) and x.dtype == np.float64
    assert x.max() == 16.0 and x.min() == 0.0
    x4, _ = load_digits()
    np.testing.assert_array_equal(x.reshape(1797, 1, 8, 8) / 16, x4)


def test_digits_class_counts_match_uci():
    _, y = load_digits()
    counts = np.bincount(y, minlength=10)
    assert counts.sum() == 1797
    assert counts.tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


def test_digits_known_first_image():
    # sklearn's digits.images[0] (a zero), as published in the UCI file
    x, y = load_digits(normalize=False, flatten=True)
    assert y[0] == 0 and y[1] == 1
    assert x[0, :8].tolist() == [0, 0, 5, 13, 9, 1, 0, 0]


def test_digits_returns_fresh_copies():
    x1, y1 = load_digits()
    x1[:] = -1
    y1[:] = -1
    x2, y2 = load_digits()
    assert x2.min() == 0.0 and y2.min() == 0


def test_digits_rejects_integer_dtype():
    with pytest.raises(DTypeError, match="floating"):
        load_digits(dtype=np.int32)


def test_digits_matches_sklearn():
    datasets = pytest.importorskip("sklearn.datasets")
    d = datasets.load_digits()
    x, y = load_digits(normalize=False)
    np.testing.assert_array_equal(x[:, 0], d.images)
    np.testing.assert_array_equal(y, d.target)


def _write_digits(path, images, labels):
    np.savez_compressed(path, images=images, labels=labels)
    return path


@pytest.mark.parametrize(
    "images, labels, message",
    [
        (np.zeros((1797, 8, 8), np.float64), np.zeros(1797, np.uint8), "'images' must be uint8"),
        (np.zeros((100, 8, 8), np.uint8), np.zeros(1797, np.uint8), r"shape \(1797, 8, 8\)"),
        (np.zeros((1797, 8, 8), np.uint8), np.zeros(1796, np.uint8), r"shape \(1797,\)"),
        (np.full((1797, 8, 8), 17, np.uint8), np.zeros(1797, np.uint8), "0..16"),
        (np.zeros((1797, 8, 8), np.uint8), np.full(1797, 10, np.uint8), "0..9"),
    ],
)
def test_digits_file_validation(tmp_path, images, labels, message):
    path = _write_digits(tmp_path / "bad.npz", images, labels)
    with pytest.raises(DataError, match=message):
        digits_module._read_digits_file(path)


def test_digits_file_missing_key_and_garbage(tmp_path):
    np.savez(tmp_path / "k.npz", images=np.zeros((1797, 8, 8), np.uint8))
    with pytest.raises(DataError, match="missing.*labels"):
        digits_module._read_digits_file(tmp_path / "k.npz")
    (tmp_path / "g.npz").write_bytes(b"not a zip file at all")
    with pytest.raises(DataError, match="cannot be read"):
        digits_module._read_digits_file(tmp_path / "g.npz")


def test_embedded_file_is_small_and_valid():
    from importlib import resources

    ref = resources.files("sparsenet.data").joinpath("digits.npz")
    assert len(ref.read_bytes()) < 100_000
    assert resources.files("sparsenet.data").joinpath("DIGITS_LICENSE.txt").is_file()


# ----------------------------------------------------------------------------- split


def _toy(n=103, k=4, seed=1):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, size=n)
    x = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    return x, y


def test_split_sizes_and_partition():
    x, y = _toy()
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_fraction=0.25, seed=0)
    assert len(x_te) == round(0.25 * 103) and len(x_tr) + len(x_te) == 103
    # every sample lands in exactly one part, with its own label
    rows = np.concatenate([x_tr[:, 0], x_te[:, 0]]).astype(int) // 3
    assert sorted(rows.tolist()) == list(range(103))
    np.testing.assert_array_equal(np.concatenate([y_tr, y_te]), y[rows])


@pytest.mark.parametrize("stratify", [True, False])
def test_split_same_seed_identical_other_seed_differs(stratify):
    x, y = _toy()
    a = train_test_split(x, y, seed=7, stratify=stratify)
    b = train_test_split(x, y, seed=7, stratify=stratify)
    c = train_test_split(x, y, seed=8, stratify=stratify)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[1], c[1])


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.333, 0.5, 0.9])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_split_is_stratified(fraction, seed):
    _, y = load_digits()
    x = np.arange(len(y))
    _, _, y_tr, y_te = train_test_split(x, y, test_fraction=fraction, seed=seed)
    counts = np.bincount(y, minlength=10)
    test_counts = np.bincount(y_te, minlength=10)
    expected = counts * len(y_te) / len(y)
    assert np.all(np.abs(test_counts - expected) < 1.0), (test_counts, expected)
    np.testing.assert_array_equal(np.bincount(y_tr, minlength=10) + test_counts, counts)


def test_split_stratified_with_non_integer_labels():
    y = np.array(["a"] * 8 + ["b"] * 4)
    x = np.zeros((12, 2))
    _, _, y_tr, y_te = train_test_split(x, y, test_fraction=0.25, seed=3)
    assert sorted(y_te.tolist()) == ["a", "a", "b"]


def test_split_not_stratified_differs_from_stratified():
    x, y = _toy()
    s = train_test_split(x, y, seed=0, stratify=True)
    u = train_test_split(x, y, seed=0, stratify=False)
    assert len(s[1]) == len(u[1])
    assert not np.array_equal(s[1], u[1])


def test_split_output_is_shuffled_not_sorted_by_class():
    _, y = load_digits()
    _, _, y_tr, _ = train_test_split(np.zeros((len(y), 1)), y, seed=0)
    assert np.any(np.diff(y_tr) < 0)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5, float("nan"), "0.2", True])
def test_split_rejects_bad_fraction(fraction):
    x, y = _toy()
    with pytest.raises(ConfigError, match="test_fraction"):
        train_test_split(x, y, test_fraction=fraction)


@pytest.mark.parametrize("seed", [-1, 1.5, None])
def test_split_rejects_bad_seed(seed):
    x, y = _toy()
    with pytest.raises(ConfigError, match="seed"):
        train_test_split(x, y, seed=seed)


def test_split_rejects_length_mismatch_and_tiny_input():
    x, y = _toy()
    with pytest.raises(ShapeError, match="103.*102"):
        train_test_split(x, y[:-1])
    with pytest.raises(DataError, match="at least 2"):
        train_test_split(x[:1], y[:1])


# ----------------------------------------------------------------------------- array files


def test_npz_roundtrip_unsplit(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 2, 3)).astype(np.float64)
    y = rng.integers(0, 3, size=40).astype(np.int32)
    np.savez(tmp_path / "d.npz", x=x, y=y, extra=np.zeros(2))
    arrays = load_arrays(tmp_path / "d.npz")
    assert set(arrays) == {"x", "y"}
    assert arrays["x"].dtype == np.float32 and arrays["x"].flags.c_contiguous
    assert arrays["y"].dtype == np.int64
    np.testing.assert_allclose(arrays["x"], x, rtol=1e-6)
    np.testing.assert_array_equal(arrays["y"], y)


def test_npz_roundtrip_presplit_and_load_dataset(tmp_path):
    rng = np.random.default_rng(0)
    parts = {
        "x_train": rng.random((30, 4)), "y_train": rng.integers(0, 5, 30),
        "x_test": rng.random((10, 4)), "y_test": np.arange(10) % 3,
    }
    parts["y_train"][0] = 4
    path = tmp_path / "pre.npz"
    np.savez_compressed(path, **parts)
    ds = load_dataset(str(path), test_fraction=0.5, seed=123)  # split settings ignored
    assert isinstance(ds, Dataset) and ds.name == "pre" and ds.num_classes == 5
    np.testing.assert_allclose(ds.x_train, parts["x_train"].astype(np.float32))
    np.testing.assert_array_equal(ds.y_test, parts["y_test"])
    assert (ds.n_train, ds.n_test) == (30, 10)


def test_npy_pair_and_flatten(tmp_path):
    x = np.random.default_rng(0).random((20, 1, 2, 2), dtype=np.float32)
    y = np.arange(20) % 2
    np.save(tmp_path / "xs.npy", x)
    np.save(tmp_path / "ys.npy", y.astype(np.float64))  # integral floats are accepted
    ds = load_dataset((tmp_path / "xs.npy", tmp_path / "ys.npy"), flatten=True, test_fraction=0.2)
    assert ds.name == "xs" and ds.num_classes == 2
    assert ds.x_train.shape == (16, 4) and ds.x_test.shape == (4, 4)
    assert ds.x_train.flags.c_contiguous and ds.y_train.dtype == np.int64
    assert np.bincount(ds.y_test).tolist() == [2, 2]
    # rows survive intact: each test row is one of the original rows with its own label
    flat = x.reshape(20, 4)
    for row, label in zip(ds.x_test, ds.y_test):
        (i,) = np.flatnonzero((flat == row).all(axis=1))
        assert y[i] == label


def _bad_npz(tmp_path, **arrays):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    return path


X = np.zeros((6, 2))
Y = np.array([0, 1, 0, 1, 0, 1])


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"x": X}, r"missing arrays \['y'\]"),
        ({"a": X, "b": Y}, "expected keys"),
        ({"x_train": X, "y_train": Y, "x_test": X}, r"missing arrays \['y_test'\]"),
        ({"x": X, "y": Y, "x_train": X}, "ambiguous"),
        ({"x": np.zeros(6), "y": Y}, r"x must have shape \(N, features...\)"),
        ({"x": X, "y": Y[:5]}, "expected 6 labels.*found 5"),
        ({"x": X, "y": Y.reshape(6, 1)}, "1-D"),
        ({"x": np.where(np.eye(6, 2) > 0, np.nan, 0.0), "y": Y}, "finite.*NaN"),
        ({"x": np.full((6, 2), np.inf), "y": Y}, "finite.*inf"),
        ({"x": np.full((6, 2), 1e300), "y": Y}, "finite.*inf"),  # overflows float32
        ({"x": X, "y": Y + 0.5}, "integers"),
        ({"x": X, "y": np.array([0, 1, 0, np.nan, 0, 1])}, "finite integers"),
        ({"x": X, "y": Y - 1}, "non-negative"),
        ({"x": X, "y": np.array(list("abcdef"))}, "integer class labels"),
        ({"x": X.astype(complex), "y": Y}, "real numbers"),
        ({"x": np.zeros((0, 2)), "y": np.zeros(0, int)}, "no samples"),
        ({"x_train": X, "y_train": Y, "x_test": np.zeros((2, 3)), "y_test": Y[:2]}, "same shape"),
    ],
)
def test_load_arrays_errors(tmp_path, arrays, message):
    path = _bad_npz(tmp_path, **arrays)
    with pytest.raises(DataError, match=message):
        load_arrays(path)
    with pytest.raises(DataError, match=message):  # the same errors surface through load_dataset
        load_dataset(path)


def test_load_arrays_file_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_arrays(tmp_path / "nope.npz")
    with pytest.raises(DataError, match="not found"):
        load_arrays((tmp_path / "x.npy", tmp_path / "y.npy"))
    (tmp_path / "data.csv").write_text("1,2\n")
    with pytest.raises(DataError, match=r"expected a \.npz file"):
        load_arrays(tmp_path / "data.csv")
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DataError, match="cannot be read"):
        load_arrays(tmp_path / "broken.npz")
    np.save(tmp_path / "single.npy", X)
    (tmp_path / "single.npz").write_bytes((tmp_path / "single.npy").read_bytes())
    with pytest.raises(DataError, match="single .npy"):
        load_arrays(tmp_path / "single.npz")
    with pytest.raises(DataError, match="pair"):
        load_arrays([tmp_path / "single.npy"])
    with pytest.raises(DataError, match="found int"):
        load_arrays(3)


def test_pickled_arrays_are_refused(tmp_path):
    obj = np.empty(6, dtype=object)
    obj[:] = [0, 1, 0, 1, 0, 1]
    np.savez(tmp_path / "obj.npz", x=X, y=obj)
    with pytest.raises(DataError, match="pickle"):
        load_arrays(tmp_path / "obj.npz")
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "y.npy", obj, allow_pickle=True)
    with pytest.raises(DataError, match="pickle"):
        load_arrays((tmp_path / "x.npy", tmp_path / "y.npy"))


# ----------------------------------------------------------------------------- load_dataset / Dataset


def test_load_dataset_digits():
    ds = load_dataset("digits")
    assert ds.name == "digits" and ds.num_classes == 10
    assert ds.x_train.shape[1:] == (1, 8, 8) and ds.input_shape == (1, 8, 8)
    assert ds.n_train + ds.n_test == 1797 and ds.n_test == 449
    assert ds.x_train.dtype == np.float32 and ds.y_test.dtype == np.int64
    assert ds.x_train.flags.c_contiguous and ds.x_test.flags.c_contiguous
    flat = load_dataset("digits", flatten=True)
    assert flat.x_train.shape == (ds.n_train, 64)
    np.testing.assert_array_equal(flat.x_train, ds.x_train.reshape(ds.n_train, 64))
    again = load_dataset("digits")
    np.testing.assert_array_equal(again.y_train, ds.y_train)
    other = load_dataset("digits", seed=1)
    assert not np.array_equal(other.y_train, ds.y_train)
    assert "digits" in repr(ds) and "(1348, 1, 8, 8)" in repr(ds)


def test_load_dataset_unknown_name():
    with pytest.raises(ConfigError, match="unknown dataset 'mnist'.*digits"):
        load_dataset("mnist")
    with pytest.raises(ConfigError, match="found float"):
        load_dataset(1.0)


def test_dataset_is_frozen_and_validates():
    x = np.zeros((4, 2), np.float32)
    y = np.array([0, 1, 0, 1])
    ds = Dataset(x, y, x, y, name="t", num_classes=2)
    with pytest.raises(AttributeError):
        ds.name = "other"
    with pytest.raises(DTypeError, match="float32"):
        Dataset(x.astype(np.float64), y, x, y, name="t", num_classes=2)
    with pytest.raises(DTypeError, match="C-contiguous"):
        Dataset(np.asfortranarray(np.zeros((4, 3), np.float32)), y, np.zeros((4, 3), np.float32), y,
                name="t", num_classes=2)
    with pytest.raises(DTypeError, match="int64"):
        Dataset(x, y.astype(np.int32), x, y, name="t", num_classes=2)
    with pytest.raises(ShapeError, match=r"shape \(4,\)"):
        Dataset(x, y[:3], x, y, name="t", num_classes=2)
    with pytest.raises(DataError, match=r"\[0, 2\)"):
        Dataset(x, y + 1, x, y, name="t", num_classes=2)
    with pytest.raises(ShapeError, match="same shape"):
        Dataset(x, y, np.zeros((4, 3), np.float32), y, name="t", num_classes=2)


def test_digits_arrays_json_free_of_pickle():
    # The embedded archive holds only plain uint8 arrays: loading never needs pickle.
    from importlib import resources

    with resources.files("sparsenet.data").joinpath("digits.npz").open("rb") as fh:
        with np.load(fh, allow_pickle=False) as z:
            info = {k: [str(z[k].dtype), list(z[k].shape)] for k in z.files}
    assert json.loads(json.dumps(info)) == {"images": ["uint8", [1797, 8, 8]], "labels": ["uint8", [1797]]}
