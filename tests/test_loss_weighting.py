"""Class weights, weight maps and single-channel models in the losses, against values worked by hand."""
from __future__ import annotations

import math

import pytest
import torch

from utils.train.losses import SegmentationLoss, binary_cross_entropy, cross_entropy, focal_loss

# Two pixels, two classes: pixel 0 is class 0 with logits (0, ln 3), pixel 1 is class 1 with logits (0, 0).
LOGITS = torch.tensor([[[[0.0, 0.0]], [[math.log(3.0), 0.0]]]])  # (N=1, C=2, H=1, W=2)
TARGET = torch.tensor([[[0, 1]]])
CE_0, CE_1 = math.log(4.0), math.log(2.0)  # -log(1/4), -log(1/2)
WEIGHTS = torch.tensor([1.0, 3.0])


def test_class_weights_make_a_weighted_mean() -> None:
    expected = (1 * CE_0 + 3 * CE_1) / (1 + 3)
    assert cross_entropy(LOGITS, TARGET, WEIGHTS).item() == pytest.approx(expected, rel=1e-6)


def test_a_weight_map_of_ones_changes_nothing_with_class_weights() -> None:
    ones = torch.ones(1, 1, 2)
    plain = cross_entropy(LOGITS, TARGET, WEIGHTS).item()
    assert cross_entropy(LOGITS, TARGET, WEIGHTS, pixel_weights=ones).item() == pytest.approx(plain, rel=1e-6)


def test_weight_map_and_class_weights_multiply() -> None:
    pixel = torch.tensor([[[2.0, 1.0]]])
    expected = (2 * 1 * CE_0 + 1 * 3 * CE_1) / (1 + 3)
    assert cross_entropy(LOGITS, TARGET, WEIGHTS, pixel_weights=pixel).item() == pytest.approx(expected, rel=1e-6)


def test_ignored_pixels_weigh_nothing() -> None:
    target = torch.tensor([[[0, 255]]])
    pixel = torch.tensor([[[2.0, 5.0]]])
    assert cross_entropy(LOGITS, target, WEIGHTS, pixel_weights=pixel).item() == pytest.approx(2 * CE_0, rel=1e-6)


def test_binary_class_weights_weigh_background_and_foreground() -> None:
    logits = torch.tensor([[[[0.0, math.log(3.0)]]]])  # sigmoid 1/2 and 3/4
    target = torch.tensor([[[0, 1]]])
    bce_0, bce_1 = -math.log(1 / 2), -math.log(3 / 4)
    weights = torch.tensor([1.0, 3.0])
    assert binary_cross_entropy(logits, target, class_weights=weights).item() == pytest.approx(
        (bce_0 + 3 * bce_1) / 4, rel=1e-6)
    ones = torch.ones(1, 1, 2)
    assert binary_cross_entropy(logits, target, pixel_weights=ones, class_weights=weights).item() == pytest.approx(
        (bce_0 + 3 * bce_1) / 4, rel=1e-6)


def test_focal_loss_of_a_single_channel_model() -> None:
    logits = torch.tensor([[[[0.0, math.log(3.0)]]]])  # p(foreground) 1/2 and 3/4
    target = torch.tensor([[[0, 1]]])
    # p_t: 1/2 for the background pixel, 3/4 for the foreground pixel; gamma 2.
    expected = ((1 / 2) ** 2 * math.log(2) + (1 / 4) ** 2 * -math.log(3 / 4)) / 2
    assert focal_loss(logits, target).item() == pytest.approx(expected, rel=1e-6)
    assert SegmentationLoss(["focal", "dice"])(logits, target).isfinite()
