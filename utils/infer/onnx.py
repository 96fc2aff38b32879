"""Exported ONNX models run by onnxruntime behind the interface of utils.infer.predictor.Predictor.

onnxruntime is imported only here, inside functions, so PyTorch-only users never load it.
"""
from __future__ import annotations

import os

import torch

from utils.errors import UserError
from utils.infer.metadata import ONNX_FORMAT, description_from_props
from utils.infer.predictor import Predictor
from utils.io.intensity import Intensity
from utils.runtime.device import normalize
from utils.runtime.forward import flip_averaged_probabilities
from utils.runtime.onnx_session import (
    check_signature,
    non_finite_initializers,
    open_session,
    read_model,
    session_forward,
)


class OnnxPredictor(Predictor):
    """A Predictor whose model is an exported ONNX file run by onnxruntime (letterbox, tiles, flip TTA, volumes)."""

    def __init__(self, model_path: str | os.PathLike, device: str = "auto", flip_tta: bool = False,
                 tiles: bool | None = None, overlap: float = 0.25, intensity: Intensity | None = None) -> None:
        self.device = torch.device("cpu")  # tensors stay on the host; onnxruntime's provider picks the hardware
        payload = read_model(model_path)
        self.session = open_session(payload, device, source=str(model_path))
        described = description_from_props(self.session.get_modelmeta().custom_metadata_map, model_path, ONNX_FORMAT)
        check_signature(self.session, described["model"]["in_channels"], described["model"]["num_classes"],
                        model_path)
        bad, total = non_finite_initializers(payload)
        if bad:
            raise UserError(f"{model_path}: {len(bad)} of {total} weight tensors hold NaN or infinite values "
                            f"(e.g. {bad[0]}): the training run diverged; export an earlier checkpoint")
        self.forward = session_forward(self.session)
        self._configure(model_path, described, flip_tta, tiles, overlap, intensity)

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """Class probabilities (N, K, S, S) for a uint8 batch (N, C, S, S); K = 2 for a sigmoid model."""
        return flip_averaged_probabilities(self.forward, normalize(images, self.normalization), self.flip_tta)
