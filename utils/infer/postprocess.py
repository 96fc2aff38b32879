"""Post-processing of predicted label maps and class probabilities, for 2-D slices and 3-D volumes alike.

- `keep_largest` keeps each foreground class's largest connected components (face connectivity).
- `move_removed_to_background` makes probabilities agree with the cleaned labels again.
- `probabilities_for_saving` rounds probabilities to float16 without changing their argmax.
- `save_probabilities_npz` writes them, with the class names, atomically.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import ndimage

from utils.errors import UserError
from utils.io.files import atomic_open
from utils.io.labels import IGNORE_INDEX


@dataclass(frozen=True)
class KeepLargest:
    """--keep-largest K: keep the K largest components of every foreground class, or only of `classes` (ids)."""

    count: int = 1
    classes: tuple[int, ...] | None = None


def _check_labels(labels: np.ndarray, num_classes: int, allow_ignore: bool, what: str) -> None:
    """Raise UserError unless `labels` is an integer array of ids 0..num_classes-1 (and 255 if allowed)."""
    if not isinstance(labels, np.ndarray) or not np.issubdtype(labels.dtype, np.integer):
        raise UserError(f"{what} must be an integer numpy array, got {getattr(labels, 'dtype', type(labels))}.")
    if labels.size == 0:
        return
    # min/max first: cheap, and names the offending value without a full np.unique sort.
    low, high = int(labels.min()), int(labels.max())
    if low >= 0 and high < num_classes:
        return
    valid = (labels >= 0) & (labels < num_classes)
    if allow_ignore:
        valid |= labels == IGNORE_INDEX
    if not valid.all():
        bad = labels[~valid]
        extra = f" or {IGNORE_INDEX} (ignore)" if allow_ignore else ""
        raise UserError(
            f"{what} holds class id {int(bad.flat[0])} ({bad.size} voxels); ids must be 0..{num_classes - 1}{extra}. "
            f"Check num_classes ({num_classes}) against the model that produced the labels."
        )


def keep_largest(labels: np.ndarray, num_classes: int, top_k: int = 1, classes: Sequence[int] | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Keep each foreground class's (or only `classes`') `top_k` largest face-connected components (4-conn. 2-D,
    6-conn. 3-D); return (cleaned labels, removed mask)."""
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise UserError(f"top_k must be an integer >= 1 (components kept per class), got {top_k!r}.")
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or not 1 <= num_classes <= IGNORE_INDEX:
        raise UserError(f"num_classes must be an integer in 1..{IGNORE_INDEX}, got {num_classes!r}.")
    _check_labels(labels, num_classes, allow_ignore=True, what="labels")
    removed = np.zeros(labels.shape, dtype=bool)
    if labels.size == 0:
        return labels.copy(), removed
    # One bincount tells which classes are present, so absent classes cost no labelling pass.
    counts = np.bincount(labels.ravel(), minlength=num_classes)
    for class_id in range(1, num_classes):
        if counts[class_id] == 0 or (classes is not None and class_id not in classes):
            continue
        # Default structure = face neighbours only: diagonal contact does not join components.
        components, count = ndimage.label(labels == class_id)
        if count <= top_k:
            continue
        sizes = np.bincount(components.ravel(), minlength=count + 1)[1:]
        # Stable sort on -size: among equal sizes the lower component index (first in scan order) wins.
        kept = np.argsort(-sizes, kind="stable")[:top_k] + 1
        drop = np.ones(count + 1, dtype=bool)
        drop[0] = False  # index 0 is "not this class", never removed by this class
        drop[kept] = False
        removed |= drop[components]
    cleaned = labels.copy()
    cleaned[removed] = 0
    return cleaned, removed


