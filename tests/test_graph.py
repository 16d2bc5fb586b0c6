"""Graphs: structure checks that name the node, forward against a hand-written reference, backward
against finite differences (gradients summed where a value feeds several nodes), training with
`fit`, and lossless conversion from and to `Sequential`."""

import numpy as np
import pytest

import sparsenet as sn
from gradcheck import check_layer_gradients
from sparsenet.errors import ConfigError, ShapeError
from sparsenet.nn import Add, Concat, Div, Flatten, Graph, Linear, Mul, Node, ReLU, Sequential, Sub, Tanh


def _residual(dtype=np.float64, seed=0):
    """x -> fc1 -> relu -> fc2 -> (+ x) -> tanh; and the same value also concatenated with fc1."""
    fc1, fc2, head = Linear(6, 6, seed=seed, dtype=dtype), Linear(6, 6, seed=seed + 1, dtype=dtype), \
        Linear(12, 3, seed=seed + 2, dtype=dtype)
    nodes = [("fc1", fc1, ["x"]), ("relu", ReLU(), ["fc1"]), ("fc2", fc2, ["relu"]), ("res", Add(), ["fc2", "x"]),
             ("act", Tanh(), ["res"]), ("cat", Concat(), ["act", "fc1"]), ("head", head, ["cat"])]
    return Graph({"x": (6,)}, nodes, "head"), (fc1, fc2, head)


def _reference(x, fc1, fc2, head):
    w1, b1 = fc1.weight.to_dense(), fc1.bias.data
    w2, b2 = fc2.weight.to_dense(), fc2.bias.data
    wh, bh = head.weight.to_dense(), head.bias.data
    h1 = x @ w1.T + b1
    act = np.tanh(np.maximum(h1, 0) @ w2.T + b2 + x)
    return np.concatenate([act, h1], axis=1) @ wh.T + bh


