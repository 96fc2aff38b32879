"""Overlays and the TensorBoard sample grid."""
from __future__ import annotations

import numpy as np
import torch

from utils.data.augment import build_augmentation
from utils.io.labels import overlay, palette
from utils.train.curves import sample_grid


def test_palette_is_distinct_and_ignore_is_white() -> None:
    colours = palette(21)
    assert len({tuple(c) for c in colours[:21]}) == 21
    assert colours[0].tolist() == [0, 0, 0] and colours[255].tolist() == [255, 255, 255]


def test_overlay_colours_only_foreground() -> None:
    image = np.full((2, 2), 100, dtype=np.uint8)
    label = np.array([[0, 1], [255, 1]], dtype=np.uint8)
    out = overlay(image, label, num_classes=2, alpha=0.5)
    red = palette(2)[1].astype(float)
    assert out[0, 0].tolist() == [100, 100, 100] and out[1, 0].tolist() == [100, 100, 100]
    assert out[0, 1].tolist() == np.round(0.5 * 100 + 0.5 * red).astype(int).tolist()


def test_sample_grid_layout_and_augmentation() -> None:
    label = torch.zeros(20, 24, dtype=torch.uint8)
    label[:, 12:] = 1
    image = torch.full((1, 20, 24), 100, dtype=torch.uint8)
    grid = sample_grid([(image, label)] * 5, None, num_classes=2, per_row=4)
    assert grid.dtype == torch.uint8 and grid.shape == (3, 2 + 2 * 22, 2 + 4 * 26)
    tile = grid[:, 2:22, 2:26]
    assert tile[:, 5, 5].tolist() == [100, 100, 100]
    assert tile[:, 5, 20].tolist() == np.round(50 + 0.5 * palette(2)[1].astype(float)).astype(int).tolist()
    torch.manual_seed(0)
    augmented = sample_grid([(image, label)] * 2, build_augmentation("em"), num_classes=2)
    assert augmented.shape == (3, 24, 54) and not torch.equal(augmented, sample_grid([(image, label)] * 2, None, 2))
