"""Training on random crops with augmentation on the device (--crop --augment-on-device --augment PRESET): the
model must see augmented crops, not the bare windows cut from the images.

A recording stand-in model (registered as the trained model's name) keeps every batch it is given in training
mode; each recorded sample is then looked for among all input-size windows of the training images.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import nets
from tests.conftest import tiny_train_args
from utils.data.dataset import read_split
from utils.runtime.device import default_normalization, normalize
from utils.train.loop import train

CROP = 16  # the square_dataset images are 32 x 32, so every crop is one of 17 x 17 windows per image


class RecordingModel(nn.Module):
    """A 1x1 convolution that keeps a copy of every input it sees while training."""

    seen: list[torch.Tensor] = []

    def __init__(self, num_classes: int, in_channels: int = 1, **_: object) -> None:
        super().__init__()
        self.head = nn.Conv2d(in_channels, max(num_classes, 1), kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[-2:] == (CROP, CROP):
            RecordingModel.seen.append(x.detach().float().contiguous().cpu().clone())
        return self.head(x)


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[torch.Tensor]:
    seen: list[torch.Tensor] = []
    monkeypatch.setattr(RecordingModel, "seen", seen)
    monkeypatch.setitem(nets.MODELS, "unet_bn", RecordingModel)
    return seen


def train_on_crops(data: Path, logs: Path, *extra: str) -> None:
    assert train("unet_bn", tiny_train_args(data, logs, "--crop", "--input-size", str(CROP), "--in-channels", "1",
                                            "--seed", "3", "--device", "cpu", *extra)) == 0


def training_windows(data: Path) -> torch.Tensor:
    """Every CROP x CROP window of the training images, normalised as the model receives them: (M, 1, CROP, CROP)."""
    images = [np.asarray(Image.open(data / "Images" / f"{stem}.png")) for stem in read_split(data, "train")]
    batch = torch.from_numpy(np.stack(images))[:, None]
    inputs = normalize(batch, default_normalization(1))
    windows = inputs.unfold(2, CROP, 1).unfold(3, CROP, 1)  # (N, 1, 17, 17, CROP, CROP)
    return windows.permute(0, 2, 3, 1, 4, 5).reshape(-1, 1, CROP, CROP)


def bare_windows(seen: list[torch.Tensor], windows: torch.Tensor) -> tuple[int, int]:
    """(samples that equal some window of a training image, samples seen)."""
    samples = torch.cat(seen)
    distance = torch.cdist(samples.flatten(1), windows.flatten(1))  # (samples, windows)
    return int((distance.min(dim=1).values < 1e-4).sum()), samples.shape[0]


def test_without_augmentation_the_model_sees_bare_crops(square_dataset: Path, tmp_path: Path,
                                                        recorded: list[torch.Tensor]) -> None:
    """The check below is sound: un-augmented crops are found among the windows, all of them."""
    train_on_crops(square_dataset, tmp_path, "--augment", "none")
    bare, total = bare_windows(recorded, training_windows(square_dataset))
    assert total == 6 and bare == total  # 2 batches x 3 crops


@pytest.mark.parametrize("preset", ["medical", "em"])
def test_crops_are_augmented_on_the_device(square_dataset: Path, tmp_path: Path, recorded: list[torch.Tensor],
                                           preset: str) -> None:
    train_on_crops(square_dataset, tmp_path, "--augment", preset, "--augment-on-device")
    bare, total = bare_windows(recorded, training_windows(square_dataset))
    assert total == 6
    assert bare == 0, f"{bare} of {total} training samples are bare crops (--augment {preset} --augment-on-device)"
