"""One SGD step of the training loop, from recorded initial weights, and the comparison of two such steps.

The model is a two-level U-Net of the repository's own blocks (3x3 conv + batch norm, a concatenating conv,
bilinear up-sampling), small enough for a step to take milliseconds. Registered under the trained model's name
(nets.MODELS is patched for the test), it records its freshly initialised parameters, so a test can measure the
step the loop took and compare it with the step of another run (other memory layout, other device).
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import nets
from nets.blocks import DoubleConvBN, DoubleConvReLU, upsample_to
from tests.conftest import tiny_train_args
from utils.io.checkpoint import load_checkpoint
from utils.train.loop import train

# Tensors whose update is below this fraction of the largest one are rounding noise: the conv biases in
# front of batch norm, whose true gradient is 0.
NOISE = 1e-4


class MiniUNet(nn.Module):
    """Encoder (two BN conv stages), bilinear decoder with a skip, 1x1 head; keeps its initial parameters."""

    initial: list[dict[str, torch.Tensor]] = []

    def __init__(self, num_classes: int, in_channels: int = 1, **_: object) -> None:
        super().__init__()
        self.encoder = nn.ModuleList([DoubleConvBN(in_channels, 8), DoubleConvBN(8, 16)])
        self.decoder = DoubleConvReLU(24, 8)
        self.head = nn.Conv2d(8, num_classes, kernel_size=1)
        MiniUNet.initial.append({name: p.detach().clone().contiguous() for name, p in self.named_parameters()})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.encoder[0](x)
        deep = self.encoder[1](nn.functional.max_pool2d(skip, 2))
        return self.head(self.decoder([skip, upsample_to(deep, skip, "bilinear")]))


def register(monkeypatch: pytest.MonkeyPatch) -> None:
    """Train MiniUNet whenever 'unet_bn' is trained, for the rest of the test."""
    monkeypatch.setattr(MiniUNet, "initial", [])
    monkeypatch.setitem(nets.MODELS, "unet_bn", MiniUNet)


def one_step(data: Path, logs: Path, *extra: str, device: str = "cpu"
             ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(initial parameters, parameters after training) of a run of exactly one fp32 SGD step (6 images, batch 6)."""
    before = len(MiniUNet.initial)
    args = tiny_train_args(data, logs, "--in-channels", "1", "--batch-size", "6", "--optimizer", "sgd", "--lr", "0.5",
                           "--momentum", "0.9", "--seed", "7", "--device", device, *extra)
    assert train("unet_bn", args) == 0
    assert len(MiniUNet.initial) == before + 1
    initial = MiniUNet.initial[-1]
    state = load_checkpoint(logs / "unet_bn" / "r" / "last.pt")["state_dict"]
    return initial, {name: state[name].contiguous() for name in initial}


def learning_weights(initial: dict[str, torch.Tensor]) -> list[str]:
    """The convolution weights: every one of them has a gradient."""
    return [name for name, tensor in initial.items() if name.endswith("weight") and tensor.dim() == 4]


def compare_steps(initial: dict[str, torch.Tensor], reference: dict[str, torch.Tensor],
                  other: dict[str, torch.Tensor], relative: float) -> list[str]:
    """The tensors where `other` differs from `reference` by more than `relative` times the step `reference`
    took from `initial`, described; the tensors with only noise for a step are left out."""
    updates = {name: (reference[name] - initial[name]).abs().max().item() for name in initial}
    largest = max(updates.values())
    assert largest > 0, "the reference run did not change its weights"
    checked = [name for name, size in updates.items() if size > NOISE * largest]
    assert set(learning_weights(initial)) <= set(checked), "a convolution did not learn in the reference run"
    differences = {name: (other[name].cpu() - reference[name].cpu()).abs().max().item() for name in checked}
    return [f"{name}: differs by {differences[name]:.3g}, the step was {updates[name]:.3g}"
            for name in checked if differences[name] > relative * updates[name]]
