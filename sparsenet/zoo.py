"""Model zoo: small, seeded architectures by name, sized for the embedded 8x8 digits."""

from __future__ import annotations


import numpy as np

from .errors import ConfigError
from .nn import BatchNorm2d, Conv2d, Dropout, Flatten, Linear, MaxPool2d, ReLU, Sequential

__all__ = ["build_model", "MODELS"]


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


MODELS = {"mlp": mlp, "lenet300": lenet300, "cnn": cnn}


def build_model(name: str, *, seed: int = 0, num_classes: int = 10, input_shape=(1, 8, 8)) -> Sequential:
    """Build a zoo model by name ('mlp', 'lenet300', 'cnn') for inputs of `input_shape` (one sample).

    MLPs flatten any input; the CNN needs (channels, height, width).

    >>> build_model("lenet300").layers[1].weight.shape
    (300, 64)
    """
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}: expected one of {', '.join(sorted(MODELS))}")
    input_shape = tuple(int(s) for s in input_shape)
    if name == "cnn":
        if len(input_shape) != 3:
            raise ConfigError(f"cnn: expected input shape (channels, height, width), found {input_shape}")
        model = cnn(input_shape[0], num_classes, seed=seed, image_size=input_shape[1:])
    else:
        model = MODELS[name](int(np.prod(input_shape)), num_classes, seed=seed)
    model.input_shape = input_shape
    model.meta["architecture"] = name
    return model
