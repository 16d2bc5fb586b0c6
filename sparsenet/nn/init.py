"""Seeded weight initialisation."""

import numpy as np

__all__ = ["kaiming_uniform", "uniform_bias"]


def kaiming_uniform(rng: np.random.Generator, shape, fan_in: int, dtype=np.float32) -> np.ndarray:
    """He initialisation for ReLU networks: U(-b, b) with b = sqrt(6 / fan_in)."""
    bound = np.sqrt(6.0 / max(fan_in, 1))
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


def uniform_bias(rng: np.random.Generator, n: int, fan_in: int, dtype=np.float32) -> np.ndarray:
    """Biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)), as PyTorch does."""
    bound = 1.0 / np.sqrt(max(fan_in, 1))
    return rng.uniform(-bound, bound, size=n).astype(dtype)
