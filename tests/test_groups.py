"""Dependency groups (`sparsenet.prune.groups`): which channels go together, why some cannot go, and
removal that computes exactly what the masked model computes (`sparsenet.prune.channels`).

The references are independent of the analysis: a channel removed by hand (weights sliced with
NumPy into new layers, attention written out in NumPy) against `remove_channels`; the zoo's groups as
their architectures define them; random small graphs (hypothesis) whose masked and compiled copies
must agree."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sparsenet as sn
from sparsenet.data import load_dataset
from sparsenet.errors import ConfigError
from sparsenet.nn import (GELU, Add, BatchNorm1d, BatchNorm2d, Concat, Conv2d, Div, Embedding, Flatten, GlobalAvgPool2d,
                          Graph, LayerNorm, Linear, MaxPool2d, Module, Mul, ReLU, Reshape, Shift, Sigmoid, Slice,
                          Softmax, Tanh)
from sparsenet.prune import compiled, prune
from sparsenet.prune.channels import dead_classes, group_scores, mask_classes, remove_channels, remove_dead_channels
from sparsenet.prune.groups import analyze, dependency_groups
from sparsenet.prune.importance import CRITERIA, Magnitude


def _random_stats(model, seed=0):
    """BatchNorms with statistics and shifts that are not the identity (a removed channel must
    really carry zeros, not a lucky default)."""
    rng = np.random.default_rng(seed)
    for _, m in model.named_modules():
        if isinstance(m, (BatchNorm1d, BatchNorm2d)):
            m.running_mean[:] = rng.normal(size=m.num_features)
            m.running_var[:] = rng.uniform(0.5, 2.0, m.num_features)
            m.bias.data[:] = rng.normal(size=m.num_features)
            m.weight.data[:] = rng.uniform(0.5, 1.5, m.num_features)
    model.eval()
    return model


def _inputs(g, n=6, seed=1):
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in g.input_shapes.items():
        if name in g.input_dtypes:
            high = min(n.op.num_embeddings for n in g.nodes if name in n.inputs)
            out[name] = rng.integers(0, high, (n, *shape))
        else:
            out[name] = rng.standard_normal((n, *shape)).astype(np.float32)
    return out if len(out) > 1 else next(iter(out.values()))


def _by_name(groups):
    return {g.name: g for g in groups}


def _params(g):
    return sum(p.data.size for _, p in g.named_parameters())


# -- the zoo's groups, as their architectures define them --------------------------------------------
def test_resnet_groups_follow_the_residual_streams():
    groups = _by_name(dependency_groups(sn.build_model("resnet", seed=0)))
    stream = groups["stem"]  # stage 1's identity shortcut ties the stem to every block's last conv
    assert stream.kind == "filters" and stream.size == 16 and stream.prunable
    assert set(stream.nodes) == {"stem", "stem_bn", "s1b1_conv1", "s1b1_conv2", "s1b1_conv2_bn", "s2b1_conv1",
                                 "s2b1_proj"}
    assert set(groups["s2b1_proj"].nodes) == {"s2b1_proj", "s2b1_proj_bn", "s2b1_conv2", "s2b1_conv2_bn",
                                              "s3b1_conv1", "s3b1_proj"}
    assert set(groups["s1b1_conv1"].nodes) == {"s1b1_conv1", "s1b1_conv1_bn", "s1b1_conv2"}
    assert set(groups["s3b1_proj"].nodes) >= {"fc"}  # the pool carries the channels to the classifier
    assert "input" in groups["x"].reason and not groups["x"].prunable
    assert "output" in groups["fc"].reason


def test_mobilenet_depthwise_convolutions_tie_inputs_to_outputs():
    groups = _by_name(dependency_groups(sn.build_model("mobilenet", seed=0)))
    g = groups["b2r1_expand"]
    assert set(g.nodes) == {"b2r1_expand", "b2r1_expand_bn", "b2r1_dw", "b2r1_dw_bn", "b2r1_project"}
    assert g.size == 64 and g.kind == "filters"
    assert "b2r1_dw" not in groups  # a depthwise convolution starts no group of its own


def test_transformer_heads_and_ffn_neurons_and_blocked_model_dimension():
    groups = _by_name(dependency_groups(sn.build_model("transformer", seed=0)))
    heads = groups["l1_q"]
    assert heads.kind == "heads" and heads.size == 2 and set(heads.nodes) == {"l1_q", "l1_k", "l1_v", "l1_out"}
    rows = {node: idx for node, kind, idx in heads.members if kind == "rows"}
    assert [list(i) for i in rows["l1_v"]] == [list(range(16)), list(range(16, 32))]  # dh rows per head
    assert groups["l1_ffn1"].kind == "neurons" and set(groups["l1_ffn1"].nodes) == {"l1_ffn1", "l1_ffn2"}
    model_dim = groups["embed"]
    assert model_dim.kind == "dims" and not model_dim.prunable and "LayerNorm" in model_dim.reason


def test_recommender_embedding_dimensions_map_to_concat_ranges():
    groups = _by_name(dependency_groups(sn.build_model("recommender", seed=0)))
    user, item = groups["user_emb"], groups["item_emb"]
    assert user.kind == item.kind == "dims" and user.size == item.size == 32
    cols = {name: {n: idx for n, kind, idx in g.members if kind == "columns"}["fc1"] for name, g in
            (("user", user), ("item", item))}
    assert [int(i[0]) for i in cols["user"]] == list(range(32))
    assert [int(i[0]) for i in cols["item"]] == list(range(32, 64))  # the second half of the Concat


@pytest.mark.parametrize("name", ["resnet", "mobilenet", "transformer", "recommender", "cnn", "lenet300"])
def test_masked_and_removed_models_compute_the_same_for_every_zoo_model(name):
    model = _random_stats(sn.build_model(name, seed=0))
    g = model if isinstance(model, Graph) else Graph.from_sequential(model)
    a = analyze(g)
    rng = np.random.default_rng(0)
    chosen = set()
    for grp in a.groups():
        free = [c for c, b in zip(grp.classes, grp.blocked) if b is None]
        if len(free) > 1:
            chosen.update(rng.choice(free, size=len(free) // 2, replace=False).tolist())
    assert chosen
    x = _inputs(g)
    mask_classes(g, chosen, a)
    want = g.predict(x)
    assert dead_classes(a) == chosen
    small, report = remove_channels(g, chosen, a)
    assert _params(small) < _params(g)
    np.testing.assert_allclose(small.predict(x), want, rtol=1e-5, atol=1e-5)
    assert all(r["after"] < r["before"] for r in report.values())


# -- by hand -----------------------------------------------------------------------------------------
def _conv(w, b=None, **kw):
    c = Conv2d(w.shape[1], w.shape[0], w.shape[2], bias=b is not None, weight=w.reshape(w.shape[0], -1),
               bias_value=b, **kw)
    return c


def _bn(src, keep):
    bn = BatchNorm2d(len(keep))
    bn.weight.data[:] = src.weight.data[keep]
    bn.bias.data[:] = src.bias.data[keep]
    bn.running_mean[:] = src.running_mean[keep]
    bn.running_var[:] = src.running_var[keep]
    return bn


def test_a_residual_channel_removed_by_hand():
    """x -> a (3x3) -> bn -> relu -> b (3x3) -> bn_b ; x -> p (1x1) -> bn_p ; add -> relu -> pool -> fc:
    channel 2 of the residual sum is b's and p's filter 2, their BatchNorms' channel 2, fc's column 2."""
    rng = np.random.default_rng(0)
    w = {k: rng.standard_normal(s).astype(np.float32) for k, s in
         (("a", (4, 3, 3, 3)), ("b", (5, 4, 3, 3)), ("p", (5, 3, 1, 1)), ("fc", (2, 5)))}
    nodes = [("a", _conv(w["a"], padding=1), ["x"]), ("bn_a", BatchNorm2d(4), ["a"]), ("ra", ReLU(), ["bn_a"]),
             ("b", _conv(w["b"], padding=1), ["ra"]), ("bn_b", BatchNorm2d(5), ["b"]),
             ("p", _conv(w["p"]), ["x"]), ("bn_p", BatchNorm2d(5), ["p"]), ("add", Add(), ["bn_b", "bn_p"]),
             ("r", ReLU(), ["add"]), ("pool", GlobalAvgPool2d(), ["r"]), ("fc", Linear(5, 2, weight=w["fc"]), ["pool"])]
    g = _random_stats(Graph({"x": (3, 6, 6)}, nodes, "fc"))
    groups = _by_name(dependency_groups(g))
    # named after its first source in the graph's order (p reads the input, b comes after a)
    assert set(groups["p"].nodes) == {"b", "bn_b", "p", "bn_p", "fc"}
    prune(g, granularity="filter", sparsity={"p": 0.2})  # 1 of 5 channels: the weakest
    small = compiled(g, "dense")
    gone = small.meta["compile"]["removed_units"]["p"]["removed"]
    assert len(gone) == 1
    keep = [c for c in range(5) if c != gone[0]]
    ops = {n.name: n.op for n in g.nodes}
    ref_nodes = [("a", _conv(w["a"], padding=1), ["x"]), ("bn_a", _bn(ops["bn_a"], list(range(4))), ["a"]),
                 ("ra", ReLU(), ["bn_a"]),
                 ("b", _conv(w["b"][keep], padding=1), ["ra"]), ("bn_b", _bn(ops["bn_b"], keep), ["b"]),
                 ("p", _conv(w["p"][keep]), ["x"]), ("bn_p", _bn(ops["bn_p"], keep), ["p"]),
                 ("add", Add(), ["bn_b", "bn_p"]), ("r", ReLU(), ["add"]), ("pool", GlobalAvgPool2d(), ["r"]),
                 ("fc", Linear(4, 2, weight=w["fc"][:, keep], bias_value=ops["fc"].bias.data), ["pool"])]
    ref = Graph({"x": (3, 6, 6)}, ref_nodes, "fc").eval()
    x = _inputs(g)
    np.testing.assert_allclose(small.predict(x), ref.predict(x), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(small.predict(x), g.predict(x), rtol=1e-5, atol=1e-5)


def _attention(x, wq, wk, wv, wo, bq, bk, bv, bo, heads):
    """Multi-head self-attention written out in NumPy: x [B, T, D_in] -> [B, T, D_out]."""
    b, t, _ = x.shape
    dh = wq.shape[0] // heads

    def split(w, bias):
        return (x @ w.T + bias).reshape(b, t, heads, dh).transpose(0, 2, 1, 3)

    q, k, v = split(wq, bq), split(wk, bk), split(wv, bv)
    s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(dh)
    s = np.exp(s - s.max(-1, keepdims=True))
    mix = (s / s.sum(-1, keepdims=True)) @ v
    return mix.transpose(0, 2, 1, 3).reshape(b, t, heads * dh) @ wo.T + bo


def test_an_attention_head_removed_by_hand():
    model = sn.build_model("transformer", seed=0)
    prune(model, granularity="head", sparsity=0.5)
    small = compiled(model, "dense")
    ops = {n.name: n.op for n in model.nodes}
    sops = {n.name: n.op for n in small.nodes}
    gone = small.meta["compile"]["removed_units"]["l1_q"]["removed"]
    assert len(gone) == 1
    keep = np.r_[0:16] if gone == [1] else np.r_[16:32]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 32, 32)).astype(np.float32)

    def w(name, rows=None, cols=None):
        m = ops[name].weight.to_dense()
        m = m[rows] if rows is not None else m
        return m[:, cols] if cols is not None else m

    want = _attention(x, w("l1_q", keep), w("l1_k", keep), w("l1_v", keep), w("l1_out", None, keep),
                      ops["l1_q"].bias.data[keep], ops["l1_k"].bias.data[keep], ops["l1_v"].bias.data[keep],
                      ops["l1_out"].bias.data, heads=1)
    # the compiled graph's first attention, fed x: its nodes from l1_q to l1_out as a graph of their own
    names = [n.name for n in small.nodes]
    part = [n for n in small.nodes[names.index("l1_q"):names.index("l1_out") + 1]]
    sub = Graph({"h": (32, 32)}, [(n.name, n.op, ["h" if r == "positions" else r for r in n.inputs]) for n in part],
                "l1_out")
    assert sops["l1_q"].weight.shape == (16, 32) and sops["l1_out"].weight.shape == (32, 16)
    np.testing.assert_allclose(sub.predict(x), want, rtol=1e-4, atol=1e-5)


def test_concat_ranges_flatten_and_grouped_convolutions():
    nodes = [("c1", Conv2d(2, 4, 3, padding=1, seed=1), ["x"]), ("r1", ReLU(), ["c1"]),
             ("g", Conv2d(4, 6, 3, padding=1, groups=2, seed=2), ["r1"]),  # 2 inputs, 3 outputs per group
             ("dw", Conv2d(6, 12, 3, padding=1, groups=6, seed=3), ["g"]),  # depthwise, multiplier 2
             ("bn", BatchNorm2d(12), ["dw"]), ("pool", MaxPool2d(2), ["bn"]), ("flat", Flatten(), ["pool"]),
             ("l1", Linear(12 * 4, 5, seed=4), ["flat"]), ("l2", Linear(12 * 4, 3, seed=5), ["flat"]),
             ("cat", Concat(1), ["l1", "l2"]), ("t", Tanh(), ["cat"]), ("out", Linear(8, 2, seed=6), ["t"])]
    g = _random_stats(Graph({"x": (2, 4, 4)}, nodes, "out"))
    groups = _by_name(dependency_groups(g))
    assert groups["c1"].size == 2  # grouped: in-group positions 0 and 1 of both groups go together
    assert [list(i) for i in dict((n, i) for n, k, i in groups["c1"].members if k == "rows")["c1"]] == [[0, 2], [1, 3]]
    assert groups["g"].size == 3 and set(groups["g"].nodes) == {"g", "dw", "bn", "l1", "l2"}
    cols = dict((n, i) for n, k, i in groups["g"].members if k == "columns")["l1"]
    # output position q of each group -> dw channels 2c, 2c+1 -> 4 flattened pixels each
    assert sorted(cols[0].tolist()) == [0, 1, 2, 3, 4, 5, 6, 7, 24, 25, 26, 27, 28, 29, 30, 31]
    out_cols = {n: i for n, k, i in groups["l2"].members if k == "columns"}["out"]
    assert [list(i) for i in out_cols] == [[5], [6], [7]]
    chosen = {groups["c1"].classes[1], groups["g"].classes[0], groups["l2"].classes[2], groups["l1"].classes[0]}
    a = analyze(g)
    x = _inputs(g)
    mask_classes(g, chosen, a)
    small, _ = remove_channels(g, chosen, a)
    sops = {n.name: n.op for n in small.nodes}
    assert (sops["g"].in_channels, sops["g"].out_channels, sops["g"].groups) == (2, 4, 2)
    assert (sops["dw"].in_channels, sops["dw"].out_channels, sops["dw"].groups) == (4, 8, 4)
    assert sops["l1"].weight.shape == (4, 32) and sops["out"].weight.shape == (2, 6)
    np.testing.assert_allclose(small.predict(x), g.predict(x), rtol=1e-5, atol=1e-5)


def test_embedding_dimensions_carry_their_position_shift_and_slices():
    nodes = [("emb", Embedding(20, 6, seed=0), ["tok"]),
             ("pos", Shift(np.random.default_rng(0).standard_normal((1, 4, 6)).astype(np.float32)), ["emb"]),
             ("half", Slice(2, 2, 6), ["pos"]), ("flat", Reshape((-1, 16)), ["half"]), ("fc", Linear(16, 3, seed=1), ["flat"])]
    g = Graph({"tok": (4,)}, nodes, "fc", input_dtypes={"tok": "int64"})
    groups = _by_name(dependency_groups(g))
    unread, read = groups["emb"], groups["emb#1"]  # dimensions 0-1 are sliced away, 2-5 reach fc
    assert unread.kind == read.kind == "dims" and (unread.size, read.size) == (2, 4)
    assert set(unread.nodes) == {"emb", "pos"} and set(read.nodes) == {"emb", "pos", "fc"}
    a = analyze(g)
    chosen = {unread.classes[0], read.classes[1]}  # one before the slice, one inside it
    x = _inputs(g)
    mask_classes(g, chosen, a)
    small, _ = remove_channels(g, chosen, a)
    sops = {n.name: n.op for n in small.nodes}
    assert (sops["half"].start, sops["half"].stop) == (1, 4) and sops["flat"].shape == (-1, 12)
    assert sops["pos"].array.shape == (1, 4, 4)
    np.testing.assert_allclose(small.predict(x), g.predict(x), rtol=1e-5, atol=1e-5)


def test_a_channel_whose_weights_read_only_removed_channels_goes_in_a_second_pass():
    nodes = [("a", Linear(4, 3, seed=0), ["x"]), ("r", ReLU(), ["a"]), ("b", Linear(3, 3, seed=1), ["r"]),
             ("s", ReLU(), ["b"]), ("c", Linear(3, 2, seed=2), ["s"])]
    g = Graph({"x": (4,)}, nodes, "c")
    ops = {n.name: n.op for n in g.nodes}
    ops["a"].weight.data[0] = 0
    ops["a"].bias.data[0] = 0  # a's unit 0 is dead
    ops["b"].weight.data[1] = [2.0, 0, 0]  # b's unit 1 reads only a's unit 0
    ops["b"].bias.data[1] = 0
    small, report = remove_dead_channels(g)
    assert report["a"]["removed"] == [0] and report["b"]["removed"] == [1]
    x = _inputs(g)
    np.testing.assert_allclose(small.predict(x), g.predict(x), rtol=1e-6, atol=1e-6)


# -- what cannot go, and why -------------------------------------------------------------------------
class _Custom(Module):
    def forward(self, x):
        return x * 2.0

    def backward(self, grad):
        return grad * 2.0


@pytest.mark.parametrize("op, reason", [
    (Sigmoid(), "maps 0 to a non-zero value"),
    (LayerNorm(5), "LayerNorm"),
    (Softmax(-1), "Softmax"),
    (_Custom(), "not known to the dependency analysis"),
])
def test_an_op_between_two_layers_that_does_not_carry_zeros_blocks_the_group(op, reason):
    nodes = [("a", Linear(4, 5, seed=0), ["x"]), ("mid", op, ["a"]), ("b", Linear(5, 2, seed=1), ["mid"])]
    g = Graph({"x": (4,)}, nodes, "b")
    grp = _by_name(dependency_groups(g))["a"]
    assert not grp.prunable and reason in grp.reason
    with pytest.raises(ConfigError, match="no group of kind filters/neurons can be pruned.*" + reason.split()[0]):
        prune(g, granularity="neuron", sparsity=0.5)
    a = {n.name: n.op for n in g.nodes}["a"]
    a.weight.data[0] = 0
    a.bias.data[0] = 0
    small, report = remove_dead_channels(g)  # nothing blocked is ever removed, even when its rows are zero
    assert report == {} and {n.name: n.op for n in small.nodes}["a"].weight.shape == (5, 4)


def test_a_divisor_and_a_gate_and_an_output_reached_through_an_add():
    nodes = [("a", Linear(4, 5, seed=0), ["x"]), ("b", Linear(4, 5, seed=1), ["x"]), ("q", Div(), ["a", "b"]),
             ("c", Linear(5, 2, seed=2), ["q"])]
    groups = _by_name(dependency_groups(Graph({"x": (4,)}, nodes, "c")))
    assert "Div" in groups["a"].reason
    nodes = [("a", Linear(4, 5, seed=0), ["x"]), ("s", Sigmoid(), ["a"]), ("b", Linear(4, 5, seed=1), ["x"]),
             ("m", Mul(), ["s", "b"]), ("c", Linear(5, 2, seed=2), ["m"])]
    g = Graph({"x": (4,)}, nodes, "c")
    grp = _by_name(dependency_groups(g))["a"]  # sigmoid(0) * 0 = 0: a gated channel can go
    assert grp.prunable and set(grp.nodes) == {"a", "b", "c"}
    prune(g, granularity="neuron", sparsity=0.4)
    x = _inputs(g)
    np.testing.assert_allclose(compiled(g, "dense").predict(x), g.predict(x), rtol=1e-5, atol=1e-6)
    nodes = [("a", Linear(4, 5, seed=0), ["x"]), ("r", ReLU(), ["a"]), ("b", Linear(5, 5, seed=1), ["r"]),
             ("add", Add(), ["b", "a"])]
    grp = _by_name(dependency_groups(Graph({"x": (4,)}, nodes, "add")))["a"]
    assert not grp.prunable and "output" in grp.reason


def test_dependency_groups_need_input_shapes():
    g = sn.zoo.resnet()  # built without an input shape
    with pytest.raises(ConfigError, match="need every input's shape"):
        dependency_groups(g)


# -- scores over groups ------------------------------------------------------------------------------
@pytest.mark.parametrize("reduce", ["mean", "sum", "max"])
def test_a_channel_score_reduces_its_members_scores(reduce):
    nodes = [("a", Linear(4, 3, seed=0), ["x"]), ("r", ReLU(), ["a"]), ("b", Linear(3, 2, seed=1), ["r"]),
             ("c", Linear(3, 2, seed=2), ["r"]), ("add", Add(), ["b", "c"]), ("o", Linear(2, 1, seed=3), ["add"])]
    g = Graph({"x": (4,)}, nodes, "o")
    a = analyze(g)
    grp = _by_name(a.groups())["a"]
    ops = {n.name: np.abs(n.op.weight.to_dense().astype(np.float64)) for n in g.nodes if isinstance(n.op, Linear)}
    per = np.array([ops["a"].mean(axis=1), ops["b"].mean(axis=0), ops["c"].mean(axis=0)])
    want = {"mean": per.mean(0), "sum": per.sum(0), "max": per.max(0)}[reduce]
    got = group_scores(g, Magnitude(1), [grp], a, reduce=reduce)["a"]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    with pytest.raises(ConfigError, match="unknown group reduction"):
        group_scores(g, Magnitude(1), [grp], a, reduce="median")


def test_global_scope_per_group_targets_exclusion_and_iterative_rounds_on_a_resnet():
    model = _random_stats(sn.build_model("resnet", seed=0))
    r = prune(model, granularity="filter", sparsity={"s1b1_conv1": 0.5, "stem": 0.25})
    assert {n: (v["before"], v["after"]) for n, v in r.layers.items()} == {"stem": (16, 12), "s1b1_conv1": (16, 8)}
    with pytest.raises(ConfigError, match="not prunable groups"):
        prune(sn.build_model("resnet", seed=0), granularity="filter", sparsity={"s1b1_conv2": 0.5})
    model = sn.build_model("resnet", seed=0)
    r = prune(model, granularity="filter", sparsity=0.5, scope="global", exclude=["stem"])
    assert "stem" not in r.layers or r.layers["stem"]["after"] == 16
    removed = sum(v["before"] - v["after"] for v in r.layers.values())
    total = sum(v["before"] for n, v in r.layers.items() if n != "stem")
    assert removed == round(0.5 * total)
    model = sn.build_model("resnet", seed=0)
    ds = load_dataset("digits")
    r = prune(model, granularity="filter", sparsity=0.5, schedule="iterative", rounds=2,
              train_data=(ds.x_train[:64], ds.y_train[:64]), finetune_epochs=1)
    assert all(v["after"] == v["before"] // 2 for v in r.layers.values())
    x = ds.x_test[:8]
    model.eval()
    np.testing.assert_allclose(compiled(model, "dense").predict(x), model.predict(x), rtol=1e-4, atol=1e-5)


def test_network_slimming_scores_groups_by_their_batchnorm_scales():
    model = sn.build_model("resnet", seed=0)
    bn = {n.name: n.op for n in model.nodes}["s1b1_conv1_bn"]
    bn.weight.data[:] = np.arange(16, dtype=np.float32) + 1
    bn.weight.data[[3, 7]] = 0.01
    r = prune(model, granularity="filter", sparsity={"s1b1_conv1": 0.125}, method="slimming")
    small = compiled(model, "dense")
    assert small.meta["compile"]["removed_units"]["s1b1_conv1"]["removed"] == [3, 7]
    assert r.layers["s1b1_conv1"]["after"] == 14


# -- random small graphs -----------------------------------------------------------------------------
@st.composite
def _graphs(draw):
    """A random DAG over [C, 4, 4] maps and [F] vectors: convolutions (plain, grouped, depthwise),
    BatchNorms, activations, residual Adds and gates, Concats, pooling and Flatten, Linears."""
    seed = draw(st.integers(0, 10_000))
    values = {"x": ("map", 2)}  # name -> (kind, channels)
    nodes = []

    def add(op, ins, kind, width):
        name = f"n{len(nodes) + 1}"
        nodes.append((name, op, ins))
        values[name] = (kind, width)
        return name

    for _ in range(draw(st.integers(2, 9))):
        name = draw(st.sampled_from(list(values)[-2:]))  # mostly chains, with some branches
        kind, width = values[name]
        k = len(nodes) + 1
        if kind == "map":
            choice = draw(st.sampled_from(["conv", "grouped", "dw", "bn", "relu", "sigmoid", "pool", "flat", "add"]))
            if choice == "conv" or (choice == "grouped" and width % 2):
                out = draw(st.integers(2, 5))
                add(Conv2d(width, out, 3, padding=1, seed=k), [name], "map", out)
            elif choice == "grouped":
                out = 2 * draw(st.integers(1, 2))
                add(Conv2d(width, out, 3, padding=1, groups=2, seed=k), [name], "map", out)
            elif choice == "dw":
                out = width * draw(st.integers(1, 2))
                add(Conv2d(width, out, 3, padding=1, groups=width, seed=k), [name], "map", out)
            elif choice == "bn":
                add(BatchNorm2d(width), [name], "map", width)
            elif choice == "pool":
                add(GlobalAvgPool2d(), [name], "vec", width)
            elif choice == "flat":
                add(Flatten(), [name], "vec", width * 16)
            elif choice == "add":  # a residual block: conv -> bn -> relu, added back
                h = add(Conv2d(width, width, 3, padding=1, seed=k), [name], "map", width)
                h = add(BatchNorm2d(width), [h], "map", width)
                add(Add(), [name, add(ReLU(), [h], "map", width)], "map", width)
            else:
                add(ReLU() if choice == "relu" else Sigmoid(), [name], "map", width)
        else:
            choice = draw(st.sampled_from(["linear", "bn", "gelu", "sigmoid", "add", "mul", "concat"]))
            if choice in ("add", "mul", "concat"):
                out = width if choice != "concat" else draw(st.integers(2, 5))
                other = add(Linear(width, out, seed=k), [name], "vec", out)
                op = {"add": Add(), "mul": Mul(), "concat": Concat(1)}[choice]
                add(op, [name, other], "vec", width + out if choice == "concat" else width)
            elif choice == "bn":
                add(BatchNorm1d(width), [name], "vec", width)
            elif choice in ("gelu", "sigmoid"):
                add(GELU("none") if choice == "gelu" else Sigmoid(), [name], "vec", width)
            else:
                out = draw(st.integers(2, 6))
                add(Linear(width, out, seed=k), [name], "vec", out)
    last = nodes[-1][0]
    kind, width = values[last]
    if kind == "map":
        last = add(Flatten(), [last], "vec", width * 16)
        width *= 16
    nodes.append(("head", Linear(width, 3, seed=99), [last]))
    used = {r for _, _, ins in nodes for r in ins}
    tails = [n for n, _, _ in nodes if n not in used and n != "head"]  # values nothing reads: outputs too
    return Graph({"x": (2, 4, 4)}, nodes, ["head"] + tails), seed


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_graphs())
def test_random_graphs_masked_and_compiled_agree(case):
    g, seed = case
    _random_stats(g, seed)
    a = analyze(g)
    rng = np.random.default_rng(seed)
    chosen = set()
    for grp in a.groups():
        free = [c for c, b in zip(grp.classes, grp.blocked) if b is None]
        if len(free) > 1:
            chosen.update(rng.choice(free, size=int(rng.integers(1, len(free))), replace=False).tolist())
    x = _inputs(g, 4, seed)
    mask_classes(g, chosen, a)
    want = g.predict(x)
    small, report = remove_dead_channels(g)
    got = small.predict(x)
    want, got = (want, got) if isinstance(want, dict) else ({"o": want}, {"o": got})
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-4, atol=1e-5)
    removed = {(name, c) for name, r in report.items() for c in r["removed"]}
    assert len(removed) >= len(chosen)  # every chosen channel went (and maybe channels that only fed them)
    if chosen:
        assert _params(small) < _params(g)


# -- imported ONNX graphs ----------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore")  # PyTorch's exporters warn about tracing
@pytest.mark.parametrize("arch", ["resnet", "mobilenet", "transformer"])
@pytest.mark.parametrize("exporter", ["legacy", "dynamo"])
def test_imported_pytorch_graphs_prune_by_their_groups(arch, exporter):
    """PyTorch's ResNet (identity and projection shortcuts, a Bottleneck), MobileNetV2 (a depthwise
    convolution with two filters per channel) and TransformerEncoder, through each exporter: every
    group prunes, and the compiled graph computes what the masked one computes."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from test_onnx import _torch_export, _torch_mobilenet, _torch_resnet
    from test_transformer import _torch_classifier

    from sparsenet.onnx import import_onnx

    if arch == "transformer":
        net, x0 = _torch_classifier(False, "gelu", 2), torch.randint(0, 50, (4, 12))
        x = np.random.default_rng(1).integers(0, 50, (6, 12))
        grans = ("head", "neuron")
    else:
        net = _torch_resnet() if arch == "resnet" else _torch_mobilenet(torch.nn.ReLU6)
        x0, x = torch.zeros(2, 1, 8, 8), np.random.default_rng(1).standard_normal((6, 1, 8, 8)).astype(np.float32)
        grans = ("filter",)
    proto = _torch_export(net, x0, exporter, 18)
    model = import_onnx(proto)
    groups = dependency_groups(model)
    kinds = {g.kind for g in groups if g.prunable}
    assert kinds == ({"heads", "neurons"} if arch == "transformer" else {"filters"})
    for gran in grans:
        prune(model, granularity=gran, sparsity=0.5)
    want = model.predict(x)
    small = compiled(model, "dense")
    removed = small.meta["compile"]["removed_units"]
    assert removed and all(r["after"] == r["before"] - r["before"] // 2 for r in removed.values())
    assert _params(small) < _params(model)
    np.testing.assert_allclose(small.predict(x), want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["transformer", "recommender"])
def test_automatic_formats_time_index_models_with_indices(name):
    """'auto' times an Embedding's lookup with indices and the whole graph with its own inputs (it
    fed floats to both, and failed)."""
    model = sn.build_model(name, seed=0)
    prune(model, granularity="neuron", sparsity=0.5)
    small = compiled(model, "auto", repeats=1, min_time=1e-4)
    record = small.meta["compile"]
    assert record["plan"] in ("chosen", "dense", "sparse")
    assert {n for n, r in record["layers"].items() if "timings_us" in r} >= {
        n.name for n in model.nodes if isinstance(n.op, Embedding)}
    x = _inputs(model)
    np.testing.assert_allclose(small.predict(x), model.predict(x), rtol=1e-5, atol=1e-5)


# -- embedding rows, and every criterion over groups --------------------------------------------------
def test_embedding_rows_are_pruned_by_table_and_stored_smaller():
    model = sn.build_model("recommender", seed=0)
    r = prune(model, granularity="embedding-row", sparsity=0.5)
    ops = {n.name: n.op for n in model.nodes}
    for name in ("user_emb", "item_emb"):
        rows = ops[name].weight.to_dense()
        kept = np.any(rows != 0, axis=1)
        assert kept.sum() == rows.shape[0] - rows.shape[0] // 2  # 671 rows: 335 pruned (a tie goes to fewer)
        assert r.layers[name]["reached"] == pytest.approx(0.5, abs=0.01)
    assert set(r.layers) == {"user_emb", "item_emb"}  # only the tables
    x = _inputs(model, 64)
    small = compiled(model, "csr")
    assert all({n.name: n.op for n in small.nodes}[t].weight.nbytes < ops[t].weight.nbytes for t in ("user_emb",
                                                                                                    "item_emb"))
    np.testing.assert_allclose(small.predict(x), model.predict(x), rtol=1e-5, atol=1e-6)
    with pytest.raises(ConfigError, match="prunes Embedding layers; the model has none"):
        prune(sn.build_model("lenet300", seed=0), granularity="embedding-row", sparsity=0.5)


@pytest.mark.parametrize("method", sorted(set(CRITERIA) - {"movement", "slimming", "frequency"}))  # frequency: tables
def test_every_criterion_scores_groups(method):
    """Each criterion's weight scores reach the channels of a graph's groups (data-driven ones with
    calibration data); the compiled graph computes what the masked one computes."""
    ds = load_dataset("digits")
    model = _random_stats(sn.build_model("resnet", seed=0))
    model.train()
    r = prune(model, method=method, granularity="filter", sparsity=0.5, data=(ds.x_train[:64], ds.y_train[:64]))
    assert r.layers and all(v["after"] == v["before"] - v["before"] // 2 for v in r.layers.values())
    model.eval()
    x = ds.x_test[:16]
    np.testing.assert_allclose(compiled(model, "dense").predict(x), model.predict(x), rtol=1e-4, atol=1e-5)
