"""U-Net with batch normalisation, and the Attention U-Net built on it."""
from __future__ import annotations

import torch
from torch import nn

from nets.blocks import AttentionGate, DoubleConvBN, UpConvBN, check_input_size

WIDTHS = (64, 128, 256, 512, 1024)


class UNetBN(nn.Module):
    """U-Net with (3x3 conv, BN, ReLU) x 2 blocks of 64-1024 channels and 2x2 max-pooling.

    Each decoder stage up-samples x2 (nearest) then 3x3 conv + BN + ReLU to half the channels,
    optionally gates the skip with an attention gate, concatenates skip then up-sampled map, and
    applies a block; a 1x1 head gives logits. With `attention=True` this is the Attention U-Net.

    Args:
        num_classes: number of output channels.
        in_channels: 1 or 3 input channels.
        attention: gate each skip connection (Oktay et al., 2018).
    """

    def __init__(self, num_classes: int = 2, in_channels: int = 3, attention: bool = False) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.encoder = nn.ModuleList(
            DoubleConvBN(c_in, c_out) for c_in, c_out in zip((in_channels,) + WIDTHS[:-1], WIDTHS)
        )
        deep_to_shallow = WIDTHS[::-1]  # 1024, 512, 256, 128, 64
        pairs = list(zip(deep_to_shallow[:-1], deep_to_shallow[1:]))  # (1024, 512), (512, 256), ...
        self.up = nn.ModuleList(UpConvBN(deep, skip) for deep, skip in pairs)
        self.gates = nn.ModuleList(AttentionGate(skip, skip, skip // 2) for _, skip in pairs) if attention else None
        self.decoder = nn.ModuleList(DoubleConvBN(2 * skip, skip) for _, skip in pairs)
        self.head = nn.Conv2d(WIDTHS[0], num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_size(x, self.in_channels)
        skips = []
        for index, block in enumerate(self.encoder):
            x = block(x if index == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for index, (up, block) in enumerate(zip(self.up, self.decoder)):
            skip = skips.pop()
            x = up(x, skip)
            if self.gates is not None:
                skip = self.gates[index](x, skip)
            x = block([skip, x])  # concatenated by its first convolution
        return self.head(x)
