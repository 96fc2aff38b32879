"""Checkpoint + images -> label maps at the images' own size (used by predict.py and get_miou_prediction.py)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from utils.data.letterbox import letterbox, letterbox_size
from utils.io.checkpoint import load_checkpoint, model_from_checkpoint
from utils.io.images import load_model_input
from utils.io.intensity import Intensity
from utils.runtime.device import amp_dtype, memory_format, resolve_device
from utils.runtime.forward import PREDICT_BATCH, class_probabilities, sliding_window
from utils.runtime.speed_probe import inference_choice


def letterbox_batch(images: Sequence[np.ndarray], size: int) -> torch.Tensor:
    """H x W x C uint8 images letterboxed to one (N, C, size, size) uint8 batch, as the model was trained."""
    return torch.from_numpy(np.stack([letterbox(image, None, size)[0] for image in images])).permute(0, 3, 1, 2)


class Predictor:
    """A trained model with the preprocessing its checkpoint describes.

    Images are letterboxed to the training size, or, for models trained on crops (--crop) or when
    `tiles=True`, predicted at their own resolution by overlapping tiles of the training size.
    """

    amp_dtype: torch.dtype | None = None  # autocast dtype with --amp; None: fp32

    def __init__(self, checkpoint_path: str | os.PathLike, device: str = "auto", flip_tta: bool = False,
                 tiles: bool | None = None, overlap: float = 0.25, intensity: Intensity | None = None,
                 amp: bool = False) -> None:
        checkpoint = load_checkpoint(checkpoint_path)
        self.device = resolve_device(device)
        self._configure(checkpoint_path, checkpoint, flip_tta, tiles, overlap, intensity)
        self.amp_dtype = amp_dtype(self.device) if amp else None
        model = model_from_checkpoint(checkpoint, checkpoint_path).to(self.device).eval()
        # NCHW or channels-last, whichever the speed probe timed faster on this machine (cached per set-up).
        self.speed = inference_choice(model, self.device, self.model_name, self.in_channels, self.num_classes,
                                       self.input_size, amp, PREDICT_BATCH)
        self.model = model.to(memory_format=memory_format(self.speed.channels_last))

    def _configure(self, path: str | os.PathLike, description: dict, flip_tta: bool, tiles: bool | None,
                   overlap: float, intensity: Intensity | None) -> None:
        """Set the attributes every predictor has from a checkpoint (or an exported model's description)."""
        self.checkpoint_path = Path(path)
        self.model_name = description["model"]["name"]
        self.num_classes = int(description["model"]["num_classes"])
        self.in_channels = int(description["model"]["in_channels"])
        self.class_names = list(description["class_names"])
        self.input_size = int(description["input_size"])
        self.normalization = description["normalization"]
        self.preprocessing = description.get("preprocessing") or {"intensity": None, "context": 0}
        stored = self.preprocessing.get("intensity")
        # 16-bit and float images are scaled as the user says, else as the training images were imported.
        self.intensity = intensity or (Intensity.from_json(stored) if stored else None)
        self.flip_tta = flip_tta
        self.tiles = description.get("input_mode") == "crop" if tiles is None else tiles
        self.overlap = overlap

    def load(self, path: str | os.PathLike) -> np.ndarray:
        """Read an image file as the model's H x W x C uint8 input."""
        return np.require(load_model_input(Path(path), self.in_channels, self.intensity), requirements="CW")

    @torch.inference_mode()
    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """Class probabilities (N, K, S, S) for a uint8 batch (N, C, S, S); K = 2 for a sigmoid model."""
        amp = self.amp_dtype is not None
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=amp):
            return class_probabilities(self.model, images, self.normalization, flip_tta=self.flip_tta)

    def probability_batch(self, images: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """Class probabilities (K x H x W float32, CPU) at each image's original size."""
        if self.tiles:
            return [sliding_window(self.probabilities, torch.from_numpy(image).permute(2, 0, 1), self.input_size,
                                   self.overlap) for image in images]
        probs = self.probabilities(letterbox_batch(images, self.input_size))
        resized = []
        for image, prob in zip(images, probs):
            height, width = image.shape[:2]
            new_h, new_w = letterbox_size(height, width, self.input_size)
            prob = prob[:, :new_h, :new_w]
            if (new_h, new_w) != (height, width):
                prob = F.interpolate(prob[None], size=(height, width), mode="bilinear", align_corners=False)[0]
            resized.append(prob.float().cpu())
        return resized

    def probabilities_with_disagreement(self, images: Sequence[np.ndarray]
                                        ) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """(class probabilities, the models' disagreement map) per image at its size; one model: no disagreement."""
        return [(prob, None) for prob in self.probability_batch(images)]

    @property
    def checkpoint_paths(self) -> list[Path]:
        """The model files this predictor runs: one for a single model."""
        return [self.checkpoint_path]

    def read_batches(self, paths: Iterable[Path], batch_size: int = PREDICT_BATCH
                     ) -> Iterator[list[tuple[Path, np.ndarray]]]:
        """The files as model inputs, (path, image) pairs, `batch_size` at a time."""
        batch: list[tuple[Path, np.ndarray]] = []
        for path in paths:
            batch.append((path, self.load(path)))
            if len(batch) == batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    def predict_files(self, paths: Iterable[Path], batch_size: int = PREDICT_BATCH
                      ) -> Iterator[tuple[Path, np.ndarray, np.ndarray]]:
        """Yield (path, image, class probabilities K x H x W float32) per file, `batch_size` images per pass."""
        for batch in self.read_batches(paths, batch_size):
            probabilities = self.probability_batch([image for _, image in batch])
            for (path, image), prob in zip(batch, probabilities):
                yield path, image, prob.numpy()


