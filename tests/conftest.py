"""Shared fixtures: tiny datasets written in the repository layout."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "datasets"

torch.set_num_threads(2)


@pytest.fixture(autouse=True, scope="session")
def speed_probe_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A speed-probe cache of the test session's own (the variable reaches spawned processes), not the user's."""
    folder = tmp_path_factory.mktemp("speed-probe-cache")
    os.environ["UNET_SEGMENTATION_CACHE"] = str(folder)
    return folder


def write_pair(root: Path, stem: str, image: np.ndarray, label: np.ndarray, image_suffix: str = ".png") -> None:
    """Write one image/label pair into <root>/Images and <root>/Labels."""
    (root / "Images").mkdir(parents=True, exist_ok=True)
    (root / "Labels").mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(root / "Images" / f"{stem}{image_suffix}")
    Image.fromarray(label).save(root / "Labels" / f"{stem}.png")


def write_split(root: Path, name: str, stems: list[str]) -> None:
    """Write ImageSets/Segmentation/<name>.txt."""
    folder = root / "ImageSets" / "Segmentation"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.txt").write_text("".join(f"{s}\n" for s in stems))


@pytest.fixture
def square_dataset(tmp_path: Path) -> Path:
    """Eight 32x32 grey images, each with a bright square that is class 1."""
    rng = np.random.default_rng(0)
    root = tmp_path / "squares"
    stems = []
    for index in range(8):
        label = np.zeros((32, 32), dtype=np.uint8)
        top, left = rng.integers(2, 18, size=2)
        label[top:top + 12, left:left + 12] = 1
        image = (rng.normal(60, 10, (32, 32)) + 120 * label).clip(0, 255).astype(np.uint8)
        stem = f"img_{index}"
        write_pair(root, stem, image, label)
        stems.append(stem)
    write_split(root, "train", stems[:6])
    write_split(root, "val", stems[6:])
    (root / "classes.txt").write_text("background\nsquare\n")
    return root
