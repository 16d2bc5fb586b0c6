"""Model zoo: small, seeded architectures by name, sized for the embedded 8x8 digits.

Chains are `Sequential`s; `resnet` and `mobilenet` are `Graph`s (residual additions) whose node names
say where each layer sits (``s2b1_conv1``: stage 2, block 1, first convolution); `recommender` is a
`Graph` of two integer inputs (user and item indices), `transformer` one of token indices.
"""

from __future__ import annotations


import numpy as np

from ._checks import check_int
from .errors import ConfigError
from .nn import (GELU, Add, BatchNorm2d, Concat, Conv2d, Dropout, Embedding, Flatten, GlobalAvgPool2d, Graph,
                 HardSwish, LayerNorm, Linear, MatMul, MaxPool2d, Mean, ReLU, ReLU6, Reshape, Scale, Sequential, Shift,
                 Softmax, Transpose)

__all__ = ["build_model", "MODELS", "TRAINING"]


def mlp(in_features: int = 64, num_classes: int = 10, *, seed: int = 0, hidden=(256, 128)) -> Sequential:
    """Flatten -> [Linear -> ReLU] * len(hidden) -> Linear."""
    layers, width = [Flatten()], in_features
    for i, h in enumerate(hidden):
        layers += [Linear(width, h, seed=seed + i), ReLU()]
        width = h
    layers.append(Linear(width, num_classes, seed=seed + len(hidden)))
    return Sequential(*layers)


def lenet300(in_features: int = 64, num_classes: int = 10, *, seed: int = 0) -> Sequential:
    """LeNet-300-100 (LeCun et al. 1998; the classic pruning benchmark of Han et al. 2015)."""
    return mlp(in_features, num_classes, seed=seed, hidden=(300, 100))


