"""The pruning issue's acceptance figures on the embedded digits (test split), asserted."""

import copy

import numpy as np
import pytest

import sparsenet as sn
from sparsenet.data import load_dataset
from sparsenet.prune import compiled as compile_model
from sparsenet.prune import prune
from sparsenet.summary import summarize


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def lenet(digits):
    model = sn.build_model("lenet300", seed=0)
    sn.fit(model, digits.x_train, digits.y_train, epochs=40, batch_size=32, seed=0, quiet=True)
    return model


def test_lenet_90_percent_global_magnitude_within_one_point(lenet, digits):
    dense_acc = sn.evaluate(lenet, digits.x_test, digits.y_test)["accuracy"]
    model = copy.deepcopy(lenet)
    result = prune(model, method="magnitude", scope="global", sparsity=0.9,
                   train_data=(digits.x_train, digits.y_train), finetune_epochs=40, seed=0)
    assert result.sparsity == pytest.approx(0.9, abs=1e-6)
    compiled = compile_model(model, "csr")
    acc = sn.evaluate(compiled, digits.x_test, digits.y_test)["accuracy"]
    assert acc >= dense_acc - 0.01, (acc, dense_acc)
    totals = summarize(compiled)["totals"]
    assert totals["stored_params"] <= 0.11 * totals["params"]  # biases included
    assert totals["total_bytes"] <= 0.18 * totals["dense_bytes"]  # index overhead included


def test_mlp_neuron_pruning_shrinks_and_computes_the_same(digits):
    model = sn.build_model("mlp", seed=0)
    sn.fit(model, digits.x_train, digits.y_train, epochs=5, seed=0, quiet=True)
    prune(model, granularity="neuron", sparsity=0.5)
    masked_out = sn.predict(model, digits.x_test)
    small = compile_model(model, "dense")
    assert [l.weight.shape for l in small.layers if hasattr(l, "weight")] == [(128, 64), (64, 128), (10, 64)]
    np.testing.assert_allclose(sn.predict(small, digits.x_test), masked_out, rtol=1e-5, atol=1e-5)
    assert summarize(small)["totals"]["params"] < 0.5 * summarize(sn.build_model("mlp"))["totals"]["params"]


def test_block_pruning_gives_bsr_and_nm_gives_the_exact_pattern(lenet):
    model = copy.deepcopy(lenet)
    prune(model, granularity="block4x4", sparsity=0.75)
    compiled = compile_model(model, "bsr4x4")
    for layer in compiled.layers:
        if hasattr(layer, "weight"):
            assert isinstance(layer.weight, sn.BSR) and layer.weight.blocksize == (4, 4)
    model = copy.deepcopy(lenet)
    prune(model, granularity="2:4")
    for layer in model.layers:
        if hasattr(layer, "weight"):
            mask = layer.weight_param.mask
            full = mask[:, : mask.shape[1] // 4 * 4].reshape(mask.shape[0], -1, 4)
            assert np.all(full.sum(axis=2) == 2)
