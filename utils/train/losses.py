"""Segmentation losses; every one takes logits (N, C, H, W) and integer targets (N, H, W).

Multi-class losses use softmax over C; with C == 1 the model is a single-channel sigmoid model and
targets are 0/1. Pixels equal to `ignore_index` contribute nothing. Soft losses run in fp32 even
under autocast, because sums over millions of pixels lose precision in half precision.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from utils.io.labels import IGNORE_INDEX


def _pixel_class_weights(target: torch.Tensor, class_weights: torch.Tensor | None, ignore_index: int
                         ) -> torch.Tensor:
    """Each pixel's class weight (1 without class weights), 0 at ignored pixels: the weighted mean's denominator."""
    valid = target != ignore_index
    if class_weights is None:
        return valid.float()
    safe = torch.where(valid, target, torch.zeros_like(target))
    return class_weights.to(target.device, torch.float32)[safe] * valid


def cross_entropy(logits: torch.Tensor, target: torch.Tensor, class_weights: torch.Tensor | None = None,
                  ignore_index: int = IGNORE_INDEX, pixel_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax cross-entropy, the mean over valid pixels weighted by class weights and an optional weight map.

    With `pixel_weights` (the U-Net paper's w(x)) the loss is sum(c * w * ce) / sum(c) over valid pixels, c the
    pixel's class weight (1 without class weights): a map of ones leaves the loss as it is.
    """
    if pixel_weights is None:
        return F.cross_entropy(logits.float(), target, weight=class_weights, ignore_index=ignore_index)
    per_pixel = F.cross_entropy(logits.float(), target, weight=class_weights, ignore_index=ignore_index,
                                reduction="none")
    denominator = _pixel_class_weights(target, class_weights, ignore_index).sum()
    return (per_pixel * pixel_weights).sum() / denominator.clamp(min=1e-12)


def _probabilities_and_onehot(logits: torch.Tensor, target: torch.Tensor, ignore_index: int
                              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class probabilities and one-hot targets (N, C, H*W), both zero at ignored pixels."""
    logits = logits.float()
    num_classes = logits.shape[1]
    valid = (target != ignore_index).unsqueeze(1).flatten(2)
    if num_classes == 1:
        probs = torch.sigmoid(logits).flatten(2)
        onehot = (target == 1).unsqueeze(1).flatten(2).float()
    else:
        probs = logits.softmax(dim=1).flatten(2)
        safe = torch.where(target == ignore_index, torch.zeros_like(target), target)
        onehot = F.one_hot(safe, num_classes).permute(0, 3, 1, 2).flatten(2).float()
    return probs * valid, onehot * valid


def soft_stats(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE_INDEX
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Soft true positives, false positives and false negatives per class, summed over the batch."""
    probs, onehot = _probabilities_and_onehot(logits, target, ignore_index)
    tp = (probs * onehot).sum(dim=(0, 2))
    fp = probs.sum(dim=(0, 2)) - tp
    fn = onehot.sum(dim=(0, 2)) - tp
    return tp, fp, fn


def dice_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE_INDEX,
              smooth: float = 1e-5) -> torch.Tensor:
    """1 - mean over classes of the soft Dice 2TP / (2TP + FP + FN), accumulated over the whole batch."""
    tp, fp, fn = soft_stats(logits, target, ignore_index)
    dice = (2 * tp + smooth) / (2 * tp + fp + fn + smooth)
    return 1 - dice.mean()


def jaccard_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE_INDEX,
                 smooth: float = 1e-5) -> torch.Tensor:
    """1 - mean over classes of the soft IoU TP / (TP + FP + FN)."""
    tp, fp, fn = soft_stats(logits, target, ignore_index)
    return 1 - ((tp + smooth) / (tp + fp + fn + smooth)).mean()


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0,
               ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Focal loss (Lin et al., 2017): mean over valid pixels of -(1 - p_t)^gamma * log(p_t).

    p_t is the softmax probability of the true class, or for a single-channel model the sigmoid's (targets 0/1).
    """
    valid = target != ignore_index
    if logits.shape[1] == 1:
        log_pt = -F.binary_cross_entropy_with_logits(logits[:, 0].float(), (target == 1).float(), reduction="none")
    else:
        log_pt = -F.cross_entropy(logits.float(), target, ignore_index=ignore_index, reduction="none")
    loss = -((1 - log_pt.exp()) ** gamma) * log_pt
    return loss[valid].sum() / valid.sum().clamp(min=1)


def binary_cross_entropy(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE_INDEX,
                         pixel_weights: torch.Tensor | None = None, class_weights: torch.Tensor | None = None
                         ) -> torch.Tensor:
    """BCE with logits for a single-channel sigmoid model (targets 0/1), the mean over valid pixels.

    `class_weights` (background, foreground) and `pixel_weights` weigh each pixel as in cross_entropy.
    """
    if logits.shape[1] != 1:
        raise ValueError(f"binary cross-entropy needs a single-channel model, got {logits.shape[1]} channels")
    per_pixel = F.binary_cross_entropy_with_logits(logits[:, 0].float(), (target == 1).float(), reduction="none")
    weights = _pixel_class_weights(target, class_weights, ignore_index)
    numerator = per_pixel * weights if pixel_weights is None else per_pixel * weights * pixel_weights
    return numerator.sum() / weights.sum().clamp(min=1e-12)


LOSSES = ("ce", "bce", "dice", "jaccard", "focal")


class SegmentationLoss:
    """A sum of named losses, e.g. ce+dice (the seed's default), bce+dice, focal+dice.

    `pixel_weights` (a weight map per sample) is passed to CE/BCE terms only.
    """

    def __init__(self, names: Sequence[str], class_weights: torch.Tensor | None = None,
                 ignore_index: int = IGNORE_INDEX) -> None:
        unknown = [name for name in names if name not in LOSSES]
        if unknown or not names:
            raise ValueError(f"unknown loss {unknown or names}; valid names: {', '.join(LOSSES)}")
        self.names = list(names)
        self.class_weights = class_weights
        self.ignore_index = ignore_index

    def __call__(self, logits: torch.Tensor, target: torch.Tensor,
                 pixel_weights: torch.Tensor | None = None) -> torch.Tensor:
        total = logits.new_zeros((), dtype=torch.float32)
        for name in self.names:
            if name == "ce":
                weights = None if self.class_weights is None else self.class_weights.to(logits.device)
                total = total + cross_entropy(logits, target, weights, self.ignore_index, pixel_weights)
            elif name == "bce":
                weights = None if self.class_weights is None else self.class_weights.to(logits.device)
                total = total + binary_cross_entropy(logits, target, self.ignore_index, pixel_weights, weights)
            elif name == "dice":
                total = total + dice_loss(logits, target, self.ignore_index)
            elif name == "jaccard":
                total = total + jaccard_loss(logits, target, self.ignore_index)
            elif name == "focal":
                total = total + focal_loss(logits, target, ignore_index=self.ignore_index)
        return total


def parse_loss(spec: str, use_dice: bool = True) -> list[str]:
    """Turn 'ce+dice' into ['ce', 'dice']; `use_dice=False` (--no-dice) drops the Dice term."""
    names = [part.strip() for part in spec.split("+") if part.strip()]
    return [name for name in names if use_dice or name != "dice"]
