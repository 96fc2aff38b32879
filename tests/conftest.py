"""Shared fixtures: tiny datasets in the repository layout, tiny training runs and checkpoints, shared data."""
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


def write_squares(root: Path) -> Path:
    """Eight 32x32 grey images, each with a bright square that is class 1; img_0-5 train, img_6-7 val."""
    rng = np.random.default_rng(0)
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


@pytest.fixture
def square_dataset(tmp_path: Path) -> Path:
    """The squares in the test's own folder: free to change."""
    return write_squares(tmp_path / "squares")


@pytest.fixture(scope="session")
def shared_square_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The squares once per test session: read them, never change them."""
    return write_squares(tmp_path_factory.mktemp("shared-squares") / "squares")


def tiny_train_args(data: Path, log_dir: Path, *extra: str, pin_speed: bool = True) -> list[str]:
    """Training options of a tiny CPU run into <log_dir>/<model>/r: 32 px, 1 epoch, batch 3, no loader workers,
    progress bars or overlays; an option repeated in extra overrides its value here.

    pin_speed fixes fp32 NCHW: the speed defaults are timed per machine, and a pinned run skips the probe and
    computes the same numbers on every machine.
    """
    speed = ["--no-amp", "--no-channels-last"] if pin_speed else []
    return ["--data", str(data), "--input-size", "32", "--epochs", "1", "--batch-size", "3", "--workers", "0",
            "--lr", "1e-3", "--no-progress", "--overlays", "0", *speed, "--log-dir", str(log_dir),
            "--run-name", "r", *extra]


@pytest.fixture(scope="session")
def trained_run(shared_square_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run folder (best.pt, last.pt, history.json) of a 1-channel unet_bn trained one epoch on the shared
    squares, once per test session: read it, never change it."""
    from utils.train.loop import train

    logs = tmp_path_factory.mktemp("trained-run")
    assert train("unet_bn", tiny_train_args(shared_square_dataset, logs, "--in-channels", "1")) == 0
    return logs / "unet_bn" / "r"


def untrained_checkpoint(name: str = "unet_bn", *, in_channels: int = 1, num_classes: int = 2, size: int = 32,
                         **fields: object) -> dict:
    """A checkpoint of a model with its seed-0 initial weights; fields add to or replace the defaults."""
    from nets import build_model
    from utils.runtime.device import default_normalization

    torch.manual_seed(0)
    model = build_model(name, num_classes=num_classes, in_channels=in_channels)
    return {"model": {"name": name, "num_classes": num_classes, "in_channels": in_channels},
            "class_names": [f"class{i}" for i in range(max(num_classes, 2))], "input_size": size,
            "input_mode": "letterbox", "normalization": default_normalization(in_channels),
            "state_dict": model.state_dict(), **fields}


def write_checkpoint(path: Path, name: str = "unet_bn", *, in_channels: int = 1, num_classes: int = 2, size: int = 32,
                     **fields: object) -> Path:
    """untrained_checkpoint(...) saved at path as this repository's checkpoint file."""
    from utils.io.checkpoint import save_checkpoint

    save_checkpoint(path, untrained_checkpoint(name, in_channels=in_channels, num_classes=num_classes, size=size,
                                               **fields))
    return path


def shared_dataset(*parts: str) -> Path:
    """A file or folder under ../shared/datasets, or skip the calling test where it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data set not present: {path}")
    return path
