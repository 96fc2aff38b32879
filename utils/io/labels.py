"""Label maps: the ignore value, decoding label images, palettes, overlays and palette PNGs."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from utils.errors import UserError
from utils.io.files import save_image
from utils.io.images import grey_channel

IGNORE_INDEX = 255  # label value that is never learned nor scored (padding, unlabelled pixels)


def palette(num_classes: int) -> np.ndarray:
    """A fixed (256, 3) uint8 palette: class 0 black, then distinct colours (PASCAL VOC's bit pattern)."""
    colours = np.zeros((256, 3), dtype=np.uint8)
    for index in range(256):
        value, r, g, b = index, 0, 0, 0
        for shift in range(7, -1, -1):
            r |= ((value >> 0) & 1) << shift
            g |= ((value >> 1) & 1) << shift
            b |= ((value >> 2) & 1) << shift
            value >>= 3
        colours[index] = (r, g, b)
    if num_classes == 2:
        colours[1] = (255, 64, 64)  # binary tasks: one bright colour reads best
    colours[IGNORE_INDEX] = (255, 255, 255)
    return colours


def colourize(label: np.ndarray, num_classes: int) -> np.ndarray:
    """H x W class ids -> H x W x 3 uint8 colours."""
    return palette(num_classes)[label]


def save_label_png(path: str | os.PathLike, label: np.ndarray, num_classes: int) -> None:
    """Write a class-id map as a palette (mode P) PNG, atomically: pixel values stay the ids, viewers show colours."""
    if label.size and (label.min() < 0 or label.max() > 255):
        raise ValueError(f"{path}: class ids must lie in 0..255, got {label.min()}..{label.max()}")
    image = Image.fromarray(label.astype(np.uint8))
    image.putpalette(palette(num_classes).tobytes())
    save_image(path, image)


def overlay(image: np.ndarray, label: np.ndarray, num_classes: int, alpha: float = 0.5) -> np.ndarray:
    """Blend the colourized label over the image where the label is not background (class 0)."""
    rgb = image if image.ndim == 3 and image.shape[2] == 3 else np.repeat(image.reshape(*label.shape, 1), 3, axis=2)
    colours = colourize(label, num_classes).astype(np.float32)
    blended = rgb.astype(np.float32)
    mask = (label != 0) & (label != IGNORE_INDEX)
    blended[mask] = (1 - alpha) * blended[mask] + alpha * colours[mask]
    return blended.round().clip(0, 255).astype(np.uint8)




def label_to_array(image: Image.Image, path: Path) -> np.ndarray:
    """H x W uint8 class-id map from an L, P (index = class id), 1-bit or grey-as-RGB label image."""
    if image.mode == "1":
        return np.asarray(image, dtype=np.uint8)
    if image.mode in ("L", "P"):
        return np.asarray(image)
    if image.mode in ("RGB", "RGBA"):
        grey = grey_channel(np.asarray(image.convert("RGB")))
        if grey is not None:
            return grey
    raise UserError(f"{path}: label must be a single-channel image of class ids (mode L or P), "
                    f"got mode {image.mode}; convert colour-coded masks with "
                    f"'python import_dataset.py pairs ... --colour-map FILE'")