def cnn(in_channels: int = 1, num_classes: int = 10, *, seed: int = 0, image_size=(8, 8)) -> Sequential:
    """Conv(16) -> BN -> ReLU -> Conv(32) -> BN -> ReLU -> MaxPool2 -> Flatten -> Linear(64) -> ReLU
    -> Dropout -> Linear(classes), for small images (8x8 digits by default)."""
    h, w = image_size
    if h < 2 or w < 2:
        raise ConfigError(f"cnn: expected images of at least 2x2, found {h}x{w}")
    return Sequential(
        Conv2d(in_channels, 16, 3, padding=1, seed=seed), BatchNorm2d(16), ReLU(),
        Conv2d(16, 32, 3, padding=1, seed=seed + 1), BatchNorm2d(32), ReLU(),
        MaxPool2d(2),
        Flatten(),
        Linear(32 * (h // 2) * (w // 2), 64, seed=seed + 2), ReLU(),
        Dropout(0.25, seed=seed + 3),
        Linear(64, num_classes, seed=seed + 4),
    )


class _Nodes:
    """Appends graph nodes with seeds drawn in order (the same seed gives the same model)."""

    def __init__(self, seed: int):
        self.nodes, self.seed = [], seed

    def add(self, name, op, inputs) -> str:
        self.nodes.append((name, op, [inputs] if isinstance(inputs, str) else list(inputs)))
        return name

    def next_seed(self) -> int:
        self.seed += 1
        return self.seed

    def conv_bn(self, name, x, cin, cout, k, stride=1, groups=1, act=None) -> str:
        """Conv (no bias) -> BatchNorm2d [-> activation]."""
        x = self.add(f"{name}", Conv2d(cin, cout, k, stride, k // 2, bias=False, groups=groups,
                                       seed=self.next_seed()), x)
        x = self.add(f"{name}_bn", BatchNorm2d(cout), x)
        return x if act is None else self.add(f"{name}_{type(act).__name__.lower()}", act, x)


def resnet(in_channels: int = 1, num_classes: int = 10, *, seed: int = 0, depth: int = 8,
           widths=(16, 32, 64), strides=(1, 2, 2)) -> Graph:
    """A CIFAR-style ResNet (He et al. 2016) for small images: a 3x3 stem, three stages of BasicBlocks
    (two 3x3 convolutions with BatchNorm; an identity shortcut, or a strided 1x1 projection + BN where
    the shape changes), global average pooling, a Linear classifier. `depth` = 6n + 2 (8, 14, 20...)
    gives n blocks per stage; stages 2 and 3 halve the image.

    >>> g = resnet(depth=8)
    >>> [n.name for n in g.nodes if type(n.op).__name__ == "Add"]
    ['s1b1_add', 's2b1_add', 's3b1_add']
    """
    if depth < 8 or (depth - 2) % 6:
        raise ConfigError(f"resnet: expected a depth of 6n + 2 (8, 14, 20, ...), found {depth}")
    b = _Nodes(seed)
    x = b.conv_bn("stem", "x", in_channels, widths[0], 3, act=ReLU())
    cin = widths[0]
    for s, width in enumerate(widths, start=1):
        for k in range(1, (depth - 2) // 6 + 1):
            stride = strides[s - 1] if k == 1 else 1
            name = f"s{s}b{k}"
            h = b.conv_bn(f"{name}_conv1", x, cin, width, 3, stride, act=ReLU())
            h = b.conv_bn(f"{name}_conv2", h, width, width, 3)
            short = x if stride == 1 and cin == width else b.conv_bn(f"{name}_proj", x, cin, width, 1, stride)
            x = b.add(f"{name}_relu", ReLU(), b.add(f"{name}_add", Add(), [h, short]))
            cin = width
    x = b.add("pool", GlobalAvgPool2d(), x)
    b.add("fc", Linear(cin, num_classes, seed=b.next_seed()), x)
    return Graph({"x": None}, b.nodes, "fc", check_shapes=False)


def mobilenet(in_channels: int = 1, num_classes: int = 10, *, seed: int = 0, activation: str = "relu6",
              blocks=((1, 16, 1, 1), (4, 24, 2, 2), (4, 32, 2, 1)), stem: int = 16, head: int = 64) -> Graph:
    """A tiny MobileNetV2 (Sandler et al. 2018) for small images: a 3x3 stem, inverted residual
    blocks (a 1x1 expansion by t, a depthwise 3x3, a linear 1x1 projection, each with BatchNorm; a
    residual Add where stride is 1 and the width stays), a 1x1 head, global average pooling and a
    Linear classifier. `blocks` are (t, width, repeats, stride) as in the paper's table 2 (8x8
    inputs are halved once: a second halving measured 1-2 points lower on the digits);
    `activation` "relu6" (V2) or "hardswish" (V3's).

    >>> sum(type(n.op).__name__ == "Add" for n in mobilenet().nodes)
    3
    """
    acts = {"relu6": ReLU6, "hardswish": HardSwish}
    if activation not in acts:
        raise ConfigError(f"mobilenet: expected activation 'relu6' or 'hardswish', found {activation!r}")
    act = acts[activation]
    b = _Nodes(seed)
    x = b.conv_bn("stem", "x", in_channels, stem, 3, act=act())
    cin = stem
    for i, (t, width, repeats, stride) in enumerate(blocks, start=1):
        for k in range(1, repeats + 1):
            name, s = f"b{i}r{k}", stride if k == 1 else 1
            hidden = cin * t
            h = x if t == 1 else b.conv_bn(f"{name}_expand", x, cin, hidden, 1, act=act())
            h = b.conv_bn(f"{name}_dw", h, hidden, hidden, 3, s, groups=hidden, act=act())
            h = b.conv_bn(f"{name}_project", h, hidden, width, 1)
            x = b.add(f"{name}_add", Add(), [h, x]) if s == 1 and cin == width else h
            cin = width
    x = b.conv_bn("head", x, cin, head, 1, act=act())
    x = b.add("pool", GlobalAvgPool2d(), x)
    b.add("fc", Linear(head, num_classes, seed=b.next_seed()), x)
    return Graph({"x": None}, b.nodes, "fc", check_shapes=False)


def recommender(num_users: int = 671, num_items: int = 9066, *, seed: int = 0, dim: int = 32,
                hidden=(64, 32), outputs: int = 2, dropout: float = 0.0) -> Graph:
    """An NCF recommender (He et al. 2017, its MLP tower): two int64 inputs, ``user`` and ``item`` (one
    index per sample), an Embedding table for each, the two rows concatenated, then ReLU layers of
    `hidden` widths and the ``score`` layer. With ``outputs=2`` (the default) it gives two numbers per
    pair: column 0 a rating, column 1 the logit that the user rates the item at all (implicit
    feedback, what ranks items; trained together by `sparsenet.recommend.train_recommender` with a
    `RatingInteractionLoss`); with ``outputs=1``, one number (a rating, or a logit). `dropout` > 0
    adds a `Dropout` after the concatenation and after each ReLU (training only). The default table
    sizes are MovieLens ml-latest-small's 671 users and 9 066 movies.

    >>> g = recommender(20, 30)
    >>> g.predict({"user": np.array([0, 19]), "item": np.array([29, 3])}).shape
    (2, 2)
    """
    b = _Nodes(seed)
    u = b.add("user_emb", Embedding(num_users, dim, seed=b.next_seed()), "user")
    i = b.add("item_emb", Embedding(num_items, dim, seed=b.next_seed()), "item")
    x, cin = b.add("concat", Concat(1), [u, i]), 2 * dim

    def drop(name, v):
        return b.add(name, Dropout(dropout, seed=b.next_seed()), v) if dropout else v

    x = drop("concat_drop", x)
    for k, width in enumerate(hidden, start=1):
        x = b.add(f"relu{k}", ReLU(), b.add(f"fc{k}", Linear(cin, width, seed=b.next_seed()), x))
        x = drop(f"relu{k}_drop", x)
        cin = width
    b.add("score", Linear(cin, check_int(outputs, "outputs", "recommender"), seed=b.next_seed()), x)
    return Graph({"user": (), "item": ()}, b.nodes, "score", input_dtypes={"user": "int64", "item": "int64"})


def transformer(vocab_size: int = 2000, seq_len: int = 32, num_classes: int = 2, *, seed: int = 0, dim: int = 32,
                heads: int = 2, layers: int = 2, ffn: int = 64, dropout: float = 0.0) -> Graph:
    """A tiny transformer encoder classifier (Vaswani et al. 2017; post-norm layers as PyTorch's
    nn.TransformerEncoderLayer): int64 ``tokens`` [seq_len] -> token Embedding + learned positions
    (a `Shift`), `layers` encoder layers (multi-head self-attention from Linear, Reshape, Transpose,
    MatMul, a fixed 1/sqrt(d) `Scale` and Softmax; a GELU feed-forward of `ffn`; residual Adds each
    followed by a LayerNorm), the mean over the tokens, a Linear classifier. No padding mask: every
    position attends to every other (pad sequences with a token of their own). `dropout` > 0 adds
    `Dropout` nodes where nn.TransformerEncoderLayer has them (the attention weights, the attention's
    and the feed-forward's outputs, the feed-forward's hidden layer), active in training only.

    Node names say where each layer sits: ``l1_q``/``l1_k``/``l1_v`` and ``l1_out`` (the attention's
    projections of layer 1), ``l1_ffn1``/``l1_ffn2``.

    >>> g = transformer(50, 8)
    >>> g.predict(np.zeros((3, 8), np.int64)).shape
    (3, 2)
    """
    if dim % heads:
        raise ConfigError(f"transformer: dim {dim} is not a multiple of heads {heads}")
    t, d, dh = int(seq_len), int(dim), int(dim) // int(heads)
    b = _Nodes(seed)
    x = b.add("embed", Embedding(vocab_size, d, seed=b.next_seed()), "tokens")
    pos = np.random.default_rng(b.next_seed()).normal(0, 0.02, (1, t, d)).astype(np.float32)
    x = b.add("positions", Shift(pos), x)

    def drop(name, v):
        return b.add(name, Dropout(dropout, seed=b.next_seed()), v) if dropout else v

    def heads_of(name, v, perm):  # [B, T, D] -> [B, H, T, dh] (perm (0, 2, 1, 3)) or [B, H, dh, T]
        return b.add(f"{name}_t", Transpose(perm), b.add(f"{name}_split", Reshape((-1, t, heads, dh)), v))

    for k in range(1, layers + 1):
        n = f"l{k}"
        q, key, v = (b.add(f"{n}_{p}", Linear(d, d, seed=b.next_seed()), x) for p in ("q", "k", "v"))
        scores = b.add(f"{n}_scores", MatMul(), [heads_of(f"{n}_q", q, (0, 2, 1, 3)), heads_of(f"{n}_k", key, (0, 2, 3, 1))])
        scores = b.add(f"{n}_scale", Scale(np.float32(1 / np.sqrt(dh)), trainable=False), scores)
        att = drop(f"{n}_att_drop", b.add(f"{n}_softmax", Softmax(-1), scores))
        o = b.add(f"{n}_mix", MatMul(), [att, heads_of(f"{n}_v", v, (0, 2, 1, 3))])
        o = b.add(f"{n}_merge", Reshape((-1, t, d)), b.add(f"{n}_mix_t", Transpose((0, 2, 1, 3)), o))
        o = drop(f"{n}_out_drop", b.add(f"{n}_out", Linear(d, d, seed=b.next_seed()), o))
        x = b.add(f"{n}_norm1", LayerNorm(d), b.add(f"{n}_add1", Add(), [x, o]))
        f = b.add(f"{n}_gelu", GELU("none"), b.add(f"{n}_ffn1", Linear(d, ffn, seed=b.next_seed()), x))
        f = drop(f"{n}_ffn2_drop", b.add(f"{n}_ffn2", Linear(ffn, d, seed=b.next_seed()), drop(f"{n}_ffn_drop", f)))
        x = b.add(f"{n}_norm2", LayerNorm(d), b.add(f"{n}_add2", Add(), [x, f]))
    x = b.add("pool", Mean((1,)), x)
    b.add("fc", Linear(d, num_classes, seed=b.next_seed()), x)
    return Graph({"tokens": (t,)}, b.nodes, "fc", input_dtypes={"tokens": "int64"})


MODELS = {"mlp": mlp, "lenet300": lenet300, "cnn": cnn, "resnet": resnet, "mobilenet": mobilenet,
          "transformer": transformer, "recommender": recommender}

# How `sparsenet train` (and `train_recipe`) trains each model: its default dataset, the zoo
# function's arguments for it ("architecture"), then the `fit` arguments (`augment_pixels`:
# `random_shift`; `weight_decay`: AdamW's; `negatives`: `train_recommender`'s). Settings that reach
# the accuracy targets of tests/test_zoo.py on the digits. The BatchNorm graphs need the shifts
# (without them: 9-18 of 449 test digits wrong across seeds, with them 4-8) and whole batches (a
# 4-sample last batch moved their running statistics every epoch). The text and ratings recipes:
# BENCHMARKS.md, "Text and ratings".
TRAINING = {
    "mlp": {"dataset": "digits", "epochs": 40, "batch_size": 32, "lr": 1e-3},
    "lenet300": {"dataset": "digits", "epochs": 40, "batch_size": 32, "lr": 1e-3},
    "cnn": {"dataset": "digits", "epochs": 30, "batch_size": 32, "lr": 1e-3},
    "resnet": {"dataset": "digits", "epochs": 30, "batch_size": 32, "lr": 2e-3, "lr_schedule": "cosine",
               "drop_last": True, "augment_pixels": 1},
    "mobilenet": {"dataset": "digits", "epochs": 30, "batch_size": 64, "lr": 3e-3, "lr_schedule": "cosine",
                  "drop_last": True, "augment_pixels": 1},
    "transformer": {"dataset": "names", "architecture": {"dim": 64, "heads": 4, "layers": 1, "ffn": 128,
                                                         "dropout": 0.2},
                    "epochs": 40, "batch_size": 32, "lr": 2e-3, "lr_schedule": "cosine", "weight_decay": 0.1},
    "recommender": {"dataset": "movielens", "architecture": {"dim": 32, "hidden": (64, 32), "dropout": 0.3},
                    "epochs": 20, "batch_size": 1024, "lr": 3e-3, "lr_schedule": "cosine", "weight_decay": 0.1,
                    "negatives": 4, "interaction_weight": 3.0},
}
_IMAGE_MODELS = ("cnn", "resnet", "mobilenet")
_INDEX_MODELS = ("transformer", "recommender")


def build_model(name: str, *, seed: int = 0, num_classes: int = 10, input_shape=(1, 8, 8),
                **options) -> Sequential | Graph:
    """Build a zoo model by name ('mlp', 'lenet300', 'cnn', 'resnet', 'mobilenet', 'transformer',
    'recommender') for inputs of `input_shape` (one sample).

    MLPs flatten any input; the image models need (channels, height, width); the index models take
    their sizes from `options`, the zoo function's own arguments (`transformer`: vocab_size, dim,
    heads, layers, ffn, dropout, and seq_len, which a 1-D `input_shape` also gives; `recommender`:
    num_users, num_items, dim, hidden, outputs, dropout; `num_classes` does not apply to it).

    >>> build_model("lenet300").layers[1].weight.shape
    (300, 64)
    >>> build_model("transformer", input_shape=(12,), vocab_size=28).input_shapes["tokens"]
    (12,)
    """
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}: expected one of {', '.join(sorted(MODELS))}")
    if name in _INDEX_MODELS:  # their inputs are indices: sized by their own arguments
        if name == "transformer":
            if input_shape is not None and len(tuple(input_shape)) == 1:
                options.setdefault("seq_len", input_shape[0])
            options.setdefault("num_classes", num_classes)
        try:
            model = MODELS[name](seed=seed, **options)
        except TypeError as exc:
            raise ConfigError(f"{name}: {exc} (the arguments of sparsenet.zoo.{name})") from None
        model.meta["architecture"] = name
        return model
    if options:
        raise ConfigError(f"{name}: takes no options, found {sorted(options)}")
    input_shape = tuple(int(s) for s in input_shape)
    if name in _IMAGE_MODELS:
        if len(input_shape) != 3:
            raise ConfigError(f"{name}: expected input shape (channels, height, width), found {input_shape}")
        if name == "cnn":
            model = cnn(input_shape[0], num_classes, seed=seed, image_size=input_shape[1:])
        else:
            model = MODELS[name](input_shape[0], num_classes, seed=seed)
    else:
        model = MODELS[name](int(np.prod(input_shape)), num_classes, seed=seed)
    model.input_shape = input_shape
    if isinstance(model, Graph):
        model.trace()  # every node's shapes checked for this input, by name
    model.meta["architecture"] = name
    return model


def train_recipe(name: str, dataset=None, *, epochs=None, batch_size=None, lr=None, seed: int = 0,
                 quiet: bool = True, sparse=None, baselines: bool = True):
    """Build a zoo model, train it with its recipe (`TRAINING`; `epochs`, `batch_size` and `lr`
    override it) on `dataset` (default: the recipe's), and measure it on the test part: what
    `sparsenet train` runs. `sparse`: `sparsenet.prune.sparse_train`'s settings ({"method": ...,
    "sparsity": ...}) to train sparse from scratch (classifiers). `baselines`: also fit the classical
    baselines of text and ratings (`sparsenet.baselines`) and report them beside the model.

    Returns (model, dataset, figures): figures is a JSON-safe dict (test accuracy and macro
    precision/recall/F1 for classifiers; RMSE, HR@10 and NDCG@10 for the recommender; seconds).
    The model's metadata records the dataset, the recipe and (text) the tokenizer.
    """
    from .data import load_dataset

    if name not in TRAINING:
        raise ConfigError(f"unknown model {name!r}: expected one of {', '.join(sorted(TRAINING))}")
    recipe = dict(TRAINING[name])
    default = recipe.pop("dataset")
    dataset = default if dataset is None else dataset
    architecture = recipe.pop("architecture", {})
    recipe.update({k: v for k, v in (("epochs", epochs), ("batch_size", batch_size), ("lr", lr)) if v is not None})
    ds = load_dataset(dataset, seed=seed)
    if name == "recommender":
        return _train_recommender_recipe(ds, architecture, recipe, seed, quiet, sparse, baselines)
    if not hasattr(ds, "x_train"):
        raise ConfigError(f"{name}: expected a classification dataset, found {ds!r}")
    options = dict(architecture)
    if name == "transformer":
        if ds.tokenizer is None or ds.x_train.dtype != np.int64 or ds.x_train.ndim != 2:
            raise ConfigError(f"transformer: expected a text dataset of token ids [N, length] with its tokenizer "
                              f"(such as 'names'), found {ds.name!r}: {ds.x_train.dtype} {ds.x_train.shape}")
        options["vocab_size"] = ds.tokenizer.vocab_size
    elif ds.x_train.dtype == np.int64:
        raise ConfigError(f"{name}: {ds.name!r} holds token ids, not features: train the 'transformer' on it")
    model = build_model(name, seed=seed, num_classes=ds.num_classes, input_shape=ds.x_train.shape[1:], **options)
    return _train_classifier_recipe(name, model, ds, recipe, seed, quiet, sparse, baselines)


def _optimizer(model, recipe):
    """(AdamW with the recipe's weight decay, or None when it has none: the trainer's own Adam),
    and the recipe's other arguments (what the trainer takes)."""
    from .optim import AdamW

    args = {k: v for k, v in recipe.items() if k != "weight_decay"}
    wd = recipe.get("weight_decay")
    return (None if wd is None else AdamW(model.parameters(), lr=recipe["lr"], weight_decay=wd)), args


def _train_classifier_recipe(name, model, ds, recipe, seed, quiet, sparse, baselines):
    import time

    from .data import random_shift
    from .metrics import classification_report
    from .train import fit

    pixels = recipe.pop("augment_pixels", None)
    if pixels and ds.x_train.ndim != 4:
        pixels = None  # shifts are for images
    augment = random_shift(pixels) if pixels else None
    t0 = time.perf_counter()
    dynamic = None
    if sparse:
        from .prune import sparse_train

        recipe.pop("weight_decay", None)  # sparse_train's own Adam: its layers change format first
        dynamic = sparse_train(model, ds.x_train, ds.y_train, seed=seed, quiet=quiet, augment=augment,
                               **sparse, **recipe)
        history = dynamic.history
    else:
        optimizer, args = _optimizer(model, recipe)
        history = fit(model, ds.x_train, ds.y_train, seed=seed, quiet=quiet, augment=augment, optimizer=optimizer,
                      **args)
    seconds = time.perf_counter() - t0
    report = classification_report(ds.y_test, model.predict(ds.x_test), num_classes=ds.num_classes)
    figures = {
        "model": name, "dataset": ds.name, "epochs": recipe["epochs"], "seed": seed,
        "train_accuracy": history.accuracy[-1] if history.accuracy else None,
        "test_accuracy": report["accuracy"], "test_macro_f1": report["macro"]["f1"],
        "test_macro_precision": report["macro"]["precision"], "test_macro_recall": report["macro"]["recall"],
        "test_samples": report["num_samples"], "train_seconds": round(seconds, 3),
    }
    if dynamic is not None:
        figures["sparse_training"] = {"method": dynamic.method, "sparsity": dynamic.sparsity,
                                      "distribution": dynamic.distribution, "densities": dynamic.densities,
                                      "updates": len(dynamic.updates)}
    if baselines and ds.tokenizer is not None:
        from .baselines import NgramLogisticRegression

        t0 = time.perf_counter()
        texts = ds.tokenizer.decode(ds.x_train), ds.tokenizer.decode(ds.x_test)
        clf = NgramLogisticRegression(ds.tokenizer.level, **_BOW[ds.tokenizer.level], seed=seed).fit(texts[0],
                                                                                                    ds.y_train)
        rep = classification_report(ds.y_test, clf.predict(texts[1]), num_classes=ds.num_classes)
        figures["baselines"] = {"bag_of_ngrams_logistic_regression": {
            "test_accuracy": rep["accuracy"], "test_macro_f1": rep["macro"]["f1"],
            "test_macro_precision": rep["macro"]["precision"], "test_macro_recall": rep["macro"]["recall"],
            "ngrams": list(clf.features.ngrams), "features": len(clf.features.vocabulary),
            "train_seconds": round(time.perf_counter() - t0, 3)}}
    meta = dict(dataset=ds.name, test_accuracy=report["accuracy"], seed=seed, training=dict(recipe, augment_pixels=pixels))
    if ds.tokenizer is not None:
        meta["tokenizer"] = ds.tokenizer.to_dict()
    model.meta.update(meta)
    return model, ds, figures


# The bag-of-n-grams baseline of each tokenizer level: character 1-4-grams of ^name$ (features that
# let a linear model see endings and beginnings), word 1-2-grams.
_BOW = {"chars": {"ngrams": (1, 4), "min_count": 2, "max_features": 20_000, "epochs": 20, "lr": 3e-3},
        "words": {"ngrams": (1, 2), "min_count": 2, "max_features": 20_000, "epochs": 20, "lr": 3e-3}}


def _train_recommender_recipe(ds, architecture, recipe, seed, quiet, sparse, baselines):
    import time

    from .recommend import evaluate_recommender, train_recommender

    if not hasattr(ds, "num_users"):
        raise ConfigError(f"recommender: expected a ratings dataset (such as 'movielens'), found {ds!r}")
    if sparse:
        raise ConfigError("recommender: --sparse-train trains classifiers; prune the recommender instead")
    model = build_model("recommender", seed=seed, num_users=ds.num_users, num_items=ds.num_items, **architecture)
    optimizer, args = _optimizer(model, recipe)
    t0 = time.perf_counter()
    train_recommender(model, ds, seed=seed, quiet=quiet, optimizer=optimizer, **args)
    seconds = time.perf_counter() - t0
    scores = evaluate_recommender(model, ds, seed=seed)
    figures = {"model": "recommender", "dataset": ds.name, "split": ds.split, "epochs": recipe["epochs"],
               "seed": seed, "test_rmse": scores["rmse"], "test_hit_rate": scores["hit_rate"],
               "test_ndcg": scores["ndcg"], "k": scores["k"], "negatives": scores["negatives"],
               "test_users": scores["num_users"], "train_seconds": round(seconds, 3)}
    if baselines:
        from .baselines import MatrixFactorization, Popularity

        figures["baselines"] = {}
        for label, base in (("popularity", Popularity()), ("matrix_factorization", MatrixFactorization(seed=seed))):
            t0 = time.perf_counter()
            b = evaluate_recommender(base.fit(ds), ds, seed=seed)
            figures["baselines"][label] = {"test_rmse": b["rmse"], "test_hit_rate": b["hit_rate"],
                                           "test_ndcg": b["ndcg"], "train_seconds": round(time.perf_counter() - t0, 3)}
    model.meta.update(dataset=ds.name, seed=seed, test_rmse=scores["rmse"], test_hit_rate=scores["hit_rate"],
                      training=dict(recipe))
    return model, ds, figures
