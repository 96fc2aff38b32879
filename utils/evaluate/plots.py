"""Score figures for people: per-class IoU/Dice bars and the confusion-matrix heat map."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from utils.io.figures import new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

IOU_COLOUR, DICE_COLOUR = "#4c72b0", "#dd8452"
CELL_VALUES_UP_TO = 12  # beyond this many classes the cell texts no longer fit


def scores_figure(scores: dict[str, Any]) -> Figure:
    """Grouped bars of per-class IoU and Dice (miou.py's scores); classes without a score say 'n/a'."""
    names = scores["class_names"]
    figure = new_figure(max(5.0, 0.7 * len(names) + 2), 4)
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
    figure = new_figure(side + 1, side)
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
