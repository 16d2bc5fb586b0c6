"""Datasets: the embedded 8x8 digits, census first names (text) and MovieLens ratings, array-file
loading, a seeded stratified split, a tokenizer.

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
from .movielens import RatingsDataset, load_movielens
from .names import load_names
from .registry import DATASETS, classification_dataset, load_dataset
from .split import train_test_split
from .text import Tokenizer

__all__ = ["load_digits", "load_names", "load_movielens", "train_test_split", "load_arrays", "load_dataset",
           "classification_dataset", "Dataset", "RatingsDataset", "Tokenizer", "DATASETS", "random_shift"]
