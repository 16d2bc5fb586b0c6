"""Pruning, compiling and int8 on graphs (`sparsenet.nn.Graph`): every criterion and every
granularity; the compiled copy computes what the masked model computes, in every format and with
"auto"; whole units follow the graph's dependency groups (tests/test_groups.py has the rest);
`Graph.replace` checks what it is given."""

import numpy as np
import pytest

import sparsenet as sn
from sparsenet.errors import ConfigError, ShapeError
from sparsenet.nn import Add, Concat, Graph, Linear, ReLU, Tanh, inference
from sparsenet.prune import compiled, layer_mask, lottery_ticket, prune, sensitivity_scan
from sparsenet.prune.importance import CRITERIA
from sparsenet.quantize import quantize_model


def _graph(seed=0):
    """x -> fc1 -> relu -> fc2 -> (+ relu) -> tanh -> concat with fc1 -> head: a residual Add and a
    Concat, three weighted nodes."""
    nodes = [("fc1", Linear(16, 32, seed=seed), ["x"]), ("relu", ReLU(), ["fc1"]),
             ("fc2", Linear(32, 32, seed=seed + 1), ["relu"]), ("res", Add(), ["fc2", "relu"]),
             ("act", Tanh(), ["res"]), ("cat", Concat(), ["act", "fc1"]), ("head", Linear(64, 4, seed=seed + 2), ["cat"])]
    return Graph({"x": (16,)}, nodes, "head")


def _data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 16)).astype(np.float32), rng.integers(0, 4, n)


def _masked_reference(g, x):
    """The graph's output computed by hand from its (masked) dense weights."""
    w = {n.name: (n.op.weight.to_dense(), n.op.bias.data) for n in g.nodes if isinstance(n.op, Linear)}
    h1 = x @ w["fc1"][0].T + w["fc1"][1]
    r = np.maximum(h1, 0)
    act = np.tanh(r @ w["fc2"][0].T + w["fc2"][1] + r)
    return np.concatenate([act, h1], axis=1) @ w["head"][0].T + w["head"][1]


