"""Pictures of a run: the training curves (curves.png) and a grid of augmented samples for TensorBoard."""
from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import torch
from torchvision.utils import make_grid

from utils.io.figures import new_figure, save_figure
from utils.io.labels import overlay

if TYPE_CHECKING:
    from matplotlib.figure import Figure

TRAIN_COLOUR, VAL_COLOUR = "#1f77b4", "#d62728"
_warned: set[str] = set()


def curves_figure(history: Sequence[dict[str, Any]]) -> Figure:
    """Loss, f-score, validation mIoU and learning rate per epoch, from history.json's records."""
    from matplotlib.ticker import MaxNLocator, NullFormatter

    figure = new_figure(10, 6.5)
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


def sample_grid(samples: list[tuple[torch.Tensor, torch.Tensor]], augmentation: Callable | None,
                num_classes: int, per_row: int = 4) -> torch.Tensor:
    """uint8 (3, H', W') grid of (augmented) same-size images (C, H, W) with their labels (H, W) overlaid."""
    tiles = []
    for image, label in samples:
        if augmentation is not None:
            image, label, _ = augmentation(image, label)
        blended = overlay(image.permute(1, 2, 0).numpy(), label.numpy(), num_classes)
        tiles.append(torch.from_numpy(blended).permute(2, 0, 1))
    return make_grid(tiles, nrow=per_row, padding=2)
