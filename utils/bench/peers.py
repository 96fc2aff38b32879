"""Peer models for `benchmark.py --peers`: segmentation_models_pytorch's VGG16 U-Net and MONAI's 2-D Attention
U-Net, with random weights and the channels and classes of this repository's models.

Their packages are imported only when a peer is built; they are listed in requirements-bench.txt, not in
requirements.txt, as the project itself does not need them.
"""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import Callable

from torch import nn

from utils.errors import UserError

REQUIREMENTS = "requirements-bench.txt"


def _require(module: str) -> ModuleType:
    """Import `module`; a missing package is a UserError saying how to install the benchmark's extras."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise UserError(f"benchmark --peers needs {module.split('.')[0]} ({exc}); "
                        f"install it with: pip install -r {REQUIREMENTS}") from None


def smp_unet_vgg16(num_classes: int, in_channels: int) -> nn.Module:
    """segmentation_models_pytorch Unet with a VGG16 encoder (no weights downloaded)."""
    smp = _require("segmentation_models_pytorch")
    return smp.Unet("vgg16", encoder_weights=None, in_channels=in_channels, classes=num_classes)


def monai_attention_unet(num_classes: int, in_channels: int) -> nn.Module:
    """MONAI AttentionUnet in 2-D with att_unet's widths (64-1024) and four 2x down-samplings."""
    networks = _require("monai.networks.nets")
    return networks.AttentionUnet(spatial_dims=2, in_channels=in_channels, out_channels=num_classes,
                                  channels=(64, 128, 256, 512, 1024), strides=(2, 2, 2, 2))


PEERS: dict[str, Callable[[int, int], nn.Module]] = {
    "smp_unet_vgg16": smp_unet_vgg16,
    "monai_attention_unet": monai_attention_unet,
}
PEER_NAMES = tuple(PEERS)
PEER_PACKAGES = ("segmentation_models_pytorch", "monai")


def check_peers(size: int) -> None:
    """Raise a one-line UserError now, before any measurement, for a size the peers cannot take or a missing
    package."""
    if size < 64 or size % 32:
        raise UserError(f"--peers needs an --input-size of at least 64 and a multiple of 32 (smp's VGG16 encoder "
                        f"down-samples 32x; at 32 its batch norm sees 1 pixel), got {size}")
    for package in PEER_PACKAGES:
        _require(package)


def build_peer(name: str, num_classes: int, in_channels: int) -> nn.Module:
    """Build the peer model called `name`."""
    return PEERS[name](num_classes, in_channels)
