"""Checkpoint + CT/MRI volume -> label volume on the source's voxels (and class probabilities, uncertainty maps)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

from utils.errors import UserError
from utils.infer.postprocess import KeepLargest
from utils.infer.predictor import Predictor
from utils.infer.segment import Segmentation, finish, raw_batch
from utils.io.intensity import Intensity
from utils.runtime.forward import PREDICT_BATCH
from utils.volumes.geometry import Orientation, Volume, context_channels, orientation_of, save_nifti


def volume_intensity(predictor: Predictor, override: Intensity | None, source: str) -> Intensity:
    """The scaling the model was trained with (from its checkpoint), unless the user names one."""
    if override is not None:
        return override
    stored = predictor.preprocessing.get("intensity")
    if not stored:
        raise UserError(f"{source}: the checkpoint does not record how its training images were scaled from "
                        f"raw intensities; give the import's --window or --percentile")
    return Intensity.from_json(stored)


def stack_probabilities(predictor: Predictor, stack: np.ndarray, context: int, batch_size: int = PREDICT_BATCH,
                        progress: Callable[[int], None] | None = None, uncertainty: bool = False
                        ) -> tuple[np.ndarray, np.ndarray | None]:
    """Class probabilities (K, slices, H, W) float32 of a uint8 display stack, slice by slice, and with
    `uncertainty` an ensemble's disagreement (slices, H, W) (else None)."""
    needed = 3 if context else 1
    if context and predictor.in_channels != 3:
        raise UserError(f"2.5-D input (context {context}) needs a 3-channel model; this one has "
                        f"{predictor.in_channels}")
    probabilities: np.ndarray | None = None
    disagreement: np.ndarray | None = None
    for first in range(0, stack.shape[0], batch_size):
        indices = range(first, min(first + batch_size, stack.shape[0]))
        images = [context_channels(stack, index, context) for index in indices]
        if needed == 1 and predictor.in_channels == 3:
            images = [np.repeat(image, 3, axis=2) for image in images]
        for index, (prob, spread) in zip(indices, raw_batch(predictor, images, uncertainty)):
            if probabilities is None:
                probabilities = np.empty((prob.shape[0], *stack.shape), dtype=np.float32)
            probabilities[:, index] = prob
            if spread is not None:
                if disagreement is None:
                    disagreement = np.empty(stack.shape, dtype=np.float32)
                disagreement[index] = spread
        if progress:
            progress(len(indices))
    return probabilities, disagreement


def predict_stack(predictor: Predictor, stack: np.ndarray, context: int, batch_size: int = PREDICT_BATCH,
                  progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Class probabilities (K, slices, H, W) float32 of a uint8 display stack, slice by slice."""
    return stack_probabilities(predictor, stack, context, batch_size, progress)[0]


def segment_stack(predictor: Predictor, stack: np.ndarray, context: int, largest: int | KeepLargest | None = None,
                  batch_size: int = PREDICT_BATCH, progress: Callable[[int], None] | None = None,
                  uncertainty: bool = False) -> Segmentation:
    """The Segmentation (labels, probabilities, maps: slices x H x W) of a uint8 display stack; --keep-largest
    works in 3-D."""
    probabilities, disagreement = stack_probabilities(predictor, stack, context, batch_size, progress, uncertainty)
    return finish(probabilities, predictor.num_classes, largest, uncertainty, disagreement)


def segment_volume(predictor: Predictor, volume: Volume, intensity: Intensity, context: int,
                   largest: int | KeepLargest | None = None, batch_size: int = PREDICT_BATCH,
                   progress: Callable[[int], None] | None = None, uncertainty: bool = False
                   ) -> tuple[Orientation, np.ndarray, Segmentation]:
    """(orientation, uint8 display stack, Segmentation of the stack) of one volume."""
    orientation = orientation_of(volume)
    stack = orientation.to_stack(intensity.apply(volume.data, volume.source))
    return orientation, stack, segment_stack(predictor, stack, context, largest, batch_size, progress, uncertainty)


def predict_volume(predictor: Predictor, volume: Volume, intensity: Intensity, context: int,
                   largest: int | KeepLargest | None = None, batch_size: int = PREDICT_BATCH,
                   progress: Callable[[int], None] | None = None
                   ) -> tuple[Orientation, np.ndarray, np.ndarray, np.ndarray]:
    """(orientation, display stack, label stack, probabilities (K, slices, H, W)) of one volume."""
    orientation, stack, segmentation = segment_volume(predictor, volume, intensity, context, largest, batch_size,
                                                      progress)
    return orientation, stack, segmentation.labels, segmentation.probabilities


def save_uncertainty_niftis(folder: Path, name: str, orientation: Orientation, segmentation: Segmentation,
                            affine: np.ndarray, like: str | os.PathLike | None = None) -> None:
    """<name>_entropy.nii.gz (and <name>_disagreement.nii.gz), float32 on the source's voxels."""
    for kind, values in segmentation.maps().items():
        save_nifti(folder / f"{name}_{kind}.nii.gz", orientation.from_stack(values.astype(np.float32)), affine,
                   like=like)


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
