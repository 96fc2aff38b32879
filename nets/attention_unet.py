"""Attention U-Net (Oktay et al., 2018, "Attention U-Net: Learning Where to Look for the Pancreas")."""
from __future__ import annotations

from nets.unet_bn import UNetBN


class AttentionUNet(UNetBN):
    """U-Net-BN whose skip connections pass through additive attention gates.

    Args:
        num_classes: number of output channels.
        in_channels: 1 or 3 input channels.
    """

    def __init__(self, num_classes: int = 2, in_channels: int = 3) -> None:
        super().__init__(num_classes=num_classes, in_channels=in_channels, attention=True)
