"""A stand-in segmentation model whose prediction is known in advance, saved as a loadable checkpoint.

`BrightModel` is one fixed 1x1 convolution: its class-1 logit is `GAIN` times the mean normalised input and its
class-0 logit is 0, so with mean = std = 0.5 a pixel is class 1 exactly where the image is brighter than 127.5.
Registered under a real model name (nets.MODELS is patched for the test), it goes through every loading,
letterboxing, resizing and post-processing step the real models do, while its output stays an oracle.
`LinearModel` takes any class and channel count; with zero gains its probabilities are the same at every pixel.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import nets
from utils.io.checkpoint import save_checkpoint

GAIN = 20.0
NORMALIZATION = {"mean": [0.5], "std": [0.5]}  # x / 255 -> 2 x / 255 - 1: bright (> 127.5) is positive
BRIGHT, DARK = 230, 20


class BrightModel(nn.Module):
    """Class 1 where the normalised input (mean over channels) is positive, class 0 elsewhere."""

    def __init__(self, num_classes: int = 2, in_channels: int = 1, **_: object) -> None:
        super().__init__()
        assert num_classes == 2
        self.head = nn.Conv2d(in_channels, 2, kernel_size=1)
        with torch.no_grad():
            self.head.weight.zero_()
            self.head.weight[1] = GAIN / in_channels
            self.head.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)


def register(monkeypatch: pytest.MonkeyPatch, name: str = "unet") -> None:
    """Make `nets.build_model(name, ...)` build a BrightModel for the rest of the test."""
    monkeypatch.setitem(nets.MODELS, name, BrightModel)


def write_checkpoint(path: Path, input_size: int = 32, in_channels: int = 1, input_mode: str = "letterbox",
                     name: str = "unet", preprocessing: dict | None = None) -> Path:
    """A checkpoint of a BrightModel, in the format the train scripts write."""
    checkpoint = {
        "model": {"name": name, "num_classes": 2, "in_channels": in_channels},
        "class_names": ["background", "bright"],
        "input_size": input_size,
        "input_mode": input_mode,
        "normalization": {key: value * in_channels for key, value in NORMALIZATION.items()},
        "state_dict": BrightModel(2, in_channels).state_dict(),
    }
    if preprocessing is not None:
        checkpoint["preprocessing"] = preprocessing
    save_checkpoint(path, checkpoint)
    return path


class LinearModel(nn.Module):
    """Class k's logit is gains[k] x the mean normalised input + biases[k]: with zero gains, constant probabilities."""

    def __init__(self, num_classes: int = 2, in_channels: int = 1, **_: object) -> None:
        super().__init__()
        self.head = nn.Conv2d(in_channels, num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)


def register_linear(monkeypatch: pytest.MonkeyPatch, name: str = "att_unet") -> None:
    """Make `nets.build_model(name, ...)` build a LinearModel for the rest of the test."""
    monkeypatch.setitem(nets.MODELS, name, LinearModel)


def write_linear_checkpoint(path: Path, biases: list[float], gains: list[float] | None = None, in_channels: int = 1,
                            name: str = "att_unet", **fields: object) -> Path:
    """A LinearModel checkpoint (len(biases) classes); fields add to or replace the defaults."""
    num_classes = len(biases)
    model = LinearModel(num_classes, in_channels)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.weight += torch.tensor(gains or [0.0] * num_classes).view(-1, 1, 1, 1) / in_channels
        model.head.bias.copy_(torch.tensor(biases))
    checkpoint = {
        "model": {"name": name, "num_classes": num_classes, "in_channels": in_channels},
        "class_names": [f"class{i}" for i in range(max(num_classes, 2))], "input_size": 32,
        "input_mode": "letterbox", "normalization": {key: value * in_channels for key, value in NORMALIZATION.items()},
        "state_dict": model.state_dict(), **fields,
    }
    save_checkpoint(path, checkpoint)
    return path
