"""Split files -> validated samples -> a Dataset of letterboxed (image, label) tensors."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler

from utils.errors import UserError
from utils.fileio import read_lines
from utils.image_arrays import open_pillow
from utils.layout import IGNORE_INDEX, images_dir, index_by_stem, labels_dir, split_file

# Pixel modes that carry more than 8 bits: converting them would silently clip or rescale intensities.
WIDE_MODES = ("I", "I;16", "I;16B", "I;16L", "F")


@dataclass
class Sample:
    """One image/label pair of a split, with its decoded arrays once loaded."""

    stem: str
    image_path: Path
    label_path: Path | None


def read_split(root: str | os.PathLike, split: str) -> list[str]:
    """Stems listed in <root>/ImageSets/Segmentation/<split>.txt; unsafe or empty lists are errors."""
    path = split_file(root, split)
    if not path.is_file():
        raise UserError(f"split file not found: {path}\n  write it with: python png2txt.py --data {root}")
    try:
        stems = read_lines(path)
    except UnicodeDecodeError as exc:
        raise UserError(f"{path} is not UTF-8 text (byte {exc.object[exc.start]:#04x} at position {exc.start}); "
                        f"save it as UTF-8 or rewrite it with png2txt.py") from None
    if not stems:
        raise UserError(f"split '{split}' is empty: {path}")
    unsafe = [s for s in stems if PurePosixPath(s).is_absolute() or Path(s).is_absolute()
              or ".." in PurePosixPath(s.replace("\\", "/")).parts]
    if unsafe:
        raise UserError(f"{path} has entries that leave the dataset folder (absolute or '..'): "
                        f"{', '.join(unsafe[:10])}")
    return stems


def image_to_array(image: Image.Image, in_channels: int, path: Path) -> np.ndarray:
    """H x W x in_channels uint8 array; grey is replicated to RGB, colour is refused for 1-channel models."""
    if image.mode in WIDE_MODES:
        raise UserError(f"{path}: {image.mode} image (more than 8 bits per pixel); import it scaled to 8 bits with "
                        f"'python import_dataset.py pairs IMAGES MASKS --out DATASET ... --window PRESET|WIDTH,LEVEL' "
                        f"or '... --percentile LOW,HIGH'")
    if in_channels == 3:
        return np.asarray(image.convert("RGB"))
    if image.mode in ("L", "1", "LA"):
        return np.asarray(image.convert("L"))[:, :, None]
    rgb = np.asarray(image.convert("RGB"))
    if not ((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()):
        raise UserError(f"{path}: colour image, but the model takes 1 (grey) channel; convert the image to grey, "
                        f"or use a model trained with --in-channels 3")
    return rgb[:, :, :1].copy()


def label_to_array(image: Image.Image, path: Path) -> np.ndarray:
    """H x W uint8 class-id map from an L, P (index = class id), 1-bit or grey-as-RGB label image."""
    if image.mode == "1":
        return np.asarray(image, dtype=np.uint8)
    if image.mode in ("L", "P"):
        return np.asarray(image)
    if image.mode in ("RGB", "RGBA"):
        rgb = np.asarray(image.convert("RGB"))
        if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
            return rgb[..., 0].copy()
    raise UserError(f"{path}: label must be a single-channel image of class ids (mode L or P), "
                    f"got mode {image.mode}; convert colour-coded masks with "
                    f"'python import_dataset.py pairs ... --colour-map FILE'")


def open_image(path: Path) -> Image.Image:
    """Open and fully decode an image; unreadable, empty or truncated files raise UserError."""
    if path.is_file() and path.stat().st_size == 0:
        raise UserError(f"{path}: empty file (0 bytes)")
    image = open_pillow(path)  # missing, unidentified and too-large files are reported there
    try:
        with image:
            image.load()
            return image
    except (OSError, ValueError) as exc:  # truncated or corrupt pixel data
        raise UserError(f"{path}: cannot read image ({exc})") from None


def letterbox_size(height: int, width: int, size: int) -> tuple[int, int]:
    """Height and width after scaling the longer side to `size`, keeping the aspect ratio."""
    scale = size / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def letterbox(image: np.ndarray, label: np.ndarray | None, size: int, weights: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Resize so the longer side is `size` (image bilinear; label and weights nearest), then pad to size x size.

    Padding is 0 in the image and weights and IGNORE_INDEX in the label, so it never counts in loss or metrics.
    """
    height, width = image.shape[:2]
    new_h, new_w = letterbox_size(height, width, size)
    if (new_h, new_w) != (height, width):
        channels = [np.asarray(Image.fromarray(image[..., c]).resize((new_w, new_h), Image.BILINEAR))
                    for c in range(image.shape[2])]
        image = np.stack(channels, axis=2)
        if label is not None:
            label = np.asarray(Image.fromarray(label).resize((new_w, new_h), Image.NEAREST))
        if weights is not None:
            weights = np.asarray(Image.fromarray(weights.astype(np.float32), mode="F").resize(
                (new_w, new_h), Image.NEAREST))
    return pad_to(image, label, weights, size)


