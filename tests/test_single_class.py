"""A --num-classes 1 model (one sigmoid channel, as the LGG and flood recipes train) from training to mIoU.

The run trains one step on two images and validates on one, so its validation loss and the scored label map
can be worked out again by hand from the saved weights.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import get_miou_prediction
import miou
from tests.tiny_training import history, logits_and_target, run_args, sigmoid_dice_loss, write_squares
from utils.cli import run_main
from utils.io.checkpoint import load_checkpoint
from utils.train.loop import train

VAL_STEM = "sq_2"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_squares(tmp_path_factory.mktemp("single") / "squares",
                         {"train": ["sq_0", "sq_1"], "val": [VAL_STEM]})


def test_one_class_trains_with_bce_and_scores_by_the_sigmoid(data: Path, tmp_path: Path) -> None:
    assert train("unet", run_args(data, tmp_path, "r", "--num-classes", "1")) == 0
    run = tmp_path / "unet" / "r"
    checkpoint = load_checkpoint(run / "best.pt")
    assert checkpoint["model"]["num_classes"] == 1 and checkpoint["state_dict"]["head.weight"].shape[0] == 1
    assert checkpoint["class_names"] == ["background", "square"]
    logits, target = logits_and_target(run, data, VAL_STEM)
    expected = F.binary_cross_entropy_with_logits(logits[:, 0], (target == 1).float()).item() + \
        sigmoid_dice_loss(logits, target)
    assert history(run)[0]["val_loss"] == pytest.approx(expected, rel=1e-5)  # --loss ce+dice became bce+dice

    pred = tmp_path / "pred"
    assert run_main(get_miou_prediction.main, ["--checkpoint", str(run / "best.pt"), "--data", str(data),
                                               "--out", str(pred)]) == 0
    label = np.asarray(Image.open(pred / f"{VAL_STEM}.png"))
    assert 0 < label.sum() < label.size  # both classes predicted, so an argmax over the one channel would show
    # Foreground where the sigmoid passes 1/2, that is where the one logit is positive.
    assert np.array_equal(label, (logits[0, 0] > 0).numpy().astype(np.uint8))
    assert run_main(miou.main, ["--pred", str(pred), "--data", str(data)]) == 0
    report = json.loads((pred / "miou.json").read_text())
    truth = target[0].numpy()
    assert report["confusion_matrix"] == [[int(((truth == t) & (label == p)).sum()) for p in (0, 1)]
                                          for t in (0, 1)]
    assert report["images"] == 1 and 0 <= report["miou"] <= 1
    assert report["miou"] == pytest.approx(history(run)[0]["val_miou"], abs=1e-9)


def test_one_class_trains_with_focal_loss(data: Path, tmp_path: Path) -> None:
    assert train("unet", run_args(data, tmp_path, "r", "--num-classes", "1", "--loss", "focal")) == 0
    run = tmp_path / "unet" / "r"
    logits, target = logits_and_target(run, data, VAL_STEM)
    p = logits[:, 0].sigmoid()
    p_true = (p * (target == 1) + (1 - p) * (target != 1)).double()
    expected = (-((1 - p_true) ** 2) * p_true.log()).mean().item()
    assert history(run)[0]["val_loss"] == pytest.approx(expected, rel=1e-4)


def test_one_class_weighs_background_and_foreground(data: Path, tmp_path: Path, capsys) -> None:
    assert train("unet", run_args(data, tmp_path, "w", "--num-classes", "1", "--class-weights", "1,3")) == 0
    run = tmp_path / "unet" / "w"
    logits, target = logits_and_target(run, data, VAL_STEM)
    bce = F.binary_cross_entropy_with_logits(logits[:, 0], (target == 1).float(), reduction="none")
    weights = torch.where(target == 1, 3.0, 1.0)
    expected = ((bce * weights).sum() / weights.sum()).item() + sigmoid_dice_loss(logits, target)
    assert history(run)[0]["val_loss"] == pytest.approx(expected, rel=1e-5)
    capsys.readouterr()
    assert train("unet", run_args(data, tmp_path, "one", "--num-classes", "1", "--class-weights", "3")) == 2
    assert "1 values for background and foreground of a 1-class model; give 2" in capsys.readouterr().err
