"""get_miou_prediction.py scales 16-bit dataset images by --window / --percentile, as predict.py does."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import get_miou_prediction
from nets import build_model
from utils.cli import run_main
from utils.io.checkpoint import save_checkpoint
from utils.runtime.device import default_normalization


def sixteen_bit_dataset(root: Path) -> Path:
    """Two 32x32 16-bit grey images (values 0..2000) with labels, listed in val.txt."""
    for folder in ("Images", "Labels", "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for stem in ("a", "b"):
        Image.fromarray(rng.integers(0, 2000, (32, 32)).astype(np.uint16)).save(root / "Images" / f"{stem}.png")
        Image.fromarray(np.zeros((32, 32), np.uint8)).save(root / "Labels" / f"{stem}.png")
    (root / "ImageSets/Segmentation/val.txt").write_text("a\nb\n")
    return root


def grey_checkpoint(path: Path) -> Path:
    torch.manual_seed(0)
    model = build_model("unet_bn", num_classes=2, in_channels=1)
    save_checkpoint(path, {"model": {"name": "unet_bn", "num_classes": 2, "in_channels": 1},
                           "class_names": ["background", "object"], "input_size": 32, "input_mode": "letterbox",
                           "normalization": default_normalization(1), "state_dict": model.state_dict()})
    return path


def probabilities(out: Path) -> np.ndarray:
    with np.load(out / "a_probabilities.npz") as data:
        return data[data.files[0]].astype(np.float32)


def test_window_and_percentile_reach_the_predictor(tmp_path: Path, capsys) -> None:
    data, checkpoint = sixteen_bit_dataset(tmp_path / "d"), grey_checkpoint(tmp_path / "c.pt")
    base = ["--checkpoint", str(checkpoint), "--data", str(data), "--split", "val", "--device", "cpu",
            "--save-probabilities"]
    assert run_main(get_miou_prediction.main, base + ["--out", str(tmp_path / "none")]) == 2
    assert "--window" in capsys.readouterr().err  # 16-bit pixels need a scaling rule
    outputs = {}
    for name, option in (("window", ["--window", "200,100"]), ("percentile", ["--percentile", "1,99"])):
        assert run_main(get_miou_prediction.main, base + option + ["--out", str(tmp_path / name)]) == 0
        outputs[name] = probabilities(tmp_path / name)
        recorded = json.loads((tmp_path / name / "prediction.json").read_text())["intensity"]
        assert recorded is not None and recorded["kind"] == name
    assert not np.allclose(outputs["window"], outputs["percentile"])
