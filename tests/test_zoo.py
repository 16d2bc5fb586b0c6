"""The zoo models reach their accuracy targets on the embedded digits (test split), reproducibly."""

import json

import numpy as np
import pytest

import sparsenet as sn
from sparsenet.cli import main
from sparsenet.data import load_dataset

TARGETS = {"mlp": 0.97, "lenet300": 0.97, "cnn": 0.98}


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_cli_train_meets_target(name, tmp_path, capsys):
    out = tmp_path / f"{name}.npz"
    assert main(["train", "--model", name, "--dataset", "digits", "-o", str(out), "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["test_accuracy"] >= TARGETS[name], figures
    # the saved model reproduces the reported accuracy
    ds = load_dataset("digits")
    model = sn.load(out)
    acc = sn.evaluate(model, ds.x_test, ds.y_test)["accuracy"]
    assert acc == pytest.approx(figures["test_accuracy"])


def test_training_is_bit_reproducible():
    ds = load_dataset("digits")
    weights = []
    for seed in (3, 3, 4):
        m = sn.build_model("lenet300", seed=seed)
        sn.fit(m, ds.x_train[:300], ds.y_train[:300], epochs=2, seed=seed, quiet=True)
        weights.append(np.concatenate([p.data.ravel() for p in m.parameters()]))
    assert np.array_equal(weights[0], weights[1])
    assert not np.array_equal(weights[0], weights[2])


def test_build_model_rejects_unknown_name():
    with pytest.raises(sn.SparsenetError, match="unknown model 'nope'"):
        sn.build_model("nope")


def test_cnn_needs_image_input_shape():
    with pytest.raises(sn.SparsenetError, match="channels, height, width"):
        sn.build_model("cnn", input_shape=(64,))
    assert sn.build_model("mlp", input_shape=(20,)).layers[1].in_features == 20
