"""Split files -> validated samples -> a Dataset of letterboxed (image, label) tensors."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from utils.data.folders import images_dir, index_by_stem, labels_dir, split_file
from utils.data.letterbox import letterbox, pad_to
from utils.errors import UserError
from utils.io.files import read_lines
from utils.io.images import image_to_array, open_image
from utils.io.labels import IGNORE_INDEX, label_to_array


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
        # (stem, width, height) of each label as stored, read while checking it: the run's record of its data.
        self.label_sizes: list[tuple[str, int, int]] = []
        budget = cache_mb * 2**20
        problems, labels = [], []
        for sample in self.samples:
            try:
                image, label = load_pair(sample, self.in_channels, self.num_classes)
                item = self._prepare(image, label)
            except UserError as exc:
                problems.append(str(exc))
                continue
            labels.append(item[1])
            self.label_sizes.append((sample.stem, label.shape[1], label.shape[0]))
            size = sum(a.nbytes for a in item if a is not None)
            self.cache.append(item if size <= budget else None)
            budget -= size if size <= budget else 0
        if problems:
            raise UserError(format_problems(problems))
        check_not_binary_255(labels, split)
        # Padding is IGNORE_INDEX, so any other non-zero value is a class pixel of the label itself.
        self.has_foreground = any(bool(((label > 0) & (label != IGNORE_INDEX)).any()) for label in labels)

    def _prepare(self, image: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """A checked pair as the model takes it: letterboxed or padded, with its weight map."""
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
        if cached is None:
            cached = self._prepare(*load_pair(self.samples[index], self.in_channels, self.num_classes))
        image, label, weights = cached
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
        if sample_seed is not None and self.augmentation is None:  # for utils.data.augment.augment_batch
            item["seed"] = torch.tensor(augmentation_seed)
        if weights_t is not None:
            item["weight"] = weights_t.contiguous()
        return item


def random_crop(image: torch.Tensor, label: torch.Tensor, weights: torch.Tensor | None, size: int
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The same random size x size window of image (C, H, W), label and weights (torch's RNG)."""
    height, width = label.shape
    top = int(torch.randint(0, height - size + 1, ()))
    left = int(torch.randint(0, width - size + 1, ()))
    window = (slice(top, top + size), slice(left, left + size))
    return (image[:, window[0], window[1]], label[window],
            None if weights is None else weights[window])


