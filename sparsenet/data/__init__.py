"""Datasets: the embedded 8x8 digits, array-file loading, a seeded stratified split.

Example:
    >>> from sparsenet.data import load_dataset
    >>> ds = load_dataset("digits")
    >>> ds.x_train.shape[1:], ds.num_classes
    ((1, 8, 8), 10)
"""

from .arrays import load_arrays
from .augment import random_shift
from .dataset import Dataset
from .digits import load_digits
from .registry import load_dataset
from .split import train_test_split

__all__ = ["load_digits", "train_test_split", "load_arrays", "load_dataset", "Dataset", "random_shift"]
