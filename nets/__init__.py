"""Model registry: `build_model(name, num_classes=, in_channels=, **options)`."""
from __future__ import annotations

from typing import Any, Callable

from torch import nn

from nets.attention_unet import AttentionUNet
from nets.unet import VGGUNet
from nets.unet_bn import UNetBN

MODELS: dict[str, Callable[..., nn.Module]] = {
    "unet": VGGUNet,
    "unet_bn": UNetBN,
    "att_unet": AttentionUNet,
}
MODEL_NAMES = tuple(MODELS)


def build_model(name: str, num_classes: int, in_channels: int = 3, **options: Any) -> nn.Module:
    """Build a registered model; an unknown name raises ValueError listing the valid names."""
    if name not in MODELS:
        raise ValueError(f"unknown model '{name}'; valid names: {', '.join(MODEL_NAMES)}")
    if in_channels not in (1, 3):
        raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    return MODELS[name](num_classes=num_classes, in_channels=in_channels, **options)
