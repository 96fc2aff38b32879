"""Building blocks shared by the models: conv stacks, up-sampling to a skip's size, attention gate."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class ConcatConv2d(nn.Conv2d):
    """A convolution of one tensor, or of the channel concatenation of several, with nn.Conv2d's parameters.

    The concatenation is never written: each input is convolved with its slice of the weight and the results are
    summed, which is the same sum of products in another order. The decoders' first convolutions take their skip
    and up-sampled inputs this way: on the CPU, channels-last, a stage's forward and backward ran up to 20 %
    faster in fp32 and 16 % in bf16, more the larger the stage (the deepest, 32 px, about the same), as neither
    the concatenated tensor nor the strided slices of its gradient exist (docs/speed.md).
    """

    def forward(self, inputs: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        if isinstance(inputs, torch.Tensor):
            return super().forward(inputs)
        widths = [x.shape[1] for x in inputs]
        if sum(widths) != self.in_channels:
            raise ValueError(f"expected inputs of {self.in_channels} channels in all, got {widths}")
        out = None
        for index, (x, weight) in enumerate(zip(inputs, self.weight.split(widths, dim=1))):
            part = self._conv_forward(x, weight, self.bias if index == len(widths) - 1 else None)
            out = part if out is None else out.add_(part)  # a convolution's backward does not need its output
        return out


class ConvBNReLU(nn.Sequential):
    """3x3 convolution (with bias, as in the reference Attention U-Net; of a tensor or a list of tensors to
    concatenate), batch norm, ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            ConcatConv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=True),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class DoubleConvBN(nn.Sequential):
    """(3x3 conv, BN, ReLU) x 2: one encoder or decoder block of U-Net-BN and Attention U-Net."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(ConvBNReLU(in_channels, out_channels), ConvBNReLU(out_channels, out_channels))


class DoubleConvReLU(nn.Sequential):
    """(3x3 conv, ReLU) x 2 without normalisation: one decoder stage of the VGG16-UNet; it takes the list of
    tensors to concatenate."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            ConcatConv2d(in_channels, out_channels, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
        )


def upsample_to(x: torch.Tensor, reference: torch.Tensor, mode: str) -> torch.Tensor:
    """Up-sample `x` to the spatial size of `reference` (x2 when sizes are even, exact otherwise)."""
    size = reference.shape[-2:]
    if mode == "nearest":
        return F.interpolate(x, size=size, mode="nearest")
    return F.interpolate(x, size=size, mode=mode, align_corners=True)


class UpConvBN(nn.Module):
    """Nearest-neighbour up-sampling to the skip's size, then 3x3 conv + BN + ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(in_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(upsample_to(x, skip, "nearest"))


class AttentionGate(nn.Module):
    """Additive attention gate of Oktay et al. (2018): weighs the skip by a map computed with the gating signal."""

    def __init__(self, gate_channels: int, skip_channels: int, inter_channels: int) -> None:
        super().__init__()
        self.gate = nn.Sequential(nn.Conv2d(gate_channels, inter_channels, 1), nn.BatchNorm2d(inter_channels))
        self.skip = nn.Sequential(nn.Conv2d(skip_channels, inter_channels, 1), nn.BatchNorm2d(inter_channels))
        self.psi = nn.Sequential(nn.Conv2d(inter_channels, 1, 1), nn.BatchNorm2d(1), nn.Sigmoid())
        self.relu = nn.ReLU(inplace=True)

    def forward(self, gate: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        weights = self.psi(self.relu(self.gate(gate) + self.skip(skip)))
        return skip * weights


def check_input_size(x: torch.Tensor, in_channels: int, min_size: int = 16) -> None:
    """Raise a clear error for inputs the encoder cannot take (wrong channels, smaller than 16 px)."""
    if x.dim() != 4 or x.shape[1] != in_channels:
        raise ValueError(f"expected input of shape (N, {in_channels}, H, W), got {tuple(x.shape)}")
    if min(x.shape[-2:]) < min_size:
        raise ValueError(f"input height and width must be at least {min_size} px "
                         f"(four 2x2 poolings), got {tuple(x.shape[-2:])}")