def test_forward_matches_a_hand_written_reference():
    g, layers = _residual()
    x = np.random.default_rng(0).standard_normal((5, 6))
    np.testing.assert_allclose(g.forward(x), _reference(x, *layers), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(g.predict(x), _reference(x, *layers), rtol=1e-12, atol=1e-12)


def test_backward_against_finite_differences_sums_gradients_of_shared_values():
    """x feeds fc1 and the residual Add; fc1 feeds relu and the Concat: both gradients are sums."""
    g, layers = _residual()
    x = np.random.default_rng(1).standard_normal((4, 6))
    check_layer_gradients(g, x, reference=lambda v: _reference(v, *layers))


@pytest.mark.parametrize("op, shapes", [(Add(), [(3, 4), (3, 4), (3, 4)]), (Concat(), [(3, 2), (3, 5)]),
                                        (Concat(axis=2), [(2, 3, 1), (2, 3, 4)]),
                                        (Mul(), [(3, 2, 4), (3, 2, 1)]), (Mul(), [(2, 1, 3), (2, 4, 1)]),
                                        (Sub(), [(3, 1, 4), (3, 2, 4)]), (Div(), [(3, 4), (3, 1)])],
                         ids=lambda v: type(v).__name__ if not isinstance(v, list) else str(v))
def test_merge_ops_backward_against_finite_differences(op, shapes):
    rng = np.random.default_rng(2)
    xs = [rng.standard_normal(s) + (3.0 if isinstance(op, Div) and i == 1 else 0.0)  # no division near 0
          for i, s in enumerate(shapes)]
    g = rng.standard_normal(op.forward(*xs).shape)
    grads = op.backward(g)
    assert len(grads) == len(xs)
    for i, x in enumerate(xs):
        num = np.zeros_like(x)
        for idx in np.ndindex(*x.shape):
            old = x[idx]
            x[idx] = old + 1e-6
            plus = float(np.sum(op.forward(*xs) * g))
            x[idx] = old - 1e-6
            minus = float(np.sum(op.forward(*xs) * g))
            x[idx] = old
            num[idx] = (plus - minus) / 2e-6
        np.testing.assert_allclose(grads[i], num, rtol=1e-6, atol=1e-8)


def test_two_inputs_and_two_outputs():
    a, b = Linear(3, 2, seed=0, dtype=np.float64), Linear(4, 2, seed=1, dtype=np.float64)
    g = Graph({"u": (3,), "v": (4,)}, [("a", a, "u"), ("b", b, "v"), ("sum", Add(), ["a", "b"]),
                                       ("both", Concat(), ["sum", "a"])], ["sum", "both"])
    rng = np.random.default_rng(3)
    u, v = rng.standard_normal((5, 3)), rng.standard_normal((5, 4))
    s, both = g.forward(u, v)
    s2, both2 = g.forward(v=v, u=u)
    np.testing.assert_array_equal(s, s2)
    np.testing.assert_allclose(s, a.forward(u) + b.forward(v), rtol=1e-12)
    assert both.shape == (5, 4) and g.input_shape is None
    gs, gb = rng.standard_normal(s.shape), rng.standard_normal(both.shape)
    du, dv = g.backward(gs, gb)
    # d/du of sum(s * gs) + sum(both * gb) = (gs + gb[:, :2] + gb[:, 2:]) @ Wa, since both = [s, a]
    wa, wb = a.weight.to_dense(), b.weight.to_dense()
    np.testing.assert_allclose(du, (gs + gb[:, :2] + gb[:, 2:]) @ wa, rtol=1e-10)
    np.testing.assert_allclose(dv, (gs + gb[:, :2]) @ wb, rtol=1e-10)


def test_fit_trains_a_residual_graph():
    from sparsenet.data import load_dataset

    ds = load_dataset("digits", seed=0)
    fc1, fc2, head = Linear(64, 64, seed=1), Linear(64, 64, seed=2), Linear(64, 10, seed=3)

    g = Graph({"x": (1, 8, 8)}, [("flat", Flatten(), "x"), ("fc1", fc1, "flat"), ("r1", ReLU(), "fc1"),
                                 ("fc2", fc2, "r1"), ("res", Add(), ["fc2", "fc1"]), ("r2", ReLU(), "res"),
                                 ("head", head, "r2")], "head")
    before = sn.evaluate(g, ds.x_test, ds.y_test)["accuracy"]
    sn.fit(g, ds.x_train, ds.y_train, epochs=8, batch_size=32, seed=0, quiet=True)
    after = sn.evaluate(g, ds.x_test, ds.y_test)["accuracy"]
    assert before < 0.3 and after > 0.9, (before, after)
    assert g.predict(ds.x_test[0]).shape == (10,)  # one sample, as for any model


def test_sequential_converts_both_ways_without_changing_outputs():
    seq = sn.build_model("lenet300", seed=0)
    x = np.random.default_rng(4).random((3, *seq.input_shape), dtype=np.float32)
    expected = seq.predict(x)
    g = Graph.from_sequential(seq)
    assert [n for n, _ in g.named_parameters()] == [n for n, _ in seq.named_parameters()]
    np.testing.assert_array_equal(g.predict(x), expected)
    back = g.to_sequential()
    assert back.input_shape == seq.input_shape and [type(l) for l in back] == [type(l) for l in seq]
    np.testing.assert_array_equal(back.predict(x), expected)
    with pytest.raises(ConfigError, match="only a chain"):
        _residual()[0].to_sequential()


def _lin(i=2, o=2, seed=0):
    return Linear(i, o, seed=seed)


@pytest.mark.parametrize("build, fragment", [
    (lambda: Graph({"x": (2,)}, [("a", _lin(), ["y"])], "a"), "'a' reads 'y', which no input or node defines"),
    (lambda: Graph({"x": (2,)}, [("a", _lin(), ["x"]), ("a", _lin(), ["x"])], "a"), "'a' is defined twice"),
    (lambda: Graph({"x": (2,)}, [("x", _lin(), ["x"])], "x"), "'x' is defined twice"),
    (lambda: Graph({"x": (2,)}, [("a", _lin(), ["b"]), ("b", _lin(), ["a"]), ("c", Add(), ["a", "x"])], "c"),
     "form a cycle"),
    (lambda: Graph({"x": (2,)}, [("a", _lin(), ["a"])], "a"), "form a cycle"),
    (lambda: Graph({"x": (2,)}, [("a", _lin(), ["x"]), ("b", _lin(), ["x"])], "a"), "['b'] lead to no output"),
    (lambda: Graph({"x": (2,), "y": (2,)}, [("a", _lin(), ["x"])], "a"), "['y'] lead to no output"),
    (lambda: Graph({"x": (2,)}, [("a", _lin(), ["x"])], "x"), "should name a node, found an input"),
    (lambda: Graph({"x": (2,)}, [("a", _lin(), ["x"])], "z"), "should name a node, found nothing"),
    (lambda: Graph({"x": (2,)}, [("a", _lin(), ["x"])], ["a", "a"]), "name a node twice"),
    (lambda: Graph({"x": (2,)}, [("a", Add(), ["x"])], "a"), "takes two or more inputs, found 1"),
    (lambda: Graph({"x": (2,)}, [("a", _lin(), ["x", "x"])], "a"), "takes 1 inputs, found 2"),
    (lambda: Graph({"x": (2,)}, [("a", "relu", ["x"])], "a"), "should hold a Module"),
    (lambda: Graph({"x": (2,)}, [("", _lin(), ["x"])], ""), "node name should be"),
    (lambda: Graph({"x": (2,)}, [(3, _lin(), ["x"])], [3]), "node name should be"),
    (lambda: Graph({"x": (2,)}, [("a", _lin(), ["x"])], 3), "outputs should be a node name"),
    (lambda: Graph({"x": (0,)}, [("a", _lin(), ["x"])], "a"), "positive sizes"),
    (lambda: Graph({}, [], "a"), "at least one input"),
    (lambda: Graph({"x": (2,)}, [("a", _lin(), ["x"])], []), "at least one output"),
    (lambda: Graph({"x": (2,)}, ["a"], "a"), "should be a Node or a (name, op, inputs) triple"),
    (lambda: Graph(3, [], "a"), "inputs should be"),
])
def test_malformed_graphs_raise_config_error_naming_the_node(build, fragment):
    with pytest.raises(ConfigError) as err:
        build()
    assert fragment in str(err.value)


def test_a_module_used_by_two_nodes_is_refused():
    lin = _lin()
    with pytest.raises(ConfigError, match="uses the same Linear object as node 'a'"):
        Graph({"x": (2,)}, [("a", lin, ["x"]), ("b", lin, ["a"])], "b")


@pytest.mark.parametrize("nodes, fragment", [
    ([("a", _lin(3, 2), ["x"])], "node 'a' (Linear) does not accept inputs of shapes [[2]]"),
    ([("a", _lin(2, 3), ["x"]), ("s", Add(), ["a", "x"])],
     "node 's' (Add) does not accept inputs of shapes [[3], [2]]"),
    ([("a", _lin(2, 3), ["x"]), ("c", Concat(axis=2), ["a", "x"])], "node 'c' (Concat)"),
])
def test_incompatible_shapes_raise_shape_error_naming_the_node(nodes, fragment):
    with pytest.raises(ShapeError) as err:
        Graph({"x": (2,)}, nodes, nodes[-1][0])
    assert fragment in str(err.value)


def test_repr_lists_the_nodes_in_order():
    g, _ = _residual()
    text = repr(g)
    assert text.startswith("Graph(inputs=['x'], outputs=['head'],") and "res = Add()(fc2, x)" in text
    assert text.index("fc1 =") < text.index("relu =") < text.index("head =")


def test_nodes_in_any_order_run_in_topological_order():
    a, b = _lin(seed=1), _lin(seed=2)
    g = Graph(["x"], [Node("b", b, ("a",)), Node("a", a, ("x",))], "b")
    assert [n.name for n in g.nodes] == ["a", "b"]
    x = np.ones((2, 2), np.float32)
    np.testing.assert_allclose(g.forward(x), b.forward(a.forward(x)), rtol=1e-6)
    with pytest.raises(ConfigError, match="expected 1 inputs"):
        g.forward(x, x)
    with pytest.raises(ConfigError, match="expected 1 gradients"):
        g.backward(x, x)


def test_concat_axis_and_merge_shapes_are_checked():
    with pytest.raises(ConfigError, match="axis >= 1"):
        Concat(axis=0)
    with pytest.raises(ShapeError, match="two or more inputs"):
        Add().forward(np.ones((2, 2)))
    with pytest.raises(ShapeError, match="one shape"):
        Add().forward(np.ones((2, 2)), np.ones((2, 3)))
    with pytest.raises(ShapeError, match="differ only on axis 1"):
        Concat().forward(np.ones((2, 2)), np.ones((3, 2)))


def test_summary_and_bench_take_a_graph():
    from sparsenet.bench import bench_model
    from sparsenet.summary import summarize

    g, _ = _residual(np.float32)
    rows = summarize(g)["layers"]
    assert [r["name"] for r in rows] == [n.name for n in g.nodes] and rows[0]["params"] == 6 * 6 + 6
    out = bench_model(g, batches=(2,), repeats=1, min_time=1e-4, sleep=lambda s: None)
    assert out["batches"][0]["speedup"] > 0


# -- model files ----------------------------------------------------------------------------------
def _saved_graph(tmp_path):
    g, _ = _residual(np.float32)
    w = g.nodes[0].op.weight.to_dense()
    w[np.abs(w) < 0.3] = 0
    g.nodes[0].op.weight = sn.CSR.from_dense(w)  # a sparse node too
    g.meta = {"note": "residual"}
    path = tmp_path / "g.safetensors"
    sn.save_model(g, path)
    return g, path


def test_graph_round_trips_through_a_model_file(tmp_path):
    g, path = _saved_graph(tmp_path)
    loaded = sn.load(path)
    assert isinstance(loaded, Graph) and [n.name for n in loaded.nodes] == [n.name for n in g.nodes]
    assert [n.inputs for n in loaded.nodes] == [n.inputs for n in g.nodes] and loaded.outputs == g.outputs
    assert loaded.input_shapes == g.input_shapes and loaded.meta == {"note": "residual"}
    assert loaded.nodes[0].op.weight.format_name == "csr"
    x = np.random.default_rng(5).random((4, 6), dtype=np.float32)
    np.testing.assert_array_equal(loaded.predict(x), g.predict(x))
    sn.save_model(loaded, tmp_path / "again.safetensors")
    assert (tmp_path / "again.safetensors").read_bytes() == path.read_bytes()


def test_two_input_graph_round_trips(tmp_path):
    a, b = Linear(3, 2, seed=0), Linear(4, 2, seed=1)
    g = Graph({"u": (3,), "v": (4,)}, [("a", a, "u"), ("b", b, "v"), ("sum", Add(), ["a", "b"])], "sum")
    sn.save_model(g, tmp_path / "two.safetensors")
    loaded = sn.load(tmp_path / "two.safetensors")
    u, v = np.ones((2, 3), np.float32), np.ones((2, 4), np.float32)
    np.testing.assert_array_equal(loaded.forward(u=u, v=v), g.forward(u=u, v=v))


def _edit_graph(edit, sync_input_shape=True):
    def mutate(arrays, manifest):
        edit(manifest["graph"])
        if sync_input_shape and isinstance(manifest["graph"], dict):  # keep the two declarations agreeing
            manifest["input_shape"] = manifest["graph"]["inputs"][0]["shape"]
    return mutate


@pytest.mark.parametrize("edit, fragment", [
    (lambda gr: gr["nodes"][1].update(inputs=["head"]), "form a cycle"),
    (lambda gr: gr["nodes"][1].update(inputs=["nope"]), "reads 'nope', which no input or node defines"),
    (lambda gr: gr["nodes"][2].update(name="fc1"), "defined twice"),
    (lambda gr: gr["nodes"].pop(), "one entry per layer"),
    (lambda gr: gr["nodes"][3].update(inputs=["fc2"]), "takes two or more inputs"),
    (lambda gr: gr["nodes"][3].update(inputs=["fc2", "cat"]), "form a cycle"),
    (lambda gr: gr["nodes"][5].update(inputs=["act", "relu", "x"]), "does not accept inputs of shapes"),
    (lambda gr: gr["inputs"][0].update(shape=[7]), "does not accept inputs of shapes"),
    (lambda gr: gr["inputs"][0].update(shape=[0]), "positive integers"),
    (lambda gr: gr["inputs"].append(dict(gr["inputs"][0])), "listed twice"),
    (lambda gr: gr.update(outputs=["x"]), "should name a node"),
    (lambda gr: gr.update(outputs="head"), "outputs should be a list of names"),
    (lambda gr: gr["nodes"][0].update(inputs=[3]), "should be a list of names"),
    (lambda gr: gr.update(extra=1), "expected an object with inputs, nodes and outputs"),
    (lambda gr: gr["inputs"][0].update(shape=[1 << 30]), "more than the limit"),
])
def test_a_malformed_graph_in_a_file_is_a_model_file_error(tmp_path, edit, fragment):
    from helpers import rewrite_model_file

    _, path = _saved_graph(tmp_path)
    rewrite_model_file(path, _edit_graph(edit))
    with pytest.raises(sn.ModelFileError) as err:
        sn.load(path)
    assert fragment in str(err.value) and str(path) in str(err.value)


@pytest.mark.parametrize("edit, fragment", [
    (lambda m: m["graph"]["inputs"][0].update(shape=[7]), "input_shape (6,) should be the graph's single input's"),
    (lambda m: m.update(graph=None), "'graph' should be an object, found null"),
])
def test_the_graph_and_the_manifest_must_agree(tmp_path, edit, fragment):
    from helpers import rewrite_model_file

    _, path = _saved_graph(tmp_path)
    rewrite_model_file(path, lambda arrays, manifest: edit(manifest))
    with pytest.raises(sn.ModelFileError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        sn.load(path)


def test_info_command_reads_a_graph(tmp_path, capsys):
    import json

    from sparsenet.cli import main

    g, path = _saved_graph(tmp_path)
    assert main(["info", str(path), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["layers"]
    assert [r["name"] for r in rows] == [n.name for n in g.nodes] and rows[0]["format"] == "csr"


def test_values_that_grow_along_the_graph_are_refused_before_they_take_memory():
    """40 nested Concats of a 1-value input would ask for 2**40 values; an Add reading one input
    thousands of times would run for hours: both stop at the trace's bounds."""
    nodes, prev = [], "x"
    for k in range(40):
        nodes.append((f"c{k}", Concat(), [prev, prev]))
        prev = f"c{k}"
    with pytest.raises(ShapeError, match="would hold more than"):
        Graph({"x": (1,)}, nodes, prev)
    with pytest.raises(ShapeError, match="would hold more than"):
        Graph({"x": (1 << 20,)}, [("s", Add(), ["x"] * 2000)], "s")
    deep = Graph({"x": (4096,)}, [(f"r{k}", ReLU(), ["x" if k == 0 else f"r{k - 1}"]) for k in range(5000)], "r4999")
    assert deep.predict(np.ones(4096)).shape == (4096,)  # a deep chain frees what it no longer needs


def test_predict_takes_named_inputs_and_gives_named_outputs_evaluate_and_fit_one_of_each():
    from sparsenet.errors import DataError

    a, b = Linear(3, 2, seed=0), Linear(3, 2, seed=1)
    two_out = Graph({"u": (3,)}, [("a", a, "u"), ("b", b, "u")], ["a", "b"])
    two_in = Graph({"u": (3,), "v": (3,)}, [("s", Add(), ["u", "v"])], "s")
    rng = np.random.default_rng(0)
    x, x2, y = rng.random((4, 3), np.float32), rng.random((4, 3), np.float32), np.zeros(4, np.int64)
    got = two_out.predict(x)
    assert list(got) == ["a", "b"]
    np.testing.assert_allclose(got["a"], a.forward(x), rtol=1e-6)
    np.testing.assert_allclose(got["b"], b.forward(x), rtol=1e-6)
    np.testing.assert_allclose(sn.predict(two_in, {"v": x2, "u": x}), x + x2, rtol=1e-6)
    np.testing.assert_allclose(two_out.predict({"u": x}, batch_size=3)["b"], got["b"], rtol=1e-6)  # in batches
    with pytest.raises(ConfigError, match=r"inputs \['u', 'v'\]: give a dict"):
        two_in.predict(x)
    with pytest.raises(ConfigError, match=r"missing \['v'\]; unknown \['w'\]"):
        two_in.predict({"u": x, "w": x})
    with pytest.raises(ShapeError, match="predict input 'v'"):
        two_in.predict({"u": x, "v": x[:, :2]})
    with pytest.raises(ShapeError, match="one batch size"):
        two_in.predict({"u": x, "v": x[:3]})
    bad = x2.copy()
    bad[1, 1] = np.nan
    with pytest.raises(DataError, match="predict input 'v'"):
        two_in.predict({"u": x, "v": bad})
    with pytest.raises(ConfigError, match="a dict of inputs is for a Graph"):
        Sequential(Linear(3, 2)).predict({"x": x})
    for call in (lambda: sn.evaluate(two_out, x, y), lambda: sn.fit(two_out, x, y, quiet=True)):
        with pytest.raises(ConfigError, match="one output"):
            call()
    with pytest.raises(ConfigError, match="plan of one input"):  # several inputs take a dict
        sn.evaluate(two_in, x, y)
    trainable = Graph({"u": (3,), "v": (3,)}, [("a", Linear(3, 3), "u"), ("s", Add(), ["a", "v"])], "s")
    with pytest.raises(ConfigError, match="expected 2 inputs"):
        sn.fit(trainable, x, y, quiet=True)
    with pytest.raises(ConfigError, match=r"expected the graph's inputs \['u', 'v'\]"):
        sn.fit(trainable, {"u": x}, y, quiet=True)
    h = sn.fit(trainable, {"u": x, "v": x2}, y, epochs=2, quiet=True)  # several inputs by name
    assert len(h.loss) == 2 and len(h.accuracy) == 2
    assert set(sn.evaluate(trainable, {"u": x, "v": x2}, y)) == {"loss", "accuracy"}
    assert len(two_out.forward(x)) == 2 and two_in(x, x).shape == (4, 3)  # forward (and __call__) take several


def test_names_and_inputs_are_normalised_or_refused():
    with pytest.raises(ConfigError, match="input 'x' is defined twice"):
        Graph(["x", "x"], [("a", _lin(), "x")], "a")
    with pytest.raises(ConfigError, match="without '.'"):
        Graph({"x": (2,)}, [("a.0", _lin(), "x")], "a.0")
    for bad in ({"x": 4}, {"x": (True,)}, {"x": (0,)}, {"x": (2.5,)}):
        with pytest.raises(ConfigError, match="positive sizes"):
            Graph(bad, [("a", _lin(), "x")], "a")
    # () is one value per sample (an index), which a Linear does not take: named at the trace
    with pytest.raises(ShapeError, match=r"node 'a' \(Linear\) does not accept inputs of shapes \[\[\]\]"):
        Graph({"x": ()}, [("a", _lin(), "x")], "a")
    for bad, message in (({"y": "int64"}, "not an input"), ({"x": "float32"}, "for integer inputs"),
                         ({"x": "nope"}, "not a dtype"), (["int64"], "should be a dict")):
        with pytest.raises(ConfigError, match=message):
            Graph({"x": (2,)}, [("a", _lin(), "x")], "a", input_dtypes=bad)
    with pytest.raises(ConfigError, match="input name should be"):
        Graph([["x"]], [("a", _lin(), "x")], "a")
    assert Node("r", ReLU(), "fc").inputs == ("fc",) and Node("r", ReLU(), ["fc"]).inputs == ("fc",)
    g = Graph({"x": (2,)}, [Node("a", _lin(), ["x"])], "a")
    assert g.to_sequential()[0] is g.nodes[0].op  # a list of inputs still makes a chain
    inner = _lin()
    with pytest.raises(ConfigError, match="same Linear object as node 'a'"):
        Graph({"x": (2,)}, [("a", Sequential(inner), "x"), ("b", inner, "a")], "b")
    with pytest.raises(ConfigError, match="several inputs: use a Graph"):
        Sequential(Add())
    with pytest.raises(ConfigError, match="should read a list of names"):
        Graph({"x": (2,)}, [("a", _lin(), [3])], "a")


def test_an_input_named_self_saves_and_loads(tmp_path):
    g = Graph({"self": (2,)}, [("a", _lin(), "self")], "a")
    sn.save_model(g, tmp_path / "s.safetensors")
    x = np.ones((1, 2), np.float32)
    np.testing.assert_array_equal(sn.load(tmp_path / "s.safetensors").forward(self=x), g.forward(x))


# -- ONNX export --------------------------------------------------------------------------------------
@pytest.mark.parametrize("sparse", [False, True])
def test_graph_exports_to_onnx_and_runs_in_onnxruntime(tmp_path, sparse):
    ort = pytest.importorskip("onnxruntime")
    from sparsenet.onnx import export_onnx

    g, _ = _saved_graph(tmp_path)  # residual Add, Concat, a CSR node
    proto = export_onnx(g, tmp_path / "g.onnx", sparse_initializers=sparse)
    assert [i.name for i in proto.graph.input] == ["x"] and [o.name for o in proto.graph.output] == ["head"]
    assert {"Sum", "Concat", "Gemm", "Relu", "Tanh"} <= {n.op_type for n in proto.graph.node}
    x = np.random.default_rng(6).standard_normal((5, 6)).astype(np.float32)
    session = ort.InferenceSession(str(tmp_path / "g.onnx"), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"x": x})
    np.testing.assert_allclose(got, g.predict(x), rtol=1e-5, atol=1e-6)


def test_two_input_two_output_graph_exports(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from sparsenet.onnx import export_onnx

    a, b = Linear(3, 2, seed=0), Linear(4, 2, seed=1)
    g = Graph({"u": (3,), "v": (4,)}, [("a", a, "u"), ("b", b, "v"), ("s", Add(), ["a", "b", "a"]),
                                       ("c", Concat(), ["s", "b"])], ["s", "c"])
    proto = export_onnx(g, None)
    assert [i.name for i in proto.graph.input] == ["u", "v"] and [o.name for o in proto.graph.output] == ["s", "c"]
    rng = np.random.default_rng(7)
    u, v = rng.standard_normal((2, 3)).astype(np.float32), rng.standard_normal((2, 4)).astype(np.float32)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    for got, want in zip(session.run(None, {"u": u, "v": v}), g.forward(u=u, v=v)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    with pytest.raises(ConfigError, match="have no shape"):
        export_onnx(Graph(["u"], [("a", Linear(3, 2), "u")], "a"), None)
    with pytest.raises(ConfigError, match="input_shape is for a Sequential"):
        export_onnx(g, None, input_shape=(3,))
