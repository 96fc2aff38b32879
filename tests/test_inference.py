"""Sliding-window inference and crop-mode training/prediction."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import get_miou_prediction
import miou
from tests.conftest import tiny_train_args, write_checkpoint
from utils.cli import run_main
from utils.data.dataset import random_crop
from utils.io.checkpoint import load_checkpoint
from utils.runtime.forward import blend_weights, sliding_window, tile_starts
from utils.train.loop import train


def threshold_probabilities(tiles: torch.Tensor) -> torch.Tensor:
    """A stand-in model: class 1 where the first channel exceeds 127, as one-hot probabilities."""
    foreground = (tiles[:, :1] > 127).float()
    return torch.cat([1 - foreground, foreground], dim=1)


def test_tile_starts_cover_the_length() -> None:
    assert tile_starts(10, 16, 0.5) == [0]
    assert tile_starts(40, 16, 0.25) == [0, 12, 24]
    assert tile_starts(32, 16, 0.0) == [0, 16]
    assert blend_weights(4).tolist()[0] == [0.25, 0.5, 0.5, 0.25]


@pytest.mark.parametrize("height, width", [(37, 53), (10, 70), (16, 16), (20, 9), (5, 7)])  # wider, taller, smaller
def test_sliding_window_reassembles_the_image(height: int, width: int) -> None:
    torch.manual_seed(0)
    image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8)
    probs = sliding_window(threshold_probabilities, image, tile=16, overlap=0.25, batch_size=3)
    assert probs.shape == (2, height, width)
    torch.testing.assert_close(probs.sum(dim=0), torch.ones(height, width))
    assert torch.equal(probs.argmax(dim=0), (image[0] > 127).long())


def test_random_crop_cuts_the_same_window_everywhere() -> None:
    image = torch.arange(64, dtype=torch.uint8).reshape(1, 8, 8)
    torch.manual_seed(1)
    cropped, label, weights = random_crop(image, image[0].clone(), image[0].float(), 4)
    assert cropped.shape == (1, 4, 4) and torch.equal(cropped[0], label) and torch.equal(label.float(), weights)


def test_crop_training_validates_and_predicts_by_tiles(square_dataset: Path, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    assert train("unet_bn", tiny_train_args(square_dataset, logs, "--crop", "--input-size", "16",
                                            "--in-channels", "1")) == 0
    checkpoint = load_checkpoint(logs / "unet_bn" / "r" / "best.pt")
    assert checkpoint["input_mode"] == "crop" and checkpoint["input_size"] == 16
    pred = tmp_path / "pred"
    assert run_main(get_miou_prediction.main, ["--checkpoint", str(logs / "unet_bn" / "r" / "best.pt"),
                                               "--data", str(square_dataset), "--out", str(pred)]) == 0
    assert run_main(miou.main, ["--pred", str(pred), "--data", str(square_dataset)]) == 0
    report = json.loads((pred / "miou.json").read_text())
    assert report["pixels"] == 2 * 32 * 32  # full-resolution predictions, not 16x16 ones
    assert report["miou"] == pytest.approx(checkpoint["history"][0]["val_miou"], abs=1e-9)


def test_amp_scoring_autocasts_and_stays_close_to_fp32(square_dataset: Path, tmp_path: Path) -> None:
    from utils.errors import UserError
    from utils.infer.loading import load_predictor
    from utils.infer.predictor import Predictor

    checkpoint = write_checkpoint(tmp_path / "m.pt", class_names=["background", "square"])
    images = torch.randint(0, 256, (2, 1, 32, 32), dtype=torch.uint8)
    fp32, amp = Predictor(checkpoint, "cpu"), Predictor(checkpoint, "cpu", amp=True)
    assert fp32.amp_dtype is None and amp.amp_dtype == torch.bfloat16
    exact, autocast = fp32.probabilities(images), amp.probabilities(images)
    assert autocast.dtype == torch.float32 and not torch.equal(autocast, exact)  # bf16 rounding shows
    torch.testing.assert_close(autocast, exact, atol=0.05, rtol=0)
    pred = tmp_path / "pred"
    assert run_main(get_miou_prediction.main, ["--checkpoint", str(checkpoint), "--data", str(square_dataset),
                                               "--out", str(pred), "--amp", "--tiles"]) == 0
    assert json.loads((pred / "prediction.json").read_text())["amp"] is True
    with pytest.raises(UserError, match="--amp applies to PyTorch checkpoints"):
        load_predictor(tmp_path / "m.onnx", "cpu", amp=True)