def move_removed_to_background(probabilities: np.ndarray, labels_before: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """Probabilities (K, *spatial) consistent with the cleaned labels: a removed voxel's probability of its class moves to background."""
    probabilities = np.asarray(probabilities)
    if probabilities.ndim < 2 or not np.issubdtype(probabilities.dtype, np.floating):
        raise UserError(f"probabilities must be a float array (K, *spatial), got {probabilities.dtype} {probabilities.shape}.")
    spatial = probabilities.shape[1:]
    if labels_before.shape != spatial or removed.shape != spatial:
        raise UserError(
            f"probabilities {probabilities.shape} need labels and removed mask of shape {spatial}, "
            f"got {labels_before.shape} and {removed.shape}."
        )
    removed = removed.astype(bool, copy=False)
    moved = probabilities.copy()
    if not removed.any():
        return moved
    where = np.nonzero(removed)
    classes = labels_before[where].astype(np.intp)
    if classes.min() < 1 or classes.max() >= probabilities.shape[0]:
        raise UserError(f"removed voxels must hold foreground classes 1..{probabilities.shape[0] - 1} in labels_before.")
    class_p = moved[(classes, *where)]
    voxel_p = moved[(slice(None), *where)]  # (K, n_removed)
    if (voxel_p < 0).any() or (voxel_p.max(axis=0) > class_p).any():
        raise UserError("labels_before must be the argmax of non-negative probabilities at the removed voxels.")
    # Why argmax now equals the cleaned label (0) at every removed voxel: c was the argmax, so
    # p_c >= p_j for all j, and p_0 >= 0 gives p_0 + p_c >= p_c >= p_j (fl(p_0 + p_c) >= p_c too, since
    # rounding is monotone and p_c is representable). p_c becomes 0, so the new p_0 is a maximum;
    # if it ties with another class, np.argmax returns the first maximum, index 0 = background.
    # Voxels not removed are untouched and keep their label, which the cleaning also kept.
    moved[(np.zeros_like(classes), *where)] += class_p
    moved[(classes, *where)] = 0
    return moved


def probabilities_for_saving(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """float16 copy of (K, *spatial) probabilities whose argmax over K equals `labels` exactly."""
    probabilities = np.asarray(probabilities)
    if probabilities.ndim < 2 or not np.issubdtype(probabilities.dtype, np.floating):
        raise UserError(f"probabilities must be a float array (K, *spatial), got {probabilities.dtype} {probabilities.shape}.")
    if labels.shape != probabilities.shape[1:]:
        raise UserError(f"labels {labels.shape} must have the spatial shape of probabilities {probabilities.shape[1:]}.")
    num_classes = probabilities.shape[0]
    # Predicted labels never hold 255; one here means the labels came from elsewhere.
    _check_labels(labels, num_classes, allow_ignore=False, what="labels")
    rounded = probabilities.astype(np.float16)
    mismatch = np.argmax(rounded, axis=0) != labels
    if not mismatch.any():
        return rounded
    where = np.nonzero(mismatch)
    classes = labels[where].astype(np.intp)
    others = rounded[(slice(None), *where)].copy()
    others[classes, np.arange(classes.size)] = -np.inf
    largest_other = others.max(axis=0)
    # Rounding is monotone, so a labelled class that is the argmax (or within rounding of it) in full
    # precision at worst ties in float16. A labelled value below another in float16 is a real
    # disagreement that a small nudge would hide.
    if (rounded[(classes, *where)] < largest_other).any():
        raise UserError("labels must be the argmax of probabilities (call move_removed_to_background after keep_largest).")
    # The labelled value equals the largest other one here, so the next float16 up is a one-ulp change.
    raised = np.nextafter(largest_other, np.float16(np.inf))
    rounded[(classes, *where)] = raised
    if not np.array_equal(np.argmax(rounded, axis=0), labels):
        raise AssertionError("float16 probabilities still disagree with labels after the one-ulp fix")
    return rounded


def save_probabilities_npz(path: str | os.PathLike, probabilities: np.ndarray, class_names: list[str]) -> None:
    """Write float16 probabilities (K, *spatial) and the class names to a compressed .npz, atomically."""
    probabilities = np.asarray(probabilities)
    if probabilities.ndim < 2 or probabilities.shape[0] != len(class_names):
        raise UserError(
            f"probabilities {probabilities.shape} need one leading channel per class name ({len(class_names)} names)."
        )
    # Callers that need the argmax preserved pass probabilities_for_saving's output; astype is then a no-op.
    with atomic_open(path, "wb") as handle:
        np.savez_compressed(
            handle,
            probabilities=probabilities.astype(np.float16, copy=False),
            class_names=np.array([str(name) for name in class_names], dtype=str),
        )