def find_samples(root: str | os.PathLike, stems: list[str], need_labels: bool = True) -> list[Sample]:
    """Resolve stems to image and label paths; every missing file is named in one UserError."""
    root = Path(root)
    images = index_by_stem(images_dir(root))
    labels = index_by_stem(labels_dir(root)) if labels_dir(root).is_dir() or need_labels else {}
    problems, samples = [], []
    for stem in stems:
        image_path, label_path = images.get(stem), labels.get(stem)
        if image_path is None:
            problems.append(f"{images_dir(root) / stem}.*: image listed in the split but missing")
        if label_path is None and need_labels:
            problems.append(f"{labels_dir(root) / stem}.*: label listed in the split but missing")
        if image_path is not None:
            samples.append(Sample(stem, image_path, label_path))
    if problems:
        raise UserError(format_problems(problems))
    return samples


def format_problems(problems: list[str], limit: int = 50) -> str:
    """One message listing every problem (the first `limit` of them, then a count)."""
    lines = [f"  - {p}" for p in problems[:limit]]
    if len(problems) > limit:
        lines.append(f"  ... and {len(problems) - limit} more")
    return f"{len(problems)} problem(s) in the data:\n" + "\n".join(lines)


def load_pair(sample: Sample, in_channels: int, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Decode and check one pair: sizes equal, label values below num_classes or 255."""
    image = image_to_array(open_image(sample.image_path), in_channels, sample.image_path)
    assert sample.label_path is not None
    label = label_to_array(open_image(sample.label_path), sample.label_path)
    if image.shape[:2] != label.shape:
        raise UserError(f"{sample.label_path}: label is {label.shape[1]}x{label.shape[0]} but its image "
                        f"{sample.image_path.name} is {image.shape[1]}x{image.shape[0]} (width x height)")
    values = np.unique(label)
    if values.tolist() == [IGNORE_INDEX]:
        raise UserError(f"{sample.label_path}: every pixel is {IGNORE_INDEX} ('ignore'), so the image teaches and "
                        f"scores nothing (its loss would be undefined); fix the mask or leave the image out of the "
                        f"split")
    bad = [int(v) for v in values if v >= max(num_classes, 2) and v != IGNORE_INDEX]
    if bad:
        raise UserError(f"{sample.label_path}: label values {bad} are not class ids below "
                        f"num_classes={num_classes} (values found: {values.tolist()}); "
                        f"{likely_fix(values.tolist(), num_classes)}")
    return image, label


def likely_fix(values: list[int], num_classes: int) -> str:
    """A hint for the usual causes of out-of-range label values."""
    if len(values) > 2 and max(values) > num_classes and len(values) > num_classes + 1:
        return ("the mask looks anti-aliased or JPEG-compressed (many grey levels): threshold it, e.g. "
                "'python import_dataset.py pairs IMAGES MASKS --threshold 127 --out DIR'")
    return (f"labels must hold class ids 0..{num_classes - 1} (255 = ignore); pass --num-classes "
            f"{max(values) + 1 if max(values) != IGNORE_INDEX else num_classes} if that many classes "
            f"exist, or re-map the values with 'python import_dataset.py pairs ... --value-map'")


def check_not_binary_255(labels: list[np.ndarray], split: str) -> None:
    """Refuse a split whose labels hold only 0 and 255: a 0/255 mask would train on background alone."""
    seen = set()
    for label in labels:
        seen.update(np.unique(label).tolist())
    if seen == {0, IGNORE_INDEX}:
        raise UserError(
            f"every label of split '{split}' holds only the values 0 and 255. Here 255 means 'ignore', "
            f"so the object would never be learned (IoU 0). This is a 0/255 binary mask: convert it to "
            f"0/1 with 'python import_dataset.py pairs IMAGES MASKS --threshold 127 --out DIR' "
            f"(or 'import_dataset.py liver' for NNN.png + NNN_mask.png folders).")


class SegmentationDataset(Dataset):
    """Validated samples of one split as uint8 tensors: image (C, H, W), label (H, W).

    `mode` says how images meet the model's input size S: "letterbox" scales each image into S x S;
    "crop" keeps the original resolution and cuts a random S x S window per sample ("full" returns the
    whole image, for sliding-window validation of crop-trained models). Every pair is decoded and checked
    once at construction, so bad files stop the run before training; prepared arrays are kept in memory
    up to `cache_mb`.
    """

    def __init__(self, root: str | os.PathLike, split: str, num_classes: int, in_channels: int,
                 input_size: int, augmentation: Callable | None = None,
                 weight_map: Callable[[np.ndarray], np.ndarray] | None = None, cache_mb: float = 4096,
                 mode: str = "letterbox") -> None:
        if mode not in ("letterbox", "crop", "full"):
            raise ValueError(f"unknown mode '{mode}'")
        self.root, self.split, self.mode = Path(root), split, mode
        self.num_classes, self.in_channels, self.input_size = num_classes, in_channels, input_size
        self.augmentation = augmentation
        self.weight_map = weight_map
        self.samples = find_samples(root, read_split(root, split))
        self.cache: list[tuple[np.ndarray, np.ndarray, np.ndarray | None] | None] = []
        budget = cache_mb * 2**20
        problems, labels = [], []
        for sample in self.samples:
            try:
                item = self._prepare(sample)
            except UserError as exc:
                problems.append(str(exc))
                continue
            labels.append(item[1])
            size = sum(a.nbytes for a in item if a is not None)
            self.cache.append(item if size <= budget else None)
            budget -= size if size <= budget else 0
        if problems:
            raise UserError(format_problems(problems))
        check_not_binary_255(labels, split)

    def _prepare(self, sample: Sample) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        image, label = load_pair(sample, self.in_channels, self.num_classes)
        weights = self.weight_map(label) if self.weight_map else None
        if self.mode == "letterbox":
            image, label, weights = letterbox(image, label, self.input_size, weights)
        elif self.mode == "crop":
            image, label, weights = pad_to(image, label, weights, self.input_size)
        # PIL-backed arrays are read-only; torch.from_numpy needs writable memory.
        return (np.require(image, requirements="CW"), np.require(label, requirements="CW"),
                None if weights is None else np.require(weights, np.float32, "CW"))

    def __len__(self) -> int:
        return len(self.samples)

    def unaugmented(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Prepared image (C, H, W), label (H, W) and optional weight map, before cropping and augmentation."""
        cached = self.cache[index]
        image, label, weights = cached if cached is not None else self._prepare(self.samples[index])
        return (torch.from_numpy(image).permute(2, 0, 1), torch.from_numpy(label),
                None if weights is None else torch.from_numpy(weights))

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        index, sample_seed = key if isinstance(key, tuple) else (key, None)
        image_t, label_t, weights_t = self.unaugmented(index)
        augmentation_seed = sample_seed
        if self.augmentation is not None or self.mode == "crop":
            with torch.random.fork_rng(devices=[]):
                if sample_seed is not None:
                    torch.manual_seed(sample_seed)
                if self.mode == "crop":
                    image_t, label_t, weights_t = random_crop(image_t, label_t, weights_t, self.input_size)
                if self.augmentation is not None:
                    image_t, label_t, weights_t = self.augmentation(image_t, label_t, weights_t)
                elif self.mode == "crop":  # a seed for augmenting on the device, independent of the crop's draws
                    augmentation_seed = int(torch.randint(2**62, ()))
        item = {"image": image_t.contiguous(), "label": label_t.contiguous()}
        if sample_seed is not None and self.augmentation is None:  # for utils.augment.augment_batch
            item["seed"] = torch.tensor(augmentation_seed)
        if weights_t is not None:
            item["weight"] = weights_t.contiguous()
        return item


def pad_to(image: np.ndarray, label: np.ndarray | None, weights: np.ndarray | None, size: int
           ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Pad bottom/right to at least size x size (image 0, label IGNORE_INDEX, weight 0)."""
    height, width = image.shape[:2]
    pad_h, pad_w = max(0, size - height), max(0, size - width)
    if not (pad_h or pad_w):
        return image, label, weights
    image = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)))
    if label is not None:
        label = np.pad(label, ((0, pad_h), (0, pad_w)), constant_values=IGNORE_INDEX)
    if weights is not None:
        weights = np.pad(weights, ((0, pad_h), (0, pad_w)))
    return image, label, weights


def random_crop(image: torch.Tensor, label: torch.Tensor, weights: torch.Tensor | None, size: int
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The same random size x size window of image (C, H, W), label and weights (torch's RNG)."""
    height, width = label.shape
    top = int(torch.randint(0, height - size + 1, ()))
    left = int(torch.randint(0, width - size + 1, ()))
    window = (slice(top, top + size), slice(left, left + size))
    return (image[:, window[0], window[1]], label[window],
            None if weights is None else weights[window])


class SeededSampler(Sampler):
    """Yields (index, seed) pairs: a seeded shuffle per epoch and one augmentation seed per sample.

    The seed of a sample depends only on (run seed, epoch, index), so augmentations are the same
    whatever the number of DataLoader workers, differ between samples and epochs, and a resumed run
    draws exactly what the uninterrupted run drew. With `world_size` > 1 each rank takes every
    `world_size`-th index of the shuffled order, padded to equal length as DistributedSampler does
    (`pad=False` for validation, where a repeated image would be counted twice).
    """

    def __init__(self, length: int, seed: int, shuffle: bool = True, rank: int = 0, world_size: int = 1,
                 pad: bool = True) -> None:
        self.length, self.seed, self.shuffle = length, seed, shuffle
        self.rank, self.world_size, self.pad = rank, world_size, pad
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order and seeds are drawn next."""
        self.epoch = epoch

    def __len__(self) -> int:
        if self.pad:
            return -(-self.length // self.world_size)
        return len(range(self.rank, self.length, self.world_size))

    def __iter__(self):
        generator = np.random.default_rng([self.seed, self.epoch])
        order = generator.permutation(self.length) if self.shuffle else np.arange(self.length)
        if self.pad:
            order = np.resize(order, len(self) * self.world_size)
        order = order[self.rank::self.world_size]
        seeds = generator.integers(0, 2**63 - 1, size=self.length)
        for index in order.tolist():
            yield index, int(seeds[index])
