"""Building blocks shared by the models: conv stacks, up-sampling to a skip's size, attention gate."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class ConvBNReLU(nn.Sequential):
    """3x3 convolution (with bias, as in the reference Attention U-Net), batch norm, ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=True),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class DoubleConvBN(nn.Sequential):
    """(3x3 conv, BN, ReLU) x 2: one encoder or decoder block of U-Net-BN and Attention U-Net."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(ConvBNReLU(in_channels, out_channels), ConvBNReLU(out_channels, out_channels))


class DoubleConvReLU(nn.Sequential):
    """(3x3 conv, ReLU) x 2 without normalisation: one decoder stage of the VGG16-UNet."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
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


class _DenseChannelsLastGradient(torch.autograd.Function):
    """Identity whose backward hands on the gradient as a dense channels-last tensor."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous(memory_format=torch.channels_last)


def _is_channels_last(x: torch.Tensor) -> bool:
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def concat_channels(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Concatenate along channels; in channels-last each input's gradient reaches it dense, not strided."""
    # cat's backward hands each input a strided slice of the output gradient. In channels-last the CPU
    # kernels that receive it (bilinear up-sampling, batch norm) run several times slower on such a slice
    # than the copy that makes it dense costs: 5-7 % of a bf16 training step, measured on all three
    # models. In NCHW the slices are dense per sample and the copy gains nothing.
    if torch.is_grad_enabled():
        tensors = [_DenseChannelsLastGradient.apply(t) if t.requires_grad and _is_channels_last(t) else t
                   for t in tensors]
    return torch.cat(tensors, dim=1)


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
