"""Python API: what predict.py does, on NumPy images and volumes: one checkpoint, an ensemble or an .onnx file.

    from utils.api import Segmenter

    segmenter = Segmenter.load(["logs/unet_bn/cv-fold0/best.pt", "logs/unet_bn/cv-fold1/best.pt"], flip_tta=True)
    labels, probabilities = segmenter.predict(image)             # H x W (x C); (K, H, W) probabilities
    labels, probabilities = segmenter.predict_volume(ct, affine=nifti.affine)   # nibabel's voxel order
    result = segmenter.segment(image, uncertainty=True)          # + result.entropy, .disagreement, .case("x")

The same functions predict.py and get_miou_prediction.py call compute the answers, so the labels equal the files
those scripts write for the same pixels and options.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from utils.errors import UserError
from utils.infer.loading import load_predictor
from utils.infer.members import CheckpointArgument
from utils.infer.postprocess import KeepLargest
from utils.infer.predictor import Predictor
from utils.infer.segment import Segmentation, segment_images
from utils.io.images import array_model_input
from utils.io.intensity import intensity_from_options
from utils.runtime.forward import PREDICT_BATCH
from utils.volumes.geometry import Volume, check_spacing
from utils.volumes.inference import segment_stack, segment_volume, volume_intensity


class Segmenter:
    """A loaded model (or ensemble) and the options predict.py would be given: --keep-largest, --window,
    --percentile, --batch-size (the rest, e.g. flip_tta and tiles, are the predictor's)."""

    def __init__(self, predictor: Predictor, keep_largest: int | KeepLargest | None = None, window: str | None = None,
                 percentile: str | None = None, batch_size: int = PREDICT_BATCH) -> None:
        self.predictor = predictor
        self.keep_largest = keep_largest
        self.scaling = intensity_from_options(window, percentile)  # None: as recorded in the checkpoint
        self.batch_size = batch_size

    @classmethod
    def load(cls, checkpoint: CheckpointArgument, *, device: str = "auto", flip_tta: bool = False,
             tiles: bool | None = None, overlap: float = 0.25, keep_largest: int | KeepLargest | None = None,
             window: str | None = None, percentile: str | None = None, amp: bool = False,
             batch_size: int = PREDICT_BATCH) -> Segmenter:
        """Load a .pt checkpoint, run folder or .onnx file, or several / a cross-validation folder as an ensemble."""
        predictor = load_predictor(checkpoint, device, flip_tta, tiles, overlap,
                                   intensity=intensity_from_options(window, percentile), amp=amp)
        return cls(predictor, keep_largest, window, percentile, batch_size)

    @property
    def class_names(self) -> list[str]:
        """Class i's name (two for a sigmoid model: background and the class)."""
        return self.predictor.class_names[:max(self.predictor.num_classes, 2)]

    def segment(self, image: np.ndarray, uncertainty: bool = False) -> Segmentation:
        """Labels (H x W uint8), probabilities (K, H, W) and, when asked, the uncertainty maps of one image."""
        prepared = array_model_input(image, self.predictor.in_channels, self.predictor.intensity)
        return segment_images(self.predictor, [prepared], self.keep_largest, uncertainty)[0]

    def predict(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(labels H x W uint8, probabilities (K, H, W) float32) of an H x W or H x W x C image, as predict.py."""
        result = self.segment(image)
        return result.labels, result.probabilities

    def segment_volume(self, volume: np.ndarray, affine: np.ndarray | Sequence | None = None,
                       uncertainty: bool = False, context: int | None = None) -> Segmentation:
        """The Segmentation of a 3-D volume in real units (e.g. HU), in the input's voxel order.

        With `affine` (4 x 4, voxel -> RAS+ mm), `volume` is in its file's voxel order as nibabel reads it and is
        reoriented as predict.py reoriented the file. Without, it is an axial (slices, rows, columns) stack as a
        radiologist views it: slice 0 most inferior, anterior at the top, the patient's right on the left, e.g.
        SimpleITK's GetArrayFromImage of an axial series with an identity direction.
        """
        data = np.asarray(volume, dtype=np.float32)  # what load_nifti reads a file's voxels as
        if data.ndim != 3:
            raise UserError(f"a volume must be 3-D, got shape {data.shape}")
        scaling = volume_intensity(self.predictor, self.scaling, "volume")
        if context is None:
            context = int(self.predictor.preprocessing.get("context") or 0)
        if affine is None:
            stack = scaling.apply(data, "volume")
            return segment_stack(self.predictor, stack, context, self.keep_largest, self.batch_size,
                                 uncertainty=uncertainty)
        affine = np.asarray(affine, dtype=np.float64)
        if affine.shape != (4, 4):
            raise UserError(f"affine must be a 4 x 4 matrix, got shape {affine.shape}")
        check_spacing(affine, "volume")
        orientation, _, result = segment_volume(self.predictor, Volume(data, affine, "volume"), scaling, context,
                                                self.keep_largest, self.batch_size, uncertainty=uncertainty)

        def back(values: np.ndarray | None) -> np.ndarray | None:
            return None if values is None else orientation.from_stack(values)
        probabilities = np.moveaxis(orientation.from_stack(np.moveaxis(result.probabilities, 0, -1)), -1, 0)
        return Segmentation(back(result.labels), probabilities, back(result.entropy), back(result.disagreement))

    def predict_volume(self, volume: np.ndarray, affine: np.ndarray | Sequence | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
        """(labels, probabilities (K, *volume.shape)) of a 3-D volume, as predict.py writes them (segment_volume)."""
        result = self.segment_volume(volume, affine)
        return result.labels, result.probabilities

    def __repr__(self) -> str:
        paths = ", ".join(os.fspath(path) for path in self.predictor.checkpoint_paths)
        return f"Segmenter({paths}; classes {', '.join(self.class_names)})"
