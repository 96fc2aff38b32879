"""Device choice, seeding and input normalisation shared by training, inference and the benchmark."""
from __future__ import annotations

import random

import numpy as np
import torch

from utils.errors import UserError

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def default_normalization(in_channels: int) -> dict[str, list[float]]:
    """ImageNet statistics (their channel mean for grey input), what VGG16 weights expect."""
    if in_channels == 3:
        return {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
    return {"mean": [sum(IMAGENET_MEAN) / 3], "std": [sum(IMAGENET_STD) / 3]}


def normalize(images: torch.Tensor, normalization: dict[str, list[float]]) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32 (x / 255 - mean) / std, on the images' device."""
    mean = torch.tensor(normalization["mean"], device=images.device).view(1, -1, 1, 1)
    std = torch.tensor(normalization["std"], device=images.device).view(1, -1, 1, 1)
    return (images.float() / 255 - mean) / std


def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA when available, else CPU; an unavailable CUDA device is a UserError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device '{name}'; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device '{name}' requested but CUDA is not available; use --device cpu")
    return device


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA) generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
