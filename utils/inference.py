"""Checkpoint + images -> label maps at the images' own size (used by predict.py and get_miou_prediction.py)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from utils.checkpoint import load_checkpoint, model_from_checkpoint
from utils.dataloader import letterbox, letterbox_size
from utils.errors import UserError
from utils.image_arrays import load_model_input
from utils.intensity import Intensity
from utils.runtime import amp_dtype, memory_format, normalize, resolve_device
from utils.speed_probe import inference_choice

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
    padded = F.pad(image, (0, max(0, tile - width), 0, max(0, tile - height)))
    positions = [(y, x) for y in tile_starts(padded.shape[1], tile, overlap)
                 for x in tile_starts(padded.shape[2], tile, overlap)]
    return padded, positions


def letterbox_batch(images: Sequence[np.ndarray], size: int) -> torch.Tensor:
    """H x W x C uint8 images letterboxed to one (N, C, size, size) uint8 batch, as the model was trained."""
    return torch.from_numpy(np.stack([letterbox(image, None, size)[0] for image in images])).permute(0, 3, 1, 2)


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
        self.layout = inference_choice(model, self.device, self.model_name, self.in_channels, self.num_classes,
                                       self.input_size, amp, PREDICT_BATCH)
        self.model = model.to(memory_format=memory_format(self.layout.channels_last))

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

    def predict_batch(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Label maps (H x W uint8) at each image's original size."""
        return [labels_of(prob) for prob in self.probability_batch(images)]

    def predict_files(self, paths: Iterable[Path], batch_size: int = PREDICT_BATCH
                      ) -> Iterator[tuple[Path, np.ndarray, np.ndarray]]:
        """Yield (path, image, class probabilities K x H x W float32) per file, `batch_size` images per pass."""
        batch: list[tuple[Path, np.ndarray]] = []
        for path in paths:
            batch.append((path, self.load(path)))
            if len(batch) == batch_size:
                yield from self._flush(batch)
                batch = []
        if batch:
            yield from self._flush(batch)

    def _flush(self, batch: list[tuple[Path, np.ndarray]]) -> Iterator[tuple[Path, np.ndarray, np.ndarray]]:
        probabilities = self.probability_batch([image for _, image in batch])
        for (path, image), prob in zip(batch, probabilities):
            yield path, image, prob.numpy()


def is_onnx_file(path: Path) -> bool:
    """An exported ONNX model: named .onnx, or a file starting as ONNX protobufs do (field 1, ir_version)."""
    if path.suffix.lower() == ".onnx":
        return True
    if not path.is_file():
        return False
    with open(path, "rb") as handle:
        return handle.read(1) == b"\x08"  # a checkpoint starts with a zip ("PK") or pickle (0x80) header


def load_predictor(path: str | os.PathLike, device: str = "auto", flip_tta: bool = False, tiles: bool | None = None,
                   overlap: float = 0.25, intensity: Intensity | None = None, amp: bool = False) -> Predictor:
    """A Predictor for a checkpoint (file or run folder), or an OnnxPredictor for an exported ONNX model."""
    if is_onnx_file(Path(path)):
        from utils.onnx_predictor import OnnxPredictor  # loads onnxruntime only for ONNX models

        if amp:
            raise UserError(f"--amp applies to PyTorch checkpoints; {path} is an ONNX model, which runs in the "
                            f"precision it was exported in")
        return OnnxPredictor(path, device, flip_tta, tiles, overlap, intensity)
    return Predictor(path, device, flip_tta, tiles, overlap, intensity, amp)
