"""Confusion matrix and the scores derived from it (IoU, PA, Dice, mIoU, mPA), f-score, per-case Dice."""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch

from utils.io.labels import IGNORE_INDEX


def predict_labels(logits: torch.Tensor) -> torch.Tensor:
    """Class ids from logits: argmax over classes, or logit > 0 for a single-channel sigmoid model."""
    if logits.shape[1] == 1:
        return (logits[:, 0] > 0).long()
    return logits.argmax(dim=1)


def _counts(pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int) -> torch.Tensor:
    """num_classes**2 + 1 pixel counts: the (label, prediction) cells, then the number of labels outside
    0..num_classes-1; ignored pixels are not counted. Nothing here makes the host wait for the device."""
    target, pred = target.reshape(-1).long(), pred.reshape(-1).long().clamp(0, num_classes - 1)
    out_of_range = num_classes * num_classes
    cell = torch.where((target >= 0) & (target < num_classes), target * num_classes + pred, out_of_range)
    # Ignored pixels go to one more bin that is dropped: boolean indexing has a data-dependent size.
    cell = torch.where(target == ignore_index, out_of_range + 1, cell)
    if cell.device.type == "cpu":
        counts = torch.bincount(cell, minlength=out_of_range + 2)
    else:  # CUDA bincount reads the maximum back to size its output
        counts = torch.zeros(out_of_range + 2, dtype=torch.int64, device=cell.device)
        counts.index_add_(0, cell, torch.ones_like(cell))
    return counts[:-1]


