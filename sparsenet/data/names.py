"""The embedded US Census 1990 first names: a character-level text task (is a first name more often
a woman's or a man's?), the classic exercise of Bird, Klein & Loper's NLTK book (chapter 6).

How census_names.npz was produced (once, from the files ``dist.female.first`` and
``dist.male.first`` of the PyPI package ``names`` 0.3.0, sha256 bd2f310f... and 0a5078ef...):
every name of either list, sorted; ``female``/``male`` hold its share of the 1990 census's women
(men) who bear it, in thousandths of a percent (0 when the name is not on that list)::

    np.savez_compressed("census_names.npz", names=np.frombuffer("\\n".join(names).encode("ascii"), np.uint8),
                        female=female.astype(np.uint16), male=male.astype(np.uint16))

Labels: 0 ``female`` when more women than men bear the name (by the census's shares), 1 ``male``
otherwise; the 3 names with equal shares are dropped. That leaves 5 160 names, 4 014 female and
1 146 male: a majority-class guess scores 0.778, so read macro F1 beside accuracy.
Attribution and licence (public domain data; the package is MIT): CENSUS_NAMES_LICENSE.txt.

Example:
    >>> ds = load_names()
    >>> ds.x_train.shape, ds.x_train.dtype, ds.classes
    ((3870, 12), dtype('int64'), ('female', 'male'))
    >>> ds.tokenizer.decode(ds.x_train[:1])[0].isalpha()
    True
"""

from __future__ import annotations

import functools
from importlib import resources

import numpy as np

from ..errors import DataError
from .dataset import Dataset
from .split import train_test_split
from .text import Tokenizer

__all__ = ["load_names", "census_names", "NAMES_LENGTH"]

_RESOURCE = "census_names.npz"
NAMES_LENGTH = 12  # the longest name has 11 letters: every name, right-aligned, starts with a PAD


@functools.lru_cache(maxsize=1)
def census_names() -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """(names, female shares, male shares) as shipped: 5 163 upper-case names, uint16 arrays in
    thousandths of a percent (read-only)."""
    what = f"the embedded {_RESOURCE}"
    try:
        with resources.files(__package__).joinpath(_RESOURCE).open("rb") as fh, \
                np.load(fh, allow_pickle=False) as z:
            blob, female, male = z["names"], z["female"], z["male"]
    except (OSError, ValueError, EOFError, KeyError) as exc:
        raise DataError(f"{what} cannot be read (a broken install?): {exc}") from exc
    if blob.dtype != np.uint8 or female.dtype != np.uint16 or male.dtype != np.uint16:
        raise DataError(f"{what}: expected uint8 names and uint16 shares, found {blob.dtype}, "
                        f"{female.dtype}, {male.dtype}")
    names = tuple(blob.tobytes().decode("ascii").split("\n"))
    if not (len(names) == female.size == male.size) or not all(n.isalpha() and n.isupper() for n in names):
        raise DataError(f"{what}: expected one upper-case name per share, found {len(names)} names, "
                        f"{female.size} and {male.size} shares")
    female.setflags(write=False)
    male.setflags(write=False)
    return names, female, male


def load_names(*, test_fraction: float = 0.25, seed: int = 0) -> Dataset:
    """The census first names as a 2-class text `Dataset` of character ids (int64 [N, 12]), split
    with stratification (`train_test_split`); the character `Tokenizer` is fitted on the training
    names only. Names are right-aligned (``pad="left"``: a name's last letter always sits at
    position 11); ``ds.tokenizer.encode(["ALEX"], 12, pad="left")`` encodes new ones (upper case:
    the census lists are, and the tokenizer keeps case: "Alex" would be A and three unknowns)."""
    names, female, male = census_names()
    keep = female != male
    texts = np.array(names, dtype=object)[keep]
    y = (male[keep] > female[keep]).astype(np.int64)
    t_tr, t_te, y_tr, y_te = train_test_split(texts, y, test_fraction=test_fraction, seed=seed)
    tok = Tokenizer("chars").fit(t_tr.tolist())
    return Dataset(tok.encode(t_tr.tolist(), NAMES_LENGTH, pad="left"), y_tr,
                   tok.encode(t_te.tolist(), NAMES_LENGTH, pad="left"), y_te,
                   name="names", num_classes=2, tokenizer=tok, classes=("female", "male"))