@pytest.mark.parametrize("method", sorted(set(CRITERIA) - {"slimming", "movement", "frequency"}))
def test_every_criterion_prunes_a_graph(method):
    g = _graph()
    x, y = _data()
    result = prune(g, method=method, sparsity=0.75, scope="layer", data=(x, y))
    assert set(result.layers) == {"fc1", "fc2", "head"}
    for name, entry in result.layers.items():
        assert abs(entry["reached"] - 0.75) < 0.01, (name, entry)
        mask = layer_mask(g.nodes[[n.name for n in g.nodes].index(name)].op)
        assert abs(mask.mean() - 0.25) < 0.01
    np.testing.assert_allclose(g.predict(x), _masked_reference(g, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("granularity", ["unstructured", "block4x4", "2:4"])
def test_granularities_and_global_scope_on_a_graph(granularity):
    g = _graph(seed=3)
    prune(g, method="magnitude", sparsity=0.5, scope="global", granularity=granularity, exclude=["head"])
    fc1, fc2, head = (n.op for n in g.nodes if isinstance(n.op, Linear))
    assert layer_mask(head).all()  # excluded by node name
    for layer in (fc1, fc2):
        mask = layer_mask(layer)
        if granularity == "2:4":
            assert (mask.reshape(mask.shape[0], -1, 4).sum(axis=2) == 2).all()
        elif granularity == "block4x4":
            blocks = mask.reshape(mask.shape[0] // 4, 4, mask.shape[1] // 4, 4)
            assert np.isin(blocks.sum(axis=(1, 3)), (0, 16)).all()
    total = layer_mask(fc1).size + layer_mask(fc2).size
    assert abs(1 - (layer_mask(fc1).sum() + layer_mask(fc2).sum()) / total - 0.5) < 0.01


@pytest.mark.parametrize("spec", ["dense", "csr", "bsr4x4", "auto"])
def test_compiled_graph_computes_what_the_masked_graph_computes(spec, tmp_path):
    g = _graph(seed=5)
    x, _ = _data(32, seed=5)
    prune(g, method="magnitude", sparsity=0.8, scope="global")
    want = _masked_reference(g, x)
    c = compiled(g, spec, batch_size=32, repeats=1, min_time=1e-4)
    assert isinstance(c, Graph) and c is not g
    assert all(isinstance(n.op.weight, sn.formats.Dense) for n in g.nodes if isinstance(n.op, Linear))  # untouched
    formats = {n: e["format"] for n, e in c.meta["compile"]["layers"].items()}
    assert set(formats) == {"fc1", "fc2", "head"} and (spec == "auto" or set(formats.values()) == {spec})
    for node in c.nodes:
        if isinstance(node.op, Linear):
            assert node.op.weight.spec == formats[node.name]
    np.testing.assert_allclose(c.predict(x), want, rtol=1e-5, atol=1e-5)
    path = tmp_path / "g.safetensors"
    sn.save_model(c, path)
    np.testing.assert_allclose(sn.load(path).predict(x), want, rtol=1e-5, atol=1e-5)
    q = quantize_model(c)
    assert isinstance(q, Graph) and set(q.meta["quantization"]["layers"]) == {"fc1", "fc2", "head"}
    with inference(q):
        np.testing.assert_allclose(q.predict(x), want, rtol=0, atol=0.1)  # int8 rounding


def test_removing_units_from_a_graph_follows_its_dependency_groups():
    """fc1's neurons reach fc2 (read), the residual Add (tied to fc2's outputs) and the Concat (two
    column ranges of the head): one group; the masked graph and the compiled one compute the same."""
    g = _graph()
    x, y = _data(32)
    result = prune(g, sparsity=0.5, granularity="neuron")
    assert result.layers["fc1"]["before"] == 32 and result.layers["fc1"]["after"] == 16
    assert set(result.layers["fc1"]["nodes"]) == {"fc1", "fc2", "head"}
    want = g.predict(x)
    np.testing.assert_allclose(want, _masked_reference(g, x), rtol=1e-5, atol=1e-5)
    small = compiled(g, "dense")
    assert small.meta["compile"]["removed_units"]["fc1"]["after"] == 16
    w = {n.name: n.op.weight.shape for n in small.nodes if isinstance(n.op, Linear)}
    assert w == {"fc1": (16, 16), "fc2": (16, 16), "head": (4, 32)}
    np.testing.assert_allclose(small.predict(x), want, rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigError, match="slimming: group 'fc1'.*no BatchNorm"):
        prune(_graph(), sparsity=0.5, granularity="neuron", method="slimming")
    with pytest.raises(ConfigError, match="granularity 'head': no group of kind heads"):
        prune(_graph(), sparsity=0.5, granularity="head")


def test_lottery_tickets_and_sensitivity_scans_of_whole_units_are_refused_on_graphs():
    g = _graph()
    before = [n.op.weight.to_dense().copy() for n in g.nodes if isinstance(n.op, Linear)]
    x, y = _data(32)
    for call in (lambda: lottery_ticket(g, (x, y), sparsity=0.5, granularity="neuron", epochs=50),
                 lambda: sensitivity_scan(g, (x, y), granularity="neuron", time_layers=False)):
        with pytest.raises(ConfigError, match="not supported on a Graph yet"):
            call()  # refused before anything changes (no training, no mask)
    after = [n.op.weight.to_dense() for n in g.nodes if isinstance(n.op, Linear)]
    assert all(np.array_equal(a, b) for a, b in zip(before, after))
    assert all(n.op.weight_param.mask is None for n in g.nodes if isinstance(n.op, Linear))


def test_lottery_ticket_and_sensitivity_scan_on_a_graph():
    x, y = _data(96, seed=1)
    g = _graph(seed=1)
    result = lottery_ticket(g, (x, y), sparsity=0.5, rounds=2, epochs=1, batch_size=32)
    masks = [layer_mask(n.op) for n in g.nodes if isinstance(n.op, Linear)]
    assert set(result.layers) == {"fc1", "fc2", "head"}
    assert abs(1 - sum(m.sum() for m in masks) / sum(m.size for m in masks) - 0.5) < 0.01  # global scope
    scan = sensitivity_scan(_graph(seed=1), (x, y), sparsities=(0.5,), time_layers=False)
    assert set(scan["layers"]) == {"fc1", "fc2", "head"}


def test_replace_checks_what_it_is_given_and_leaves_the_graph_as_it_was():
    g = _graph()
    nodes = list(g.nodes)
    with pytest.raises(ConfigError, match="no node 'nope'"):
        g.replace("nope", Linear(16, 32))
    with pytest.raises(ConfigError, match="node 'fc1'.*2 or more|node 'fc1'.*two or more"):
        g.replace("fc1", Add())
    with pytest.raises(ConfigError, match="same Linear object"):
        g.replace("fc1", g.nodes[2].op)
    with pytest.raises(ConfigError, match="same"):
        g.replace("fc1", g)  # the graph inside itself
    with pytest.raises(ShapeError, match="node 'fc2'"):
        g.replace("fc1", Linear(16, 7))  # fc2 reads 32 features
    assert g.nodes == nodes
    new = Linear(16, 32, seed=9)
    g.replace("fc1", new)
    assert g.nodes[0].op is new and "fc1" in new.name


def test_the_prune_command_prunes_and_compiles_a_graph_file(tmp_path, capsys):
    import json

    from sparsenet.cli import main

    g = _graph(seed=7)
    path, out = tmp_path / "g.safetensors", tmp_path / "pruned.safetensors"
    sn.save_model(g, path)
    assert main(["prune", str(path), "-o", str(out), "--sparsity", "0.75", "--format", "csr", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    loaded = sn.load(out)
    assert isinstance(loaded, Graph)
    assert {n.name: n.op.weight.spec for n in loaded.nodes if isinstance(n.op, Linear)} == \
        {"fc1": "csr", "fc2": "csr", "head": "csr"}
    x, _ = _data(8, seed=7)
    np.testing.assert_allclose(loaded.predict(x), _masked_reference(loaded, x), rtol=1e-5, atol=1e-5)
    rows = {r["name"]: r for r in report["report"]["layers"]}
    assert set(rows) == {"fc1", "fc2", "head"} and all(abs(r["sparsity"] - 0.75) < 0.01 for r in rows.values())
    assert report["report"]["totals"]["bytes_after"] < report["report"]["totals"]["bytes_before"]


def test_layer_names_of_a_sequential_may_be_given_as_ints():
    from sparsenet.prune.masks import get_layer, set_layer

    model = sn.build_model("lenet300", seed=0)
    assert get_layer(model, 1) is model.layers[1] and get_layer(model, "1") is model.layers[1]
    new = Linear(64, 300, seed=4)
    set_layer(model, 1, new)
    assert model.layers[1] is new
    with pytest.raises(ConfigError, match="no layer '9'"):
        get_layer(model, 9)
