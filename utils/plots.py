"""Figures for people: training curves, per-class score bars, the confusion-matrix heat map (matplotlib, Agg).

matplotlib is imported inside the functions, so importing this module (or utils) does not load it.
"""
from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from utils.errors import UserError
from utils.fileio import atomic_open

if TYPE_CHECKING:
    from matplotlib.figure import Figure

TRAIN_COLOUR, VAL_COLOUR = "#1f77b4", "#d62728"
IOU_COLOUR, DICE_COLOUR = "#4c72b0", "#dd8452"
CELL_VALUES_UP_TO = 12  # beyond this many classes the cell texts no longer fit
_warned: set[str] = set()


def _new_figure(width: float, height: float) -> Figure:
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


def curves_figure(history: Sequence[dict[str, Any]]) -> Figure:
    """Loss, f-score, validation mIoU and learning rate per epoch, from history.json's records."""
    from matplotlib.ticker import MaxNLocator, NullFormatter

    figure = _new_figure(10, 6.5)
    axes = figure.subplots(2, 2, sharex=True)
    epochs = [record["epoch"] for record in history]

    def series(key: str) -> list[float]:
        return [np.nan if record.get(key) is None else record[key] for record in history]

    panels = ((axes[0, 0], "loss", (("train_loss", "train", TRAIN_COLOUR), ("val_loss", "val", VAL_COLOUR))),
              (axes[0, 1], "f-score", (("train_f_score", "train", TRAIN_COLOUR), ("val_f_score", "val", VAL_COLOUR))),
              (axes[1, 0], "validation", (("val_miou", "mIoU", VAL_COLOUR), ("val_mpa", "mPA", "#7f7f7f"))),
              (axes[1, 1], "learning rate", (("lr", "lr", "#2ca02c"),)))
    marker = "o" if len(epochs) <= 30 else None  # dots show single epochs; on long runs they only blur the line
    for axis, title, lines in panels:
        for key, label, colour in lines:
            axis.plot(epochs, series(key), marker=marker, markersize=3, color=colour, label=label)
        axis.set_title(title)
        axis.grid(alpha=0.3)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        if len(lines) > 1:
            axis.legend(loc="best", fontsize="small")
    miou = series("val_miou")
    if history and not np.all(np.isnan(miou)):
        best = int(np.nanargmax(miou))
        axes[1, 0].plot([epochs[best]], [miou[best]], marker="*", markersize=12, color="#ffbf00",
                        markeredgecolor="black", linestyle="none", label=f"best {miou[best]:.4f} (epoch {epochs[best]})")
        axes[1, 0].legend(loc="best", fontsize="small")
    rates = [value for value in series("lr") if value > 0]
    if rates and max(rates) > 10 * min(rates):  # a log axis only pays off over decades; within one it hides values
        axes[1, 1].set_yscale("log")
        axes[1, 1].yaxis.set_minor_formatter(NullFormatter())
    else:
        axes[1, 1].ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    for axis in axes[1]:
        axis.set_xlabel("epoch")
    return figure


def save_training_curves(path: str | os.PathLike, history: Sequence[dict[str, Any]]) -> None:
    """Write curves.png; a failure prints one warning line (once per message) and never stops training."""
    try:
        save_figure(curves_figure(history), path)
    except Exception as exc:  # a picture must never cost a training run
        message = f"warning: training curves not written to {path}: {exc}"
        if message not in _warned:
            _warned.add(message)
            print(message, file=sys.stderr)


def scores_figure(scores: dict[str, Any]) -> Figure:
    """Grouped bars of per-class IoU and Dice (miou.py's scores); classes without a score say 'n/a'."""
    names = scores["class_names"]
    figure = _new_figure(max(5.0, 0.7 * len(names) + 2), 4)
    axis = figure.subplots()
    positions = np.arange(len(names))
    width = 0.38
    for offset, key, label, colour in ((-width / 2, "iou", "IoU", IOU_COLOUR), (width / 2, "dice", "Dice", DICE_COLOUR)):
        values = [np.nan if v is None else v for v in scores[key]]
        bars = axis.bar(positions + offset, np.nan_to_num(values), width, label=label, color=colour)
        if len(names) <= CELL_VALUES_UP_TO:
            axis.bar_label(bars, labels=["n/a" if np.isnan(v) else f"{v:.3f}" for v in values], fontsize=7, padding=2)
    if len(names) > CELL_VALUES_UP_TO:  # no bar labels here, so say on the axis which classes have no score
        names = [f"{name} (n/a)" if value is None else name for name, value in zip(names, scores["iou"])]
    axis.set_xticks(positions, names, rotation=30 if len(names) > 6 else 0, ha="right" if len(names) > 6 else "center")
    axis.set_ylim(0, 1.22)  # the band above 1 holds the bar values and the legend, clear of any bar
    axis.set_yticks(np.linspace(0, 1, 6))
    axis.set_ylabel("score")
    axis.set_title(f"per-class IoU and Dice (mIoU {_percent(scores['miou'])}, mDice {_percent(scores['mdice'])})")
    axis.legend(loc="upper right", ncol=2)
    axis.grid(axis="y", alpha=0.3)
    return figure


def row_normalised(matrix: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (the share of a label class predicted as each class); empty rows stay 0."""
    matrix = np.asarray(matrix, dtype=np.float64)
    totals = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)


def confusion_figure(matrix: np.ndarray, names: Sequence[str]) -> Figure:
    """Row-normalised confusion-matrix heat map, class names on both axes, cell values for <= 12 classes."""
    shares = row_normalised(matrix)
    count = len(names)
    side = max(4.5, 0.45 * count + 2.5)
    figure = _new_figure(side + 1, side)
    axis = figure.subplots()
    image = axis.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04, label="share of the label's pixels")
    axis.set_xticks(range(count), names, rotation=45 if count > 4 else 0, ha="right" if count > 4 else "center")
    axis.set_yticks(range(count), names)
    axis.set_xlabel("prediction")
    axis.set_ylabel("label")
    axis.set_title("confusion matrix (rows sum to 1)")
    if count <= CELL_VALUES_UP_TO:
        for row in range(count):
            for column in range(count):
                share = shares[row, column]
                axis.text(column, row, f"{share:.2f}", ha="center", va="center", fontsize=10 if count <= 6 else 8,
                          color="white" if share > 0.5 else "black")
    return figure


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.2f}%"
