"""Model zoo: small, seeded architectures by name, sized for the embedded 8x8 digits.

Chains are `Sequential`s; `resnet` and `mobilenet` are `Graph`s (residual additions) whose node names
say where each layer sits (``s2b1_conv1``: stage 2, block 1, first convolution); `recommender` is a
`Graph` of two integer inputs (user and item indices), `transformer` one of token indices.
"""

from __future__ import annotations


import numpy as np

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
                hidden=(64, 32)) -> Graph:
    """An NCF recommender (He et al. 2017, its MLP tower): two int64 inputs, ``user`` and ``item`` (one
    index per sample), an Embedding table for each, the two rows concatenated, then ReLU layers of
    `hidden` widths and one output per pair (a rating, or a logit for implicit feedback). The default
    table sizes are MovieLens ml-latest-small's 671 users and 9 066 movies.

    >>> g = recommender(20, 30)
    >>> g.predict({"user": np.array([0, 19]), "item": np.array([29, 3])}).shape
    (2, 1)
    """
    b = _Nodes(seed)
    u = b.add("user_emb", Embedding(num_users, dim, seed=b.next_seed()), "user")
    i = b.add("item_emb", Embedding(num_items, dim, seed=b.next_seed()), "item")
    x, cin = b.add("concat", Concat(1), [u, i]), 2 * dim
    for k, width in enumerate(hidden, start=1):
        x = b.add(f"relu{k}", ReLU(), b.add(f"fc{k}", Linear(cin, width, seed=b.next_seed()), x))
        cin = width
    b.add("score", Linear(cin, 1, seed=b.next_seed()), x)
    return Graph({"user": (), "item": ()}, b.nodes, "score", input_dtypes={"user": "int64", "item": "int64"})


def transformer(vocab_size: int = 2000, seq_len: int = 32, num_classes: int = 2, *, seed: int = 0, dim: int = 32,
                heads: int = 2, layers: int = 2, ffn: int = 64) -> Graph:
    """A tiny transformer encoder classifier (Vaswani et al. 2017; post-norm layers as PyTorch's
    nn.TransformerEncoderLayer): int64 ``tokens`` [seq_len] -> token Embedding + learned positions
    (a `Shift`), `layers` encoder layers (multi-head self-attention from Linear, Reshape, Transpose,
    MatMul, a fixed 1/sqrt(d) `Scale` and Softmax; a GELU feed-forward of `ffn`; residual Adds each
    followed by a LayerNorm), the mean over the tokens, a Linear classifier. No padding mask: every
    position attends to every other (pad sequences with a token of their own).

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

    def heads_of(name, v, perm):  # [B, T, D] -> [B, H, T, dh] (perm (0, 2, 1, 3)) or [B, H, dh, T]
        return b.add(f"{name}_t", Transpose(perm), b.add(f"{name}_split", Reshape((-1, t, heads, dh)), v))

    for k in range(1, layers + 1):
        n = f"l{k}"
        q, key, v = (b.add(f"{n}_{p}", Linear(d, d, seed=b.next_seed()), x) for p in ("q", "k", "v"))
        scores = b.add(f"{n}_scores", MatMul(), [heads_of(f"{n}_q", q, (0, 2, 1, 3)), heads_of(f"{n}_k", key, (0, 2, 3, 1))])
        scores = b.add(f"{n}_scale", Scale(np.float32(1 / np.sqrt(dh)), trainable=False), scores)
        att = b.add(f"{n}_softmax", Softmax(-1), scores)
        o = b.add(f"{n}_mix", MatMul(), [att, heads_of(f"{n}_v", v, (0, 2, 1, 3))])
        o = b.add(f"{n}_merge", Reshape((-1, t, d)), b.add(f"{n}_mix_t", Transpose((0, 2, 1, 3)), o))
        o = b.add(f"{n}_out", Linear(d, d, seed=b.next_seed()), o)
        x = b.add(f"{n}_norm1", LayerNorm(d), b.add(f"{n}_add1", Add(), [x, o]))
        f = b.add(f"{n}_gelu", GELU("none"), b.add(f"{n}_ffn1", Linear(d, ffn, seed=b.next_seed()), x))
        f = b.add(f"{n}_ffn2", Linear(ffn, d, seed=b.next_seed()), f)
        x = b.add(f"{n}_norm2", LayerNorm(d), b.add(f"{n}_add2", Add(), [x, f]))
    x = b.add("pool", Mean((1,)), x)
    b.add("fc", Linear(d, num_classes, seed=b.next_seed()), x)
    return Graph({"tokens": (t,)}, b.nodes, "fc", input_dtypes={"tokens": "int64"})


MODELS = {"mlp": mlp, "lenet300": lenet300, "cnn": cnn, "resnet": resnet, "mobilenet": mobilenet,
          "transformer": transformer, "recommender": recommender}

# How `sparsenet train` trains each model (the `fit` arguments; `augment_pixels`: `random_shift`):
# settings that reach the accuracy targets of tests/test_zoo.py on the digits. The BatchNorm graphs
# need the shifts (without them: 9-18 of 449 test digits wrong across seeds, with them 4-8) and
# whole batches (a 4-sample last batch moved their running statistics every epoch).
TRAINING = {
    "mlp": {"epochs": 40, "batch_size": 32, "lr": 1e-3},
    "lenet300": {"epochs": 40, "batch_size": 32, "lr": 1e-3},
    "cnn": {"epochs": 30, "batch_size": 32, "lr": 1e-3},
    "resnet": {"epochs": 30, "batch_size": 32, "lr": 2e-3, "lr_schedule": "cosine", "drop_last": True,
               "augment_pixels": 1},
    "mobilenet": {"epochs": 30, "batch_size": 64, "lr": 3e-3, "lr_schedule": "cosine", "drop_last": True,
                  "augment_pixels": 1},
}
_IMAGE_MODELS = ("cnn", "resnet", "mobilenet")
_INDEX_MODELS = ("transformer", "recommender")


def build_model(name: str, *, seed: int = 0, num_classes: int = 10, input_shape=(1, 8, 8)) -> Sequential | Graph:
    """Build a zoo model by name ('mlp', 'lenet300', 'cnn', 'resnet', 'mobilenet', 'transformer',
    'recommender') for
    inputs of `input_shape` (one sample).

    MLPs flatten any input; the image models need (channels, height, width); the recommender takes
    indices (their default vocabulary and table sizes; `input_shape` does not apply, nor
    `num_classes` to the recommender).

    >>> build_model("lenet300").layers[1].weight.shape
    (300, 64)
    """
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}: expected one of {', '.join(sorted(MODELS))}")
    if name in _INDEX_MODELS:  # their inputs are indices: sized by their own arguments (`recommender`...)
        model = MODELS[name](seed=seed) if name == "recommender" else MODELS[name](num_classes=num_classes, seed=seed)
        model.meta["architecture"] = name
        return model
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
