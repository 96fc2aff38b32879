"""Checkpoint + images -> label maps at the images' own size (used by predict.py and get_miou_prediction.py)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from utils.checkpoint import load_checkpoint, model_from_checkpoint
from utils.dataloader import image_to_array, letterbox, letterbox_size, open_image
from utils.training import normalize, resolve_device


class Predictor:
    """A trained model with the preprocessing its checkpoint describes."""

    def __init__(self, checkpoint_path: str | os.PathLike, device: str = "auto", flip_tta: bool = False) -> None:
        self.checkpoint_path = Path(checkpoint_path)
        checkpoint = load_checkpoint(checkpoint_path)
        self.device = resolve_device(device)
        self.model = model_from_checkpoint(checkpoint, checkpoint_path).to(self.device).eval()
        self.model_name = checkpoint["model"]["name"]
        self.num_classes = int(checkpoint["model"]["num_classes"])
        self.in_channels = int(checkpoint["model"]["in_channels"])
        self.class_names = list(checkpoint["class_names"])
        self.input_size = int(checkpoint["input_size"])
        self.normalization = checkpoint["normalization"]
        self.flip_tta = flip_tta

    def load(self, path: str | os.PathLike) -> np.ndarray:
        """Read an image file as the model's H x W x C uint8 input."""
        path = Path(path)
        return image_to_array(open_image(path), self.in_channels, path)

    @torch.inference_mode()
    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """Class probabilities (N, K, S, S) for a uint8 batch (N, C, S, S); K = 2 for a sigmoid model."""
        inputs = normalize(images.to(self.device), self.normalization)
        logits = self.model(inputs).float()
        if self.flip_tta:
            logits = (logits + self.model(inputs.flip(-1)).float().flip(-1)) / 2
        if logits.shape[1] == 1:
            foreground = torch.sigmoid(logits)
            return torch.cat([1 - foreground, foreground], dim=1)
        return logits.softmax(dim=1)

    def predict_batch(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Label maps (H x W uint8) at each image's original size."""
        boxed = np.stack([letterbox(image, None, self.input_size)[0] for image in images])
        probs = self.probabilities(torch.from_numpy(boxed).permute(0, 3, 1, 2))
        labels = []
        for image, prob in zip(images, probs):
            height, width = image.shape[:2]
            new_h, new_w = letterbox_size(height, width, self.input_size)
            prob = prob[:, :new_h, :new_w]
            if (new_h, new_w) != (height, width):
                prob = F.interpolate(prob[None], size=(height, width), mode="bilinear", align_corners=False)[0]
            labels.append(prob.argmax(dim=0).to(torch.uint8).cpu().numpy())
        return labels

    def predict_files(self, paths: Iterable[Path], batch_size: int = 4) -> Iterator[tuple[Path, np.ndarray, np.ndarray]]:
        """Yield (path, image, label map) for every file, `batch_size` images per forward pass."""
        batch: list[tuple[Path, np.ndarray]] = []
        for path in paths:
            batch.append((path, self.load(path)))
            if len(batch) == batch_size:
                yield from self._flush(batch)
                batch = []
        if batch:
            yield from self._flush(batch)

    def _flush(self, batch: list[tuple[Path, np.ndarray]]) -> Iterator[tuple[Path, np.ndarray, np.ndarray]]:
        labels = self.predict_batch([image for _, image in batch])
        for (path, image), label in zip(batch, labels):
            yield path, image, label
