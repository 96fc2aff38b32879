"""Checkpoint + CT/MRI volume -> label volume on the source's voxels (and class probabilities)."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from utils.errors import UserError
from utils.infer.postprocess import keep_largest, move_removed_to_background
from utils.infer.predictor import Predictor
from utils.io.intensity import Intensity
from utils.runtime.forward import PREDICT_BATCH
from utils.volumes.geometry import Orientation, Volume, context_channels, orientation_of


def volume_intensity(predictor: Predictor, override: Intensity | None, source: str) -> Intensity:
    """The scaling the model was trained with (from its checkpoint), unless the user names one."""
    if override is not None:
        return override
    stored = predictor.preprocessing.get("intensity")
    if not stored:
        raise UserError(f"{source}: the checkpoint does not record how its training images were scaled from "
                        f"raw intensities; give the import's --window or --percentile")
    return Intensity.from_json(stored)


def predict_stack(predictor: Predictor, stack: np.ndarray, context: int, batch_size: int = PREDICT_BATCH,
                  progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Class probabilities (K, slices, H, W) float32 of a uint8 display stack, slice by slice."""
    needed = 3 if context else 1
    if context and predictor.in_channels != 3:
        raise UserError(f"2.5-D input (context {context}) needs a 3-channel model; this one has "
                        f"{predictor.in_channels}")
    probabilities: np.ndarray | None = None
    for first in range(0, stack.shape[0], batch_size):
        indices = range(first, min(first + batch_size, stack.shape[0]))
        images = [context_channels(stack, index, context) for index in indices]
        if needed == 1 and predictor.in_channels == 3:
            images = [np.repeat(image, 3, axis=2) for image in images]
        for index, prob in zip(indices, predictor.probability_batch(images)):
            if probabilities is None:
                probabilities = np.empty((prob.shape[0], *stack.shape), dtype=np.float32)
            probabilities[:, index] = prob.numpy()
        if progress:
            progress(len(indices))
    return probabilities


def finish_labels(probabilities: np.ndarray, num_classes: int, largest: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Label map of (K, *spatial) probabilities, optionally keeping each class's `largest` components.

    A removed component's probability moves to background, so the returned probabilities' argmax is the labels.
    """
    labels = torch.from_numpy(probabilities).argmax(dim=0).to(torch.uint8).numpy()
    if not largest:
        return labels, probabilities
    cleaned, removed = keep_largest(labels, max(num_classes, 2), largest)
    return cleaned, move_removed_to_background(probabilities, labels, removed)


def predict_volume(predictor: Predictor, volume: Volume, intensity: Intensity, context: int,
                   largest: int | None = None, batch_size: int = PREDICT_BATCH,
                   progress: Callable[[int], None] | None = None
                   ) -> tuple[Orientation, np.ndarray, np.ndarray, np.ndarray]:
    """(orientation, display stack, label stack, probabilities (K, slices, H, W)) of one volume."""
    orientation = orientation_of(volume)
    stack = orientation.to_stack(intensity.apply(volume.data, volume.source))
    probabilities = predict_stack(predictor, stack, context, batch_size, progress)
    labels, probabilities = finish_labels(probabilities, predictor.num_classes, largest)
    return orientation, stack, labels, probabilities


def probabilities_in_file_order(orientation: Orientation, probabilities: np.ndarray) -> np.ndarray:
    """(K, slices, H, W) probabilities as an (i, j, k, K) float32 array on the source's voxels."""
    return orientation.from_stack(np.moveaxis(probabilities, 0, -1)).astype(np.float32)


def overlay_slices(text: str, labels: np.ndarray) -> list[int]:
    """'auto' (3 slices spread over the predicted foreground, else over the volume) or 'K,K,...' (0 = most inferior)."""
    count = labels.shape[0]
    if text == "auto":
        with_foreground = np.flatnonzero(((labels != 0) & (labels != 255)).reshape(count, -1).any(axis=1))
        low, high = (with_foreground[0], with_foreground[-1]) if with_foreground.size else (0, count - 1)
        return sorted({int(round(low + i * (high - low) / 4)) for i in range(1, 4)})
    try:
        picks = [int(part) for part in text.split(",")]
    except ValueError:
        raise UserError(f"--overlay {text!r}: give 'auto' or slice numbers such as 10,20,30") from None
    bad = [pick for pick in picks if not 0 <= pick < count]
    if bad:
        raise UserError(f"--overlay: slice(s) {bad} outside 0..{count - 1}")
    return picks
