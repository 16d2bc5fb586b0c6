"""Training-time augmentation: functions ``(batch, rng) -> batch`` that `fit(..., augment=...)` applies
to every minibatch (never to evaluation data), drawing from the generator `fit` seeds."""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError

__all__ = ["random_shift"]


def random_shift(pixels: int = 1):
    """Each image of a [B, C, H, W] batch moved by its own random offset of up to `pixels` rows and
    columns (zeros shifted in): small translations, the classic augmentation for digits.

    >>> shift = random_shift(1)
    >>> shift(np.ones((2, 1, 3, 3), np.float32), np.random.default_rng(0)).shape
    (2, 1, 3, 3)
    """
    if isinstance(pixels, bool) or not isinstance(pixels, (int, np.integer)) or pixels < 1:
        raise ConfigError(f"random_shift: expected pixels >= 1, found {pixels!r}")
    p = int(pixels)

    def shift(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if x.ndim != 4:
            raise ConfigError(f"random_shift: expected image batches [B, C, H, W], found shape {x.shape}")
        b, _, h, w = x.shape
        padded = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
        dy, dx = rng.integers(0, 2 * p + 1, size=(2, b))
        rows = dy[:, None] + np.arange(h)[None, :]   # [B, H]
        cols = dx[:, None] + np.arange(w)[None, :]   # [B, W]
        return padded[np.arange(b)[:, None, None, None], np.arange(x.shape[1])[None, :, None, None],
                      rows[:, None, :, None], cols[:, None, None, :]]

    shift.__name__ = f"random_shift({p})"
    return shift
