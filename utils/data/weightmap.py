"""The U-Net paper's pixel weight map for boundary-weighted cross-entropy (Ronneberger et al. 2015, eq. 2).

    w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))^2 / (2 * sigma^2))

Definitions used here:
- Cells are the connected components of the `foreground` class with 4-connectivity, so two cells that
  touch only diagonally (split by a one-pixel diagonal membrane) stay separate cells.
- d1, d2: Euclidean distance in pixels from x to the nearest pixel of the nearest and of the
  second-nearest cell (a pixel next to a cell is at distance 1).
- The border term is added only to valid non-foreground pixels, the pixels between cells, as in the paper;
  with fewer than two cells it is 0 everywhere.
- w_c(class) = valid_pixels / (present_classes * pixels_of_class), counted over non-ignored pixels, so
  every present class carries the same total weight and a perfectly balanced mask gives 1.
- Ignored pixels (`ignore_index`) get weight 0.

Each cell's distance transform is computed only inside its bounding box grown by a margin of
6 * sigma; beyond it the border term is below w0 * exp(-18) and is treated as 0.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

_MARGIN_SIGMAS = 6.0


def class_balance_weights(label: np.ndarray, ignore_index: int = 255) -> np.ndarray:
    """Per-pixel w_c = valid / (present_classes * pixels_of_class); 0 on ignored pixels."""
    weights = np.zeros(label.shape, dtype=np.float32)
    valid = label != ignore_index
    classes, counts = np.unique(label[valid], return_counts=True)
    if classes.size == 0:
        return weights
    per_class = valid.sum() / (classes.size * counts)
    weights[valid] = per_class[np.searchsorted(classes, label[valid])]
    return weights


def _two_nearest_cell_distances(cells: np.ndarray, margin: int) -> tuple[np.ndarray, np.ndarray]:
    """Distances to the nearest and second-nearest cell (inf where no cell lies within `margin`)."""
    d1 = np.full(cells.shape, np.inf, dtype=np.float64)
    d2 = np.full(cells.shape, np.inf, dtype=np.float64)
    height, width = cells.shape
    for index, box in enumerate(ndimage.find_objects(cells), start=1):
        if box is None:
            continue
        rows = slice(max(box[0].start - margin, 0), min(box[0].stop + margin, height))
        cols = slice(max(box[1].start - margin, 0), min(box[1].stop + margin, width))
        # The whole cell lies inside the window, so in-window distances are exact.
        dist = ndimage.distance_transform_edt(cells[rows, cols] != index)
        near, second = d1[rows, cols], d2[rows, cols]
        second[...] = np.where(dist < near, near, np.minimum(second, dist))
        np.minimum(near, dist, out=near)
    return d1, d2


def unet_weight_map(label: np.ndarray, w0: float = 10.0, sigma: float = 5.0, foreground: int = 1,
                    ignore_index: int = 255) -> np.ndarray:
    """Float32 U-Net weight map (class balance + cell-separation border term) for a (H, W) class-id label."""
    label = np.asarray(label)
    if label.ndim != 2:
        raise ValueError(f"label must be a (H, W) array, got shape {label.shape}")
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    weights = class_balance_weights(label, ignore_index)
    cells, num_cells = ndimage.label(label == foreground)  # default structure = 4-connectivity
    if num_cells < 2 or w0 == 0:
        return weights
    d1, d2 = _two_nearest_cell_distances(cells, math.ceil(_MARGIN_SIGMAS * sigma))
    between = (label != foreground) & (label != ignore_index) & np.isfinite(d2)
    border = w0 * np.exp(-((d1[between] + d2[between]) ** 2) / (2.0 * sigma ** 2))
    weights[between] += border.astype(np.float32)
    return weights
