"""Letterboxing: scale the longer side to the input size keeping the aspect, pad with ignore."""
from __future__ import annotations

import numpy as np
from PIL import Image

from utils.io.labels import IGNORE_INDEX


def letterbox_size(height: int, width: int, size: int) -> tuple[int, int]:
    """Height and width after scaling the longer side to `size`, keeping the aspect ratio."""
    scale = size / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def letterbox(image: np.ndarray, label: np.ndarray | None, size: int, weights: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Resize so the longer side is `size` (image bilinear; label and weights nearest), then pad to size x size.

    Padding is 0 in the image and weights and IGNORE_INDEX in the label, so it never counts in loss or metrics.
    """
    height, width = image.shape[:2]
    new_h, new_w = letterbox_size(height, width, size)
    if (new_h, new_w) != (height, width):
        channels = [np.asarray(Image.fromarray(image[..., c]).resize((new_w, new_h), Image.BILINEAR))
                    for c in range(image.shape[2])]
        image = np.stack(channels, axis=2)
        if label is not None:
            label = np.asarray(Image.fromarray(label).resize((new_w, new_h), Image.NEAREST))
        if weights is not None:
            weights = np.asarray(Image.fromarray(weights.astype(np.float32), mode="F").resize(
                (new_w, new_h), Image.NEAREST))
    return pad_to(image, label, weights, size)


def pad_to(image: np.ndarray, label: np.ndarray | None, weights: np.ndarray | None, size: int
           ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Pad bottom/right to at least size x size (image 0, label IGNORE_INDEX, weight 0)."""
    height, width = image.shape[:2]
    pad_h, pad_w = max(0, size - height), max(0, size - width)
    if not (pad_h or pad_w):
        return image, label, weights
    image = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)))
    if label is not None:
        label = np.pad(label, ((0, pad_h), (0, pad_w)), constant_values=IGNORE_INDEX)
    if weights is not None:
        weights = np.pad(weights, ((0, pad_h), (0, pad_w)))
    return image, label, weights


