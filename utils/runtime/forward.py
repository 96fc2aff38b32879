"""A model's forward pass as probabilities: normalised, flip-averaged, or over overlapping tiles."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from utils.runtime.device import normalize

PREDICT_BATCH = 4  # images (or tiles, or slices) per forward pass unless a script is told otherwise



def tile_starts(length: int, tile: int, overlap: float) -> list[int]:
    """Start offsets of tiles covering [0, length) with at least `overlap` (0..1) shared between neighbours."""
    if length <= tile:
        return [0]
    stride = max(1, int(tile * (1 - overlap)))
    starts = list(range(0, length - tile, stride))
    return starts + [length - tile]


def blend_weights(tile: int) -> torch.Tensor:
    """(tile, tile) weights falling linearly towards the edges (never 0), so overlapping tiles fade into each other."""
    ramp = torch.minimum(torch.arange(1, tile + 1), torch.arange(tile, 0, -1)).float()
    ramp = ramp / ramp.max()
    return torch.outer(ramp, ramp)


def tile_grid(image: torch.Tensor, tile: int, overlap: float) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """The image (C, H, W) zero-padded to at least one tile, and the top-left corners of the tiles covering it."""
    height, width = image.shape[1:]
    # torch's pad order is (left, right, top, bottom): the image stays at the top-left corner.
    padded = F.pad(image, (0, max(0, tile - width), 0, max(0, tile - height)))
    positions = [(y, x) for y in tile_starts(padded.shape[1], tile, overlap)
                 for x in tile_starts(padded.shape[2], tile, overlap)]
    return padded, positions


def sliding_window(probabilities: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor, tile: int,
                   overlap: float = 0.25, batch_size: int = PREDICT_BATCH) -> torch.Tensor:
    """Blend per-tile class probabilities over a uint8 image (C, H, W) into (K, H, W) float32 on the CPU.

    Only `batch_size` tiles are on the device at a time, so memory is bounded by the tile, not the image.
    """
    height, width = image.shape[1:]
    padded, positions = tile_grid(image, tile, overlap)
    weights = blend_weights(tile)
    total = coverage = None
    for first in range(0, len(positions), batch_size):
        chunk = positions[first:first + batch_size]
        tiles = torch.stack([padded[:, y:y + tile, x:x + tile] for y, x in chunk])
        probs = probabilities(tiles).float().cpu()
        if total is None:
            total = torch.zeros(probs.shape[1], *padded.shape[1:])
            coverage = torch.zeros(padded.shape[1:])
        for (y, x), prob in zip(chunk, probs):
            total[:, y:y + tile, x:x + tile] += prob * weights
            coverage[y:y + tile, x:x + tile] += weights
    return (total / coverage)[:, :height, :width]


def class_probabilities(model: torch.nn.Module, images: torch.Tensor, normalization: dict[str, list[float]],
                        flip_tta: bool = False) -> torch.Tensor:
    """Class probabilities (N, K, H, W) of a uint8 batch (N, C, H, W) in fp32; K = 2 for a sigmoid model."""
    parameter = next(model.parameters())
    inputs = normalize(images.to(parameter.device), normalization)
    if parameter.dim() == 4 and parameter.is_contiguous(memory_format=torch.channels_last):
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    return flip_averaged_probabilities(model, inputs, flip_tta)


def flip_averaged_probabilities(forward: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor,
                                flip_tta: bool = False) -> torch.Tensor:
    """Class probabilities of normalised inputs through `forward` (-> logits), averaged with the flipped logits."""
    logits = forward(inputs).float()
    if flip_tta:
        logits = (logits + forward(inputs.flip(-1)).float().flip(-1)) / 2
    return probabilities_of(logits)


def probabilities_of(logits: torch.Tensor) -> torch.Tensor:
    """Class probabilities (N, K, H, W) of logits: softmax, or (1 - p, p) of the sigmoid of a 1-channel model."""
    if logits.shape[1] == 1:
        foreground = torch.sigmoid(logits)
        return torch.cat([1 - foreground, foreground], dim=1)
    return logits.softmax(dim=1)


def labels_of(probabilities: torch.Tensor) -> np.ndarray:
    """The argmax label map (H x W uint8) of K x H x W probabilities."""
    return probabilities.argmax(dim=0).to(torch.uint8).numpy()
