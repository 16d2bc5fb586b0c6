"""`Tokenizer`: characters or words -> int64 token ids of a fixed length, with a vocabulary cut-off.

Ids 0 and 1 are reserved: 0 pads a sequence to its length, 1 stands for a token outside the
vocabulary (rarer than `min_count`, beyond `max_size`, or never seen while fitting). The vocabulary
is ordered by falling count, ties by the token itself, so the same texts give the same ids.
Word tokens are runs of letters, digits and apostrophes after lower-casing (``str.lower``);
character tokens are the characters themselves (case kept unless ``lower=True``).

A tokenizer is plain data (`to_dict` / `from_dict`: JSON-safe), so a model file's metadata can
carry the vocabulary that its Embedding was trained with.

Example:
    >>> tok = Tokenizer("chars").fit(["ANNA", "BOB"])
    >>> tok.vocabulary[:4]
    ['<pad>', '<unk>', 'A', 'B']
    >>> tok.encode(["ANNE"], length=5).tolist()
    [[2, 4, 4, 1, 0]]
    >>> tok.encode(["ANNE"], length=5, pad="left").tolist()
    [[0, 2, 4, 4, 1]]
    >>> tok.decode(tok.encode(["BOB"], length=5))
    ['BOB']
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np

from .._checks import check_int
from ..errors import ConfigError, DataError

__all__ = ["Tokenizer", "PAD", "UNK"]

PAD, UNK = 0, 1
_SPECIAL = ("<pad>", "<unk>")
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")


class Tokenizer:
    """Split texts into characters or words and map them to ids (0 pads, 1 is unknown).

    Args:
        level: ``"chars"`` or ``"words"``.
        min_count: a token seen fewer times than this while fitting maps to `UNK`.
        max_size: at most this many ids in all (the two reserved ones included); None: no cap.
        lower: lower-case texts first (always done for words).
    """

    def __init__(self, level: str = "words", *, min_count: int = 1, max_size: int | None = None,
                 lower: bool = False):
        if level not in ("chars", "words"):
            raise ConfigError(f"Tokenizer: expected level 'chars' or 'words', found {level!r}")
        self.level = level
        self.min_count = check_int(min_count, "min_count", "Tokenizer", low=1)
        self.max_size = None if max_size is None else check_int(max_size, "max_size", "Tokenizer", low=3)
        self.lower = bool(lower) or level == "words"
        self.vocabulary: list[str] = list(_SPECIAL)
        self._ids: dict[str, int] = {}

    # -- fitting -----------------------------------------------------------------------------
    def split(self, text: str) -> list[str]:
        """The tokens of one text (before the vocabulary applies)."""
        if not isinstance(text, str):
            raise DataError(f"Tokenizer: expected texts of type str, found {type(text).__name__}")
        if self.lower:
            text = text.lower()
        return list(text) if self.level == "chars" else _WORD.findall(text)

    def fit(self, texts) -> "Tokenizer":
        """Build the vocabulary from `texts` (an iterable of str); returns self."""
        counts = Counter()
        for text in _texts(texts):
            counts.update(self.split(text))
        kept = sorted((t for t, c in counts.items() if c >= self.min_count), key=lambda t: (-counts[t], t))
        if self.max_size is not None:
            kept = kept[:self.max_size - len(_SPECIAL)]
        self.vocabulary = list(_SPECIAL) + kept
        self._ids = {t: i for i, t in enumerate(self.vocabulary)}
        return self

    @property
    def vocab_size(self) -> int:
        """Number of ids (the two reserved ones included): an Embedding's row count."""
        return len(self.vocabulary)

    # -- encoding ----------------------------------------------------------------------------
    def encode(self, texts, length: int, *, pad: str = "right") -> np.ndarray:
        """int64 [len(texts), length]: each text's ids padded with `PAD` to `length`. ``pad="right"``
        starts every text at position 0 and cuts a longer one after `length` tokens; ``pad="left"``
        right-aligns them (every text's last token at position length - 1: a model with learned
        positions then finds endings, which say most about a name, in one place) and keeps a longer
        text's last `length` tokens."""
        length = check_int(length, "length", "Tokenizer.encode", low=1)
        if pad not in ("right", "left"):
            raise ConfigError(f"Tokenizer.encode: expected pad 'right' or 'left', found {pad!r}")
        if not self._ids:
            raise ConfigError("Tokenizer.encode: the tokenizer has no vocabulary yet: call fit(texts) first")
        texts = _texts(texts)
        out = np.zeros((len(texts), length), np.int64)
        for row, text in enumerate(texts):
            tokens = self.split(text)
            tokens = tokens[:length] if pad == "right" else tokens[-length:]
            ids = [self._ids.get(t, UNK) for t in tokens]
            if pad == "right":
                out[row, :len(ids)] = ids
            else:
                out[row, length - len(ids):] = ids
        return out

    def decode(self, ids) -> list[str]:
        """The texts of rows of ids (padding dropped; words joined by spaces)."""
        try:
            ids = np.asarray(ids)
        except ValueError:  # ragged rows
            raise DataError("Tokenizer.decode: expected a 2-D integer array, found ragged rows") from None
        if ids.ndim != 2 or ids.dtype.kind not in "iu":
            raise DataError(f"Tokenizer.decode: expected a 2-D integer array, found {ids.dtype} {ids.shape}")
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise DataError(f"Tokenizer.decode: ids must lie in [0, {self.vocab_size}), "
                            f"found range [{ids.min()}, {ids.max()}]")
        sep = "" if self.level == "chars" else " "
        return [sep.join(self.vocabulary[i] for i in row if i != PAD) for row in ids.tolist()]

    # -- plain data --------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """JSON-safe settings and vocabulary (for a model file's metadata)."""
        return {"level": self.level, "min_count": self.min_count, "max_size": self.max_size,
                "lower": self.lower, "vocabulary": list(self.vocabulary)}

    @classmethod
    def from_dict(cls, d) -> "Tokenizer":
        """The tokenizer that `to_dict` described; a malformed description raises DataError."""
        if not isinstance(d, dict) or not isinstance(d.get("vocabulary"), list) \
                or set(d) - {"level", "min_count", "max_size", "lower", "vocabulary"}:
            raise DataError(f"Tokenizer.from_dict: expected a dict with a 'vocabulary' list, found {d!r:.80}")
        vocab = d["vocabulary"]
        if vocab[:2] != list(_SPECIAL) or not all(isinstance(t, str) for t in vocab) \
                or len(set(vocab)) != len(vocab):
            raise DataError("Tokenizer.from_dict: the vocabulary must be distinct strings starting with "
                            f"{list(_SPECIAL)}, found {vocab[:4]}...")
        lower = d.get("lower", False)
        if not isinstance(lower, bool):
            raise DataError(f"Tokenizer.from_dict: expected 'lower' true or false, found {lower!r}")
        try:
            tok = cls(d.get("level", "words"), min_count=d.get("min_count", 1), max_size=d.get("max_size"),
                      lower=lower)
        except ConfigError as e:
            raise DataError(f"Tokenizer.from_dict: {e}") from None
        if tok.max_size is not None and len(vocab) > tok.max_size:
            raise DataError(f"Tokenizer.from_dict: a vocabulary of {len(vocab)} ids exceeds its max_size "
                            f"{tok.max_size}")
        tok.vocabulary = list(vocab)
        tok._ids = {t: i for i, t in enumerate(vocab)}
        return tok

    def __repr__(self) -> str:
        return f"Tokenizer({self.level!r}, vocab_size={self.vocab_size}, min_count={self.min_count})"


def _texts(texts, where: str = "Tokenizer") -> list:
    """`texts` as a list, refusing one str (a sequence of characters) and what is not a sequence."""
    if isinstance(texts, str):
        raise DataError(f"{where}: expected a sequence of texts, found one str (wrap it in a list)")
    try:
        return list(texts)
    except TypeError:
        raise DataError(f"{where}: expected a sequence of texts, found {type(texts).__name__}") from None