def _matrix(counts: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The num_classes x num_classes matrix of `_counts`, without its out-of-range count."""
    return counts[:-1].reshape(num_classes, num_classes)


def _checked(counts: torch.Tensor, num_classes: int) -> torch.Tensor:
    """`_matrix`, after raising ValueError if any label lay outside the classes (this reads the count back)."""
    bad = int(counts[-1])
    if bad:
        raise ValueError(f"{bad} label pixels are not below num_classes={num_classes} (nor the ignore index)")
    return _matrix(counts, num_classes)


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                     ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """num_classes x num_classes counts (rows = label, columns = prediction), ignored pixels left out."""
    return _checked(_counts(pred, target, num_classes, ignore_index), num_classes)


class ConfusionMatrix:
    """Accumulates a confusion matrix over batches on the batches' device (int64, exact)."""

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix: torch.Tensor | None = None

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add the counts of one batch of predicted and true label maps (no host-device sync)."""
        counts = _counts(pred, target, self.num_classes, self.ignore_index)
        self.matrix = counts if self.matrix is None else self.matrix + counts

    def compute(self) -> np.ndarray:
        """The accumulated matrix as a numpy int64 array; labels outside the classes raise ValueError."""
        if self.matrix is None:
            return np.zeros((self.num_classes, self.num_classes), dtype=np.int64)
        return _checked(self.matrix, self.num_classes).cpu().numpy().astype(np.int64)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.maximum(den, 1), np.nan)


def scores_from_confusion(matrix: np.ndarray, class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """Per-class IoU, PA (recall), precision, Dice; mIoU/mPA/mDice over classes present; pixel accuracy.

    IoU = TP/(TP+FP+FN), PA = TP/(TP+FN), Dice = 2TP/(2TP+FP+FN). A class absent from both labels and
    predictions has no score (None) and is left out of the means; a class present in the predictions
    only scores IoU 0 and takes part in the means.
    """
    matrix = np.asarray(matrix, dtype=np.int64)
    num_classes = matrix.shape[0]
    names = list(class_names) if class_names else [f"class_{i}" for i in range(num_classes)]
    tp = np.diag(matrix).astype(np.float64)
    fn = matrix.sum(axis=1) - tp
    fp = matrix.sum(axis=0) - tp
    present = (tp + fn + fp) > 0
    iou = _ratio(tp, tp + fp + fn)
    pa = _ratio(tp, tp + fn)
    precision = _ratio(tp, tp + fp)
    dice = _ratio(2 * tp, 2 * tp + fp + fn)
    total = matrix.sum()

    def mean(values: np.ndarray) -> float | None:
        chosen = values[present & ~np.isnan(values)]
        return float(chosen.mean()) if chosen.size else None

    def listed(values: np.ndarray) -> list[float | None]:
        return [None if math.isnan(v) else float(v) for v in values]

    return {
        "class_names": names,
        "confusion_matrix": matrix.tolist(),
        "iou": listed(iou),
        "pa": listed(pa),
        "precision": listed(precision),
        "dice": listed(dice),
        "miou": mean(iou),
        "mpa": mean(pa),
        "mdice": mean(dice),
        "pixel_accuracy": float(tp.sum() / total) if total else None,
        "absent_classes": [names[i] for i in range(num_classes) if not present[i]],
        "pixels": int(total),
    }


def f_score(logits: torch.Tensor, target: torch.Tensor, beta: float = 1.0, smooth: float = 1e-5,
            ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """The seed's f-score: per-class F-beta of hard predictions over the batch, averaged over classes.

    A 0-dim tensor on the logits' device, so a training step need not wait for it.
    """
    num_classes = max(logits.shape[1], 2)
    pred = predict_labels(logits)
    matrix = _matrix(_counts(pred, target, num_classes, ignore_index), num_classes).double()
    tp = matrix.diag()
    fn = matrix.sum(dim=1) - tp
    fp = matrix.sum(dim=0) - tp
    b2 = beta * beta
    score = ((1 + b2) * tp + smooth) / ((1 + b2) * tp + b2 * fn + fp + smooth)
    return score.mean()


def case_dice(pred: np.ndarray, target: np.ndarray, foreground: int = 1, empty: float | None = None,
              ignore_index: int = IGNORE_INDEX) -> float | None:
    """Dice of one case (an image or a patient volume) for one class.

    When both prediction and label hold no pixel of the class the Dice is undefined: `empty` is
    returned (None = leave the case out of the mean, 1.0 = count it as perfect).
    """
    valid = target != ignore_index
    p = (pred == foreground) & valid
    t = (target == foreground) & valid
    denom = int(p.sum()) + int(t.sum())
    if denom == 0:
        return empty
    return 2.0 * int((p & t).sum()) / denom


def dice_per_class(matrix: np.ndarray, empty: float | None = None) -> list[float | None]:
    """Dice of every class from one case's confusion matrix; `empty` where a class is in neither map."""
    matrix = np.asarray(matrix, dtype=np.int64)
    tp = np.diag(matrix)
    denom = matrix.sum(axis=0) + matrix.sum(axis=1)
    return [float(2 * t / d) if d else empty for t, d in zip(tp, denom)]


def mean_case_dice(matrices: Sequence[np.ndarray], empty: float | None = None) -> list[float | None]:
    """Per class, the mean over cases of the case's Dice (cases where it is undefined and `empty` is None are skipped)."""
    per_case = [dice_per_class(m, empty) for m in matrices]
    means: list[float | None] = []
    for values in zip(*per_case):
        defined = [v for v in values if v is not None]
        means.append(float(np.mean(defined)) if defined else None)
    return means


def class_scores(matrix: np.ndarray) -> tuple[list[float | None], list[float | None]]:
    """Per-class Dice and IoU of one image's confusion matrix; None where the class is in neither map."""
    matrix = np.asarray(matrix, dtype=np.int64)
    tp = np.diag(matrix)
    sizes = matrix.sum(axis=0) + matrix.sum(axis=1)
    dice = [float(2 * t / s) if s else None for t, s in zip(tp, sizes)]
    iou = [float(t / (s - t)) if s else None for t, s in zip(tp, sizes)]
    return dice, iou


def foreground_dice(matrix: np.ndarray) -> float | None:
    """Mean Dice over the non-background classes present in the label or prediction; None if there are none."""
    defined = [value for value in class_scores(matrix)[0][1:] if value is not None]
    return float(np.mean(defined)) if defined else None
