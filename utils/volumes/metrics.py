"""Per-volume segmentation scores in millimetres (Dice, IoU, HD95, ASSD) for 3-D (or 2-D) label arrays.

Definitions:
- Surface of a mask: its voxels with at least one face-neighbour (6-connectivity in 3-D, 4 in 2-D)
  outside it; outside the array counts as background, so a mask touching the border has surface
  there (`mask & ~scipy.ndimage.binary_erosion(mask, border_value=0)`).
- Directed distances A -> B: for each surface voxel of A, the Euclidean distance in mm (voxel centre
  to centre, `spacing` per axis) to the nearest surface voxel of B.
- HD95 = max(95th percentile of d(A->B), 95th percentile of d(B->A)), numpy's linear percentile.
- ASSD = mean of the concatenation of d(A->B) and d(B->A).
- Dice = 2|A and B| / (|A| + |B|), IoU = |A and B| / |A or B|.
These match MONAI's compute_hausdorff_distance(percentile=95) and
compute_average_surface_distance(symmetric=True) wherever both masks are non-empty; the empty-mask
rules (EMPTY_RULES) are ours (MONAI gives nan / inf there).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from utils.errors import UserError
from utils.io.labels import IGNORE_INDEX

EMPTY_RULES: dict[str, str] = {
    "ignored_voxels": "label voxels equal to ignore_index are removed from both masks before any score is computed",
    "both_empty": "prediction and label both empty: dice, iou, hd95 and assd are None and left out of the means "
                  "(the number of such volumes is reported per class)",
    "one_empty": "exactly one of prediction and label empty: dice 0, iou 0, hd95 and assd equal to the volume's "
                 "diagonal in mm, sqrt(sum((shape_i * spacing_i)^2)), the worst possible distance",
    "global_dice": "2 * sum(intersection) / sum(pred_voxels + label_voxels) over all volumes; None if that sum is 0",
}

_METRICS = ("dice", "iou", "hd95", "assd")


def _check_pair(pred: np.ndarray, label: np.ndarray, spacing: Sequence[float]) -> tuple[float, ...]:
    """Raise UserError unless pred and label are bool arrays of one shape with one positive spacing per axis."""
    if pred.shape != label.shape:
        raise UserError(f"prediction shape {pred.shape} differs from label shape {label.shape}")
    if pred.dtype != bool or label.dtype != bool:
        raise UserError(f"masks must be bool arrays, got {pred.dtype} and {label.dtype}; "
                        "compare a label volume with a class id first (volume == class_id)")
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != pred.ndim:
        raise UserError(f"spacing {spacing} has {len(spacing)} values but the volume has {pred.ndim} axes")
    if not all(math.isfinite(s) and s > 0 for s in spacing):
        raise UserError(f"spacing {spacing} must be positive millimetres per axis")
    return spacing


def _union_box(pred: np.ndarray, label: np.ndarray) -> tuple[slice, ...] | None:
    """Bounding box of pred | label, or None when both are empty."""
    union = pred | label
    box: list[slice] = []
    for axis in range(union.ndim):
        hits = np.flatnonzero(np.moveaxis(union, axis, 0).reshape(union.shape[axis], -1).any(axis=1))
        if hits.size == 0:
            return None
        box.append(slice(int(hits[0]), int(hits[-1]) + 1))
        # Crop as we go so that later axes scan only the slab that holds foreground.
        union = union[(slice(None),) * axis + (box[-1],)]
    return tuple(box)


def _surface(mask: np.ndarray) -> np.ndarray:
    """Voxels of mask with a face-neighbour outside it (array border = background)."""
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def _cropped_distances(pred: np.ndarray, label: np.ndarray,
                       spacing: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Directed surface distances of two masks cropped to the bounding box of their union.

    The crop needs no margin: every voxel just outside the box is background whether it lies in the
    array or beyond its border, which is what border_value=0 assumes.
    """
    scale = np.asarray(spacing)
    points_pred, points_label = np.argwhere(_surface(pred)) * scale, np.argwhere(_surface(label)) * scale
    return _nearest(points_pred, points_label), _nearest(points_label, points_pred)


