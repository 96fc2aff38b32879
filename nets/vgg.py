"""VGG16 (configuration D, no batch norm) feature extractor, compatible with torchvision's state dict."""
from __future__ import annotations

import os
import pickle
import warnings

import torch
from torch import nn

from utils.errors import UserError, refused_load_reason

# Configuration D without its last pooling: the fifth block's output is the deepest feature map.
VGG16_LAYOUT: list[int | str] = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]
# Slices of `features` that end at each of the five feature maps (64, 128, 256, 512, 512 channels).
STAGE_BOUNDS = (0, 4, 9, 16, 23, 30)


def make_vgg_layers(in_channels: int) -> nn.Sequential:
    """The `features` stack of torchvision's vgg16, with the same module indices."""
    layers: list[nn.Module] = []
    for spec in VGG16_LAYOUT:
        if spec == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(in_channels, int(spec), kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            in_channels = int(spec)
    return nn.Sequential(*layers)


class VGG16Encoder(nn.Module):
    """VGG16 convolutional layers returning the five feature maps used by the U-Net decoder."""

    channels = (64, 128, 256, 512, 512)

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.features = make_vgg_layers(in_channels)
        for module in self.features:
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps = []
        for start, end in zip(STAGE_BOUNDS[:-1], STAGE_BOUNDS[1:]):
            for index in range(start, end):
                x = self.features[index](x)
            maps.append(x)
        return maps

    def load_torchvision_weights(self, path: str | os.PathLike) -> None:
        """Load `features.*` from a local torchvision VGG16 state-dict file; a mismatch is a UserError."""
        try:
            with warnings.catch_warnings():  # torch's note on a TorchScript archive advises turning weights_only off
                warnings.simplefilter("ignore", UserWarning)
                state = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise UserError(f"pretrained weights file not found: {path}") from None
        except pickle.UnpicklingError as exc:
            reason = refused_load_reason(exc)
            if "GLOBAL" not in reason:
                raise UserError(f"cannot read pretrained weights {path}: not a torch.save file ({reason})") from None
            raise UserError(f"{path}: refused to load: it holds objects other than tensors and plain types, which "
                            f"could run code ({reason}); use torchvision's vgg16 state dict file") from None
        except Exception as exc:  # torch raises many types for a corrupt or non-tensor file
            raise UserError(f"cannot read pretrained weights {path}: {refused_load_reason(exc)}") from None
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise UserError(f"{path} is not a state dict (got {type(state).__name__})")
        features = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
        expected = self.features.state_dict()
        missing = sorted(set(expected) - set(features))
        unexpected = sorted(set(features) - set(expected))
        if missing or unexpected:
            raise UserError(f"{path} is not a torchvision VGG16 (configuration D, no batch norm) state dict: "
                            f"missing features.{missing[:4]}, unexpected features.{unexpected[:4]}")
        first = features["0.weight"]
        if first.shape[1] == 3 and self.in_channels == 1:
            # A grey image equals an RGB image with three equal channels, so summing the RGB kernels is exact.
            features["0.weight"] = first.sum(dim=1, keepdim=True)
        for key, tensor in features.items():
            if tensor.shape != expected[key].shape:
                raise UserError(f"{path}: features.{key} has shape {tuple(tensor.shape)}, "
                                f"the model needs {tuple(expected[key].shape)}")
        self.features.load_state_dict(features)
