"""The U-Net boundary weight map against hand-worked values, a brute-force reference and the real ISBI label."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from tests.conftest import shared_dataset
from utils.data.weightmap import class_balance_weights, unet_weight_map


def border(d1: float, d2: float, w0: float = 10.0, sigma: float = 5.0) -> float:
    return w0 * math.exp(-((d1 + d2) ** 2) / (2 * sigma ** 2))


def test_two_cells_in_a_row_by_hand():
    label = np.array([[0, 1, 0, 0, 0, 1, 0]])
    # 7 valid pixels, 2 classes: w_c(0) = 7 / (2 * 5) = 0.7, w_c(1) = 7 / (2 * 2) = 1.75.
    # x=0: nearest cell at x=1 (d1 = 1), other at x=5 (d2 = 5): 0.7 + 10 * exp(-36 / 50) = 5.5675
    # x=2: d1 = 1, d2 = 3: 0.7 + 10 * exp(-16 / 50) = 7.9615; x=3: d1 = d2 = 2 gives the same sum 4.
    expected = [0.7 + 10 * math.exp(-36 / 50), 1.75, 0.7 + 10 * math.exp(-16 / 50),
                0.7 + 10 * math.exp(-16 / 50), 0.7 + 10 * math.exp(-16 / 50), 1.75,
                0.7 + 10 * math.exp(-36 / 50)]
    weights = unet_weight_map(label)
    assert weights.dtype == np.float32 and weights.shape == label.shape
    np.testing.assert_allclose(weights[0], expected, rtol=1e-6)
    np.testing.assert_allclose(weights[0, 0], 5.5675225, rtol=1e-6)


def test_distances_are_euclidean():
    label = np.zeros((5, 5), dtype=np.uint8)
    label[0, 0] = label[4, 4] = 1
    # w_c(0) = 25 / (2 * 23), w_c(1) = 25 / (2 * 2) = 6.25.
    background = 25 / 46
    weights = unet_weight_map(label)
    # (2, 2): both cells at sqrt(4 + 4); (0, 4): both at 4; (1, 0): 1 and sqrt(9 + 16) = 5.
    assert weights[2, 2] == pytest.approx(background + border(math.sqrt(8), math.sqrt(8)), rel=1e-6)
    assert weights[0, 4] == pytest.approx(background + border(4, 4), rel=1e-6)
    assert weights[1, 0] == pytest.approx(background + border(1, 5), rel=1e-6)
    assert weights[0, 0] == pytest.approx(6.25)


def test_diagonal_neighbours_are_separate_cells():
    # 4-connectivity: the two diagonal pixels are two cells, so the other pixels sit between them.
    label = np.array([[1, 0], [0, 1]])
    weights = unet_weight_map(label)
    np.testing.assert_allclose(weights, [[1.0, 1.0 + border(1, 1)], [1.0 + border(1, 1), 1.0]], rtol=1e-6)


def test_class_balance_by_hand():
    label = np.array([[0, 0, 0, 1, 255]])
    # 4 valid pixels, 2 classes: w_c(0) = 4 / (2 * 3), w_c(1) = 4 / (2 * 1); ignore -> 0.
    np.testing.assert_allclose(class_balance_weights(label), [[2 / 3, 2 / 3, 2 / 3, 2.0, 0.0]], rtol=1e-6)
    np.testing.assert_allclose(unet_weight_map(label), [[2 / 3, 2 / 3, 2 / 3, 2.0, 0.0]], rtol=1e-6)
    np.testing.assert_allclose(unet_weight_map(np.array([[0, 0], [1, 1]])), np.ones((2, 2)))


def test_single_cell_has_no_border_term():
    label = np.zeros((9, 9), dtype=np.uint8)
    label[2:5, 2:5] = 1
    np.testing.assert_array_equal(unet_weight_map(label), class_balance_weights(label))


def test_ignored_pixels_get_zero_even_between_cells():
    label = np.array([[0, 1, 255, 1, 0]])
    weights = unet_weight_map(label)
    # Valid: 4 pixels, two of each class -> w_c = 1. x=0: d1 = 1, d2 = 3.
    np.testing.assert_allclose(weights, [[1 + border(1, 3), 1, 0, 1, 1 + border(1, 3)]], rtol=1e-6)
    assert (unet_weight_map(np.full((3, 3), 255)) == 0).all()


def test_other_classes_count_as_between_cells():
    label = np.array([[2, 0, 2]])
    # foreground = 2; the class-0 pixel lies between two cells: w_c = 3 / (2 * 1) = 1.5.
    weights = unet_weight_map(label, foreground=2)
    np.testing.assert_allclose(weights, [[0.75, 1.5 + border(1, 1), 0.75]], rtol=1e-6)


def brute_force(label: np.ndarray, w0: float, sigma: float) -> np.ndarray:
    cells, count = ndimage.label(label == 1)
    dists = np.sort(np.stack([ndimage.distance_transform_edt(cells != i) for i in range(1, count + 1)]), 0)
    term = w0 * np.exp(-((dists[0] + dists[1]) ** 2) / (2 * sigma ** 2))
    return class_balance_weights(label) + np.where((label == 0), term, 0.0)


def test_matches_brute_force_on_random_blobs():
    rng = np.random.default_rng(0)
    label = (ndimage.gaussian_filter(rng.random((64, 80)), 2) > 0.52).astype(np.uint8)
    label[rng.random(label.shape) < 0.02] = 255
    assert ndimage.label(label == 1)[1] > 5
    # sigma 3 -> margin 18 px, smaller than the image, so the per-cell windows are really exercised.
    np.testing.assert_allclose(unet_weight_map(label, w0=10, sigma=3), brute_force(label, 10, 3), atol=1e-5)


def test_real_isbi_label():
    from PIL import Image

    raw = np.array(Image.open(shared_dataset("isbi2012", "membrane", "train", "label", "0.png")))
    label = (raw == 255).astype(np.uint8)  # 255 = cell -> 1, 0 = membrane -> 0
    weights = unet_weight_map(label)
    balance = class_balance_weights(label)
    assert weights.shape == label.shape and weights.dtype == np.float32
    np.testing.assert_array_equal(weights[label == 1], balance[label == 1])
    assert (weights >= balance).all() and weights.max() <= balance.max() + 10.0
    assert (weights[label == 0] > balance[label == 0] + 1.0).mean() > 0.5  # thin membranes between cells