def _nearest(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Distance from each source point to the nearest target point (inf if there is none).

    Exact, and equal to distance_transform_edt(~surface_target, sampling=spacing)[surface_source];
    a k-d tree over the surface points costs what the surfaces cost, whereas the dense EDT costs what
    the bounding box costs, and one stray voxel in a far corner stretches the box to the whole volume.
    """
    if len(target) == 0:
        return np.full(len(source), np.inf)
    return cKDTree(target, leafsize=32).query(source)[0]


def surface_distances(pred: np.ndarray, label: np.ndarray, spacing: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Distances in mm from each surface voxel of pred to the nearest surface voxel of label, and label -> pred.

    An empty mask has no surface voxels: distances from it are an empty array, distances to it are inf.
    """
    spacing = _check_pair(pred, label, spacing)
    box = _union_box(pred, label)
    if box is None:
        return np.zeros(0), np.zeros(0)
    return _cropped_distances(pred[box], label[box], spacing)


def class_scores(pred: np.ndarray, label: np.ndarray, spacing: Sequence[float]) -> dict[str, float | int | None]:
    """Dice, IoU, HD95, ASSD (mm) and voxel counts of one binary pred/label pair (bool arrays, same shape)."""
    spacing = _check_pair(pred, label, spacing)
    box = _union_box(pred, label)
    if box is None:
        return {"dice": None, "iou": None, "hd95": None, "assd": None,
                "pred_voxels": 0, "label_voxels": 0, "intersection": 0}
    shape = pred.shape
    pred, label = pred[box], label[box]
    pred_voxels, label_voxels = int(np.count_nonzero(pred)), int(np.count_nonzero(label))
    intersection = int(np.count_nonzero(pred & label))
    counts = {"pred_voxels": pred_voxels, "label_voxels": label_voxels, "intersection": intersection}
    if pred_voxels == 0 or label_voxels == 0:
        # The worst distance possible in this volume, so a missed or hallucinated object weighs in the means.
        diagonal = math.sqrt(sum((n * s) ** 2 for n, s in zip(shape, spacing)))
        return {"dice": 0.0, "iou": 0.0, "hd95": diagonal, "assd": diagonal, **counts}
    to_label, to_pred = _cropped_distances(pred, label, spacing)
    return {
        "dice": 2.0 * intersection / (pred_voxels + label_voxels),
        "iou": intersection / (pred_voxels + label_voxels - intersection),
        "hd95": float(max(np.percentile(to_label, 95), np.percentile(to_pred, 95))),
        "assd": float(np.concatenate([to_label, to_pred]).mean()),
        **counts,
    }


def volume_scores(pred: np.ndarray, label: np.ndarray, num_classes: int, spacing: Sequence[float],
                  ignore_index: int = IGNORE_INDEX) -> dict[int, dict]:
    """class_scores for every foreground class 1..num_classes-1 of two integer label volumes."""
    pred, label = np.asarray(pred), np.asarray(label)
    if num_classes < 2:
        raise UserError(f"num_classes must be at least 2 (background and one class), got {num_classes}")
    if pred.shape != label.shape:
        raise UserError(f"prediction shape {pred.shape} differs from label shape {label.shape}")
    for name, volume in (("prediction", pred), ("label", label)):
        if not np.issubdtype(volume.dtype, np.integer):
            raise UserError(f"{name} volume must hold integer class ids, got dtype {volume.dtype}")
    valid = label != ignore_index
    if pred.size:
        bad_label = label[valid & ((label < 0) | (label >= num_classes))]
        if bad_label.size:
            raise UserError(f"label volume holds class id {int(bad_label[0])}, outside 0..{num_classes - 1} "
                            f"and not ignore_index {ignore_index}; check num_classes or the label encoding")
        if int(pred.min()) < 0 or int(pred.max()) >= num_classes:
            raise UserError(f"prediction volume holds class ids {int(pred.min())}..{int(pred.max())}, "
                            f"outside 0..{num_classes - 1}; check num_classes")
    return {c: class_scores((pred == c) & valid, (label == c) & valid, spacing) for c in range(1, num_classes)}


def summarize(per_volume: list[dict[int, dict]], num_classes: int) -> dict[int, dict]:
    """Per class over volumes: mean and median of dice/iou/hd95/assd (None left out, count given) and global Dice.

    Each class maps to {metric: {"mean", "median", "count"}} for the four metrics, plus "global_dice",
    "both_empty" (volumes where prediction and label are both empty) and "volumes".
    """
    summary: dict[int, dict] = {}
    for c in range(1, num_classes):
        try:
            rows = [scores[c] for scores in per_volume]
        except KeyError:
            raise UserError(f"a volume has no scores for class {c}; "
                            f"were they made with num_classes={num_classes}?") from None
        entry: dict = {}
        for name in _METRICS:
            values = [row[name] for row in rows if row[name] is not None]
            entry[name] = {"mean": float(np.mean(values)) if values else None,
                           "median": float(np.median(values)) if values else None,
                           "count": len(values)}
        denominator = sum(row["pred_voxels"] + row["label_voxels"] for row in rows)
        entry["global_dice"] = 2.0 * sum(row["intersection"] for row in rows) / denominator if denominator else None
        entry["both_empty"] = sum(1 for row in rows if row["pred_voxels"] == 0 and row["label_voxels"] == 0)
        entry["volumes"] = len(rows)
        summary[c] = entry
    return summary
