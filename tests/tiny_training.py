"""One-step training runs on three 32x32 images, and their validation loss worked out again by hand.

A run trains on two images (one step of batch 2) and validates on one, so the loss history.json records for
validation is the loss of the saved weights on that one image: recomputing it with plain torch checks which
loss the run really used.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from nets import build_model
from tests.conftest import tiny_train_args
from utils.io.checkpoint import load_checkpoint

SIZE = 32
SMOOTH = 1e-5  # utils.train.losses' Dice smoothing


def write_squares(root: Path, splits: dict[str, list[str]]) -> Path:
    """Three grey images sq_0..sq_2 with a bright square of class 1, and the given split files."""
    rng = np.random.default_rng(0)
    for name in ("Images", "Labels", "ImageSets/Segmentation"):
        (root / name).mkdir(parents=True, exist_ok=True)
    for index in range(3):
        label = np.zeros((SIZE, SIZE), dtype=np.uint8)
        top, left = rng.integers(2, 18, size=2)
        label[top:top + 12, left:left + 12] = 1
        image = (rng.normal(60, 10, (SIZE, SIZE)) + 120 * label).clip(0, 255).astype(np.uint8)
        Image.fromarray(image).save(root / "Images" / f"sq_{index}.png")
        Image.fromarray(label).save(root / "Labels" / f"sq_{index}.png")
    for split, stems in splits.items():
        (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("".join(f"{s}\n" for s in stems))
    (root / "classes.txt").write_text("background\nsquare\n")
    return root


def run_args(data: Path, logs: Path, name: str, *extra: str) -> list[str]:
    """A deterministic fp32 one-epoch run of batch 2 into <logs>/<model>/<name>."""
    return tiny_train_args(data, logs, "--in-channels", "1", "--input-size", str(SIZE), "--batch-size", "2",
                           "--deterministic", "--seed", "0", "--run-name", name, *extra)


def history(run: Path) -> list[dict]:
    """The run's history.json."""
    return json.loads((run / "history.json").read_text())


def logits_and_target(run: Path, data: Path, stem: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (1, C, H, W) of the run's last.pt for one 32x32 image, and its label (1, H, W)."""
    checkpoint = load_checkpoint(run / "last.pt")
    spec = checkpoint["model"]
    net = build_model(spec["name"], spec["num_classes"], spec["in_channels"])
    net.load_state_dict(checkpoint["state_dict"])
    net.eval()
    pixels = np.asarray(Image.open(data / "Images" / f"{stem}.png"), dtype=np.float32) / 255
    mean, std = checkpoint["normalization"]["mean"][0], checkpoint["normalization"]["std"][0]
    image = torch.from_numpy((pixels - mean) / std)[None, None]
    target = torch.from_numpy(np.asarray(Image.open(data / "Labels" / f"{stem}.png"), dtype=np.int64))[None]
    with torch.no_grad():
        return net(image), target


def soft_dice_loss(probabilities: torch.Tensor, onehot: torch.Tensor) -> float:
    """1 - mean over channels of (2 TP + s) / (2 TP + FP + FN + s), from (C, pixels) tensors."""
    tp = (probabilities * onehot).sum(dim=1)
    fp = probabilities.sum(dim=1) - tp
    fn = onehot.sum(dim=1) - tp
    return float(1 - ((2 * tp + SMOOTH) / (2 * tp + fp + fn + SMOOTH)).mean())


def softmax_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> float:
    """Dice loss of a softmax model on one image."""
    probabilities = logits[0].softmax(dim=0).flatten(1)
    onehot = F.one_hot(target[0], logits.shape[1]).permute(2, 0, 1).flatten(1).float()
    return soft_dice_loss(probabilities, onehot)


def sigmoid_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> float:
    """Dice loss of a single-channel sigmoid model on one image (the foreground channel only)."""
    return soft_dice_loss(logits[0].sigmoid().flatten(1), (target == 1).float().flatten(1))
