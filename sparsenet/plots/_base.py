"""Shared plumbing of the plots: matplotlib on demand, figures without pyplot, PNG files."""

from __future__ import annotations

import os


from ..errors import ConfigError, SparsenetError


_INSTALL = "plots need matplotlib: pip install 'sparsenet[plot]' (or pip install matplotlib)"
# Colour-blind-safe palette (Okabe & Ito), so that methods keep their colour from plot to plot.
_PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
BYTE_PARTS = ("values", "indices", "pointers", "scales", "other")


def available() -> bool:
    """True when matplotlib can be imported (the figures can be drawn)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _figure(width: float, height: float):
    """A new Figure with constrained layout, or SparsenetError naming the extra to install."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise SparsenetError(_INSTALL) from None
    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def save_png(fig, path) -> str:
    """Write `fig` as a PNG to `path` atomically (`sparsenet.io.atomic.atomic_writer`); return the path."""
    from ..io.atomic import atomic_writer

    path = os.fspath(path)
    with atomic_writer(path) as f:
        fig.savefig(f, format="png", dpi=fig.dpi)
    return path


def _rows(figures) -> dict:
    """{method: row} from a whole demo result (its "pruned" part) or from the rows themselves."""
    if not isinstance(figures, dict):
        raise ConfigError(f"plots: expected a dict of figures, found {type(figures).__name__}")
    rows = figures.get("pruned", figures)
    if not isinstance(rows, dict) or not all(isinstance(r, dict) for r in rows.values()):
        raise ConfigError("plots: expected {method: row dict} or a demo result with a 'pruned' entry")
    return rows


def _colour(i: int) -> str:
    return _PALETTE[i % len(_PALETTE)]


def _short(name: str, width: int = 28) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"
