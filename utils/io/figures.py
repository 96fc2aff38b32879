"""Figures drawn off-screen (matplotlib's Agg canvas) and written as PNG atomically.

matplotlib is imported inside the functions, so importing this module does not load it.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

from utils.errors import UserError
from utils.io.files import atomic_open

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def new_figure(width: float, height: float) -> Figure:
    """A figure drawn by the Agg canvas, independent of pyplot's global state (safe in any thread)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise UserError("matplotlib is not installed; install it with: pip install -r requirements.txt") from None
    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure: Figure, path: str | os.PathLike) -> None:
    """Write the figure to `path` as PNG, atomically."""
    with atomic_open(path, "wb") as handle:
        figure.savefig(handle, format="png", bbox_inches="tight", pad_inches=0.1)
