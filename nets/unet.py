"""VGG16-UNet: a VGG16 encoder with a four-stage bilinear U-Net decoder (the seed's `unet`)."""
from __future__ import annotations

import os

import torch
from torch import nn

from nets.blocks import DoubleConvReLU, check_input_size, upsample_to
from nets.vgg import VGG16Encoder


class VGGUNet(nn.Module):
    """U-Net whose encoder is torchvision's VGG16 (configuration D).

    Each decoder stage up-samples the deeper map x2 (bilinear, align_corners=True), concatenates it
    after the skip, and applies two 3x3 conv + ReLU (widths 512, 256, 128, 64); a 1x1 head gives logits.

    Args:
        num_classes: number of output channels (classes, background included).
        in_channels: 1 (grey) or 3 (RGB) input channels.
        pretrained: optional path of a local torchvision VGG16 state-dict file for the encoder.
    """

    def __init__(self, num_classes: int = 2, in_channels: int = 3, pretrained: str | os.PathLike | None = None) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.encoder = VGG16Encoder(in_channels)
        if pretrained:
            self.encoder.load_torchvision_weights(pretrained)
        widths = (512, 256, 128, 64)
        skips = VGG16Encoder.channels[:4][::-1]  # 512, 256, 128, 64
        deeper = (512,) + widths[:-1]
        self.decoder = nn.ModuleList(
            DoubleConvReLU(skip + below, width) for skip, below, width in zip(skips, deeper, widths)
        )
        self.head = nn.Conv2d(64, num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_size(x, self.in_channels)
        *skips, x = self.encoder(x)
        for stage, skip in zip(self.decoder, reversed(skips)):
            x = stage([skip, upsample_to(x, skip, "bilinear")])
        return self.head(x)
