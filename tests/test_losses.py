"""Segmentation losses against values worked out by hand."""
from __future__ import annotations

import math

import pytest
import torch

from utils.train.losses import (
    SegmentationLoss,
    binary_cross_entropy,
    cross_entropy,
    dice_loss,
    focal_loss,
    jaccard_loss,
    parse_loss,
)

# Two pixels, two classes: pixel a has logits (2, 0), pixel b has logits (0, 1); targets a -> 0, b -> 1.
#   p_a(0) = e^2 / (e^2 + 1) = 0.880797, p_a(1) = 0.119203, CE_a = -ln(0.880797) = 0.126928
#   p_b(1) = e / (e + 1)     = 0.731059, p_b(0) = 0.268941, CE_b = -ln(0.731059) = 0.313262


def two_pixels(dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (1, 2, 1, 2) and target (1, 1, 2) of the hand case above."""
    logits = torch.tensor([[[[2.0, 0.0]], [[0.0, 1.0]]]], dtype=dtype)
    return logits, torch.tensor([[[0, 1]]])


def with_ignored_pixel(ignored_logits: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor]:
    """The hand case plus a third pixel labelled 255 (ignore) with the given logits."""
    logits = torch.tensor([[[[2.0, 0.0, ignored_logits[0]]], [[0.0, 1.0, ignored_logits[1]]]]])
    return logits, torch.tensor([[[0, 1, 255]]])


def test_cross_entropy_by_hand():
    logits, target = two_pixels()
    ce_a = -math.log(math.e ** 2 / (math.e ** 2 + 1))
    ce_b = -math.log(math.e / (math.e + 1))
    assert (ce_a, ce_b) == pytest.approx((0.126928, 0.313262), abs=1e-6)
    # mean over the two pixels: (0.126928 + 0.313262) / 2 = 0.220095
    assert cross_entropy(logits, target).item() == pytest.approx(0.220095, abs=1e-6)


def test_cross_entropy_class_weights():
    logits, target = two_pixels()
    # w = (1, 3): sum(w_y * ce) / sum(w_y) = (1 * 0.126928 + 3 * 0.313262) / (1 + 3) = 1.066714 / 4 = 0.266678
    loss = cross_entropy(logits, target, class_weights=torch.tensor([1.0, 3.0]))
    assert loss.item() == pytest.approx(0.266678, abs=1e-6)


def test_cross_entropy_ignores_pixels():
    # the ignored third pixel has a confidently wrong-looking logit pair; the loss stays (CE_a + CE_b) / 2
    logits, target = with_ignored_pixel((-9.0, 9.0))
    assert cross_entropy(logits, target).item() == pytest.approx(0.220095, abs=1e-6)


def test_cross_entropy_pixel_weights():
    logits, target = with_ignored_pixel((-9.0, 9.0))
    weights = torch.tensor([[[2.0, 0.5, 7.0]]])
    # sum(w * ce) / valid pixels = (2 * 0.126928 + 0.5 * 0.313262 + 0) / 2 = (0.253856 + 0.156631) / 2 = 0.205244
    assert cross_entropy(logits, target, pixel_weights=weights).item() == pytest.approx(0.205244, abs=1e-6)


def test_dice_loss_by_hand():
    logits, target = two_pixels()
    # class 0: tp = 0.880797, fp = p_b(0) = 0.268941, fn = 1 - p_a(0) = 0.119203
    #   Dice_0 = (2 * 0.880797 + 1e-5) / (1.761594 + 0.268941 + 0.119203 + 1e-5) = 0.819447
    # class 1: tp = 0.731059, fp = p_a(1) = 0.119203, fn = 1 - p_b(1) = 0.268941
    #   Dice_1 = (2 * 0.731059 + 1e-5) / (1.462118 + 0.119203 + 0.268941 + 1e-5) = 0.790223
    # loss = 1 - (0.819447 + 0.790223) / 2 = 0.195165
    assert dice_loss(logits, target).item() == pytest.approx(0.195165, abs=1e-6)


def test_dice_loss_sums_over_the_batch():
    # the same two pixels as two one-pixel images: tp/fp/fn are pooled over the batch, so the value is unchanged
    # (a mean of per-image Dice would differ: image a has no class-1 pixel and scores Dice_1 ~ 0)
    logits, target = two_pixels()
    batch_logits = logits.permute(3, 1, 2, 0)  # (2, 2, 1, 1)
    batch_target = target.permute(2, 1, 0)  # (2, 1, 1)
    assert dice_loss(batch_logits, batch_target).item() == pytest.approx(0.195165, abs=1e-6)


def test_dice_loss_excludes_ignored_pixels():
    first = dice_loss(*with_ignored_pixel((-9.0, 9.0)))
    second = dice_loss(*with_ignored_pixel((4.0, -3.0)))
    assert first.item() == pytest.approx(0.195165, abs=1e-6)
    torch.testing.assert_close(first, second)


def test_dice_loss_perfect_prediction_is_zero():
    target = torch.tensor([[[0, 1, 1, 0]]])
    logits = torch.stack([(target == 0).float(), (target == 1).float()], dim=1) * 200 - 100
    assert dice_loss(logits, target).item() == pytest.approx(0.0, abs=1e-6)


def test_dice_loss_single_channel_sigmoid_by_hand():
    logits = torch.tensor([[[[2.0, 0.0]]]])  # (1, 1, 1, 2)
    target = torch.tensor([[[1, 0]]])
    # p = sigmoid(2) = 0.880797, sigmoid(0) = 0.5; foreground only: tp = 0.880797, fp = 0.5, fn = 0.119203
    # Dice = (1.761594 + 1e-5) / (1.761594 + 0.5 + 0.119203 + 1e-5) = 0.739919, loss = 0.260081
    assert dice_loss(logits, target).item() == pytest.approx(0.260081, abs=1e-6)


def test_dice_loss_runs_in_fp32_for_bf16_logits():
    logits, target = two_pixels(torch.bfloat16)  # 2, 0 and 1 are exact in bf16
    loss = dice_loss(logits, target)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(0.195165, abs=1e-6)


def test_jaccard_loss_by_hand():
    logits, target = two_pixels()
    # same tp/fp/fn as the Dice case:
    #   IoU_0 = 0.880797 / (0.880797 + 0.268941 + 0.119203) = 0.694122
    #   IoU_1 = 0.731059 / (0.731059 + 0.119203 + 0.268941) = 0.653199
    # loss = 1 - (0.694122 + 0.653199) / 2 = 0.326340
    assert jaccard_loss(logits, target).item() == pytest.approx(0.326340, abs=1e-6)


def test_focal_loss_gamma_2_by_hand():
    logits, target = with_ignored_pixel((-9.0, 9.0))
    # pixel a: (1 - 0.880797)^2 * 0.126928 = 0.014209 * 0.126928 = 0.001804
    # pixel b: (1 - 0.731059)^2 * 0.313262 = 0.072329 * 0.313262 = 0.022658
    # mean over the 2 valid pixels: (0.001804 + 0.022658) / 2 = 0.012231
    assert focal_loss(logits, target, gamma=2.0).item() == pytest.approx(0.012231, abs=1e-6)


def test_focal_loss_gamma_0_is_cross_entropy():
    logits, target = with_ignored_pixel((-9.0, 9.0))
    torch.testing.assert_close(focal_loss(logits, target, gamma=0.0), cross_entropy(logits, target))


def test_binary_cross_entropy_by_hand():
    logits = torch.tensor([[[[2.0, 0.0, 5.0]]]])  # (1, 1, 1, 3)
    target = torch.tensor([[[1, 0, 255]]])
    # pixel a: -ln(sigmoid(2)) = 0.126928; pixel b: -ln(1 - sigmoid(0)) = ln 2 = 0.693147; pixel c ignored
    # mean = (0.126928 + 0.693147) / 2 = 0.410038
    assert binary_cross_entropy(logits, target).item() == pytest.approx(0.410038, abs=1e-6)
    # pixel weights (3, 1, 9): (3 * 0.126928 + 0.693147) / 2 = 1.073931 / 2 = 0.536966
    weights = torch.tensor([[[3.0, 1.0, 9.0]]])
    assert binary_cross_entropy(logits, target, pixel_weights=weights).item() == pytest.approx(0.536966, abs=1e-6)


def test_binary_cross_entropy_needs_one_channel():
    logits, target = two_pixels()
    with pytest.raises(ValueError, match="single-channel"):
        binary_cross_entropy(logits, target)


def test_segmentation_loss_ce_plus_dice_is_the_sum():
    logits, target = two_pixels()
    total = SegmentationLoss(["ce", "dice"])(logits, target)
    # 0.220095 + 0.195165 = 0.415260
    assert total.item() == pytest.approx(0.415260, abs=1e-6)
    torch.testing.assert_close(total, cross_entropy(logits, target) + dice_loss(logits, target))


def test_segmentation_loss_unknown_name():
    with pytest.raises(ValueError, match="tversky") as error:
        SegmentationLoss(["ce", "tversky"])
    assert "ce, bce, dice, jaccard, focal" in str(error.value)
    with pytest.raises(ValueError):
        SegmentationLoss([])


def test_parse_loss():
    assert parse_loss("ce+dice") == ["ce", "dice"]
    assert parse_loss(" focal + dice ") == ["focal", "dice"]
    assert parse_loss("ce+dice", use_dice=False) == ["ce"]


@pytest.mark.parametrize("names", [["ce", "dice"], ["jaccard"], ["focal"]])
def test_gradients_flow(names):
    logits, target = two_pixels()
    logits.requires_grad_(True)
    SegmentationLoss(names)(logits, target).backward()
    assert torch.isfinite(logits.grad).all()
    assert logits.grad.abs().sum() > 0


def test_gradients_flow_single_channel():
    logits = torch.tensor([[[[2.0, 0.0]]]], requires_grad=True)
    SegmentationLoss(["bce", "dice"])(logits, torch.tensor([[[1, 0]]])).backward()
    assert torch.isfinite(logits.grad).all()
    assert logits.grad.abs().sum() > 0

