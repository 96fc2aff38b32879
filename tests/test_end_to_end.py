"""Train -> get_miou_prediction -> miou -> predict on tiny data, and exact resume."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import get_miou_prediction
import miou
import predict
from tests.conftest import tiny_train_args, write_pair, write_split
from utils.cli import run_main
from utils.io.checkpoint import load_checkpoint
from utils.train.loop import train

TIMING = ("data_seconds", "step_seconds")


def curve(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in record.items() if k not in TIMING} for record in history]


def test_train_score_predict(square_dataset: Path, tmp_path: Path, capsys) -> None:
    logs = tmp_path / "logs"
    assert train("unet_bn", tiny_train_args(square_dataset, logs, "--epochs", "2", "--in-channels", "1",
                                            "--overlays", "1")) == 0
    run = logs / "unet_bn" / "r"
    assert {"last.pt", "best.pt", "history.json"} <= {p.name for p in run.iterdir()}
    assert any(p.name.startswith("events.out.tfevents") for p in run.iterdir())
    checkpoint = load_checkpoint(run / "best.pt")
    assert checkpoint["class_names"] == ["background", "square"] and checkpoint["epoch"] >= 1
    assert "optimizer" not in checkpoint  # best.pt is weights only; last.pt carries the training state
    assert {"optimizer", "scheduler", "rng"} <= set(load_checkpoint(run / "last.pt"))
    history = json.loads((run / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[1]["lr"] == pytest.approx(1e-3 * 0.92)

    pred = tmp_path / "pred"
    assert run_main(get_miou_prediction.main, ["--checkpoint", str(run / "best.pt"), "--data", str(square_dataset),
                                               "--out", str(pred)]) == 0
    assert sorted(p.name for p in pred.glob("*.png")) == ["img_6.png", "img_7.png"]
    label = np.asarray(Image.open(pred / "img_6.png"))
    assert label.shape == (32, 32) and set(np.unique(label)) <= {0, 1}

    assert run_main(miou.main, ["--pred", str(pred), "--data", str(square_dataset)]) == 0
    report = json.loads((pred / "miou.json").read_text())
    assert report["images"] == 2 and report["pixels"] == 2 * 32 * 32
    assert sum(map(sum, report["confusion_matrix"])) == 2 * 32 * 32
    # The in-training validation mIoU (letterboxed at the same size) equals the offline score.
    assert report["miou"] == pytest.approx(history[checkpoint["epoch"] - 1]["val_miou"], abs=1e-9)
    assert "mIoU" in capsys.readouterr().out

    out = tmp_path / "predict"
    image = square_dataset / "Images" / "img_0.png"
    assert run_main(predict.main, [str(image), "--checkpoint", str(run / "best.pt"), "--out", str(out)]) == 0
    overlay = Image.open(out / "img_0_overlay.png")
    assert overlay.size == (32, 32) and overlay.mode == "RGB"
    assert np.asarray(Image.open(out / "img_0_label.png")).shape == (32, 32)


def test_resume_matches_an_uninterrupted_run(square_dataset: Path, tmp_path: Path) -> None:
    common = ("--in-channels", "1", "--augment", "light", "--deterministic", "--seed", "3")
    assert train("att_unet", tiny_train_args(square_dataset, tmp_path / "a", "--epochs", "2", *common)) == 0
    assert train("att_unet", tiny_train_args(square_dataset, tmp_path / "b", "--epochs", "1", *common)) == 0
    first_half = tmp_path / "b" / "att_unet" / "r" / "last.pt"
    assert train("att_unet", tiny_train_args(square_dataset, tmp_path / "b", "--epochs", "2", *common,
                                             "--resume", str(first_half))) == 0
    straight = load_checkpoint(tmp_path / "a" / "att_unet" / "r" / "last.pt")
    resumed = load_checkpoint(first_half)
    assert resumed["epoch"] == straight["epoch"] == 2
    assert curve(resumed["history"]) == curve(straight["history"])
    for key, tensor in straight["state_dict"].items():
        assert torch.equal(tensor, resumed["state_dict"][key]), key


@pytest.mark.parametrize("crop", [False, True])
def test_augmenting_on_the_device_trains_like_augmenting_in_the_loader(square_dataset: Path, tmp_path: Path,
                                                                       crop: bool) -> None:
    common = ("--in-channels", "1", "--augment", "medical", "--deterministic", "--seed", "5",
              "--weight-map", *(("--crop", "--input-size", "24") if crop else ()))
    assert train("unet_bn", tiny_train_args(square_dataset, tmp_path / "loader", *common)) == 0
    assert train("unet_bn", tiny_train_args(square_dataset, tmp_path / "device", *common, "--augment-on-device")) == 0
    loader = load_checkpoint(tmp_path / "loader" / "unet_bn" / "r" / "last.pt")
    device = load_checkpoint(tmp_path / "device" / "unet_bn" / "r" / "last.pt")
    if crop:  # the device draws its own augmentation parameters after the loader's crop
        assert curve(device["history"]) != curve(loader["history"])
        assert device["history"][0]["train_loss"] == pytest.approx(loader["history"][0]["train_loss"], rel=0.2)
    else:  # the same seed per sample and the same operations: the same run
        assert curve(device["history"]) == curve(loader["history"])
        for key, tensor in loader["state_dict"].items():
            assert torch.equal(tensor, device["state_dict"][key]), key


def test_second_run_gets_a_new_folder(square_dataset: Path, tmp_path: Path) -> None:
    for _ in range(2):
        assert train("unet_bn", tiny_train_args(square_dataset, tmp_path, "--in-channels", "1")) == 0
    assert sorted(p.name for p in (tmp_path / "unet_bn").iterdir()) == ["r", "r-2"]


def test_bad_data_exits_with_code_2(square_dataset: Path, tmp_path: Path, capsys) -> None:
    (square_dataset / "Labels" / "img_1.png").write_bytes(b"")
    (square_dataset / "Images" / "img_7.png").unlink()
    assert train("unet", tiny_train_args(square_dataset, tmp_path)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: split 'train': 1 problem(s)") and "img_1.png: empty file" in err
    assert "split 'val'" in err and "img_7.*: image listed in the split but missing" in err
    assert not (tmp_path / "unet").exists()  # nothing written before the data was checked
    assert run_main(predict.main, [str(square_dataset / "Images" / "img_0.png"), "--checkpoint",
                                   str(tmp_path / "none.pt")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err


def test_miou_per_case_and_per_patient_dice(tmp_path: Path) -> None:
    # Patient A: image a1 label 2 px of class 1, prediction hits 1 (+1 false positive) -> Dice 2*1/(2+2) = 0.5
    # Patient A: image a2 has no class 1 in label or prediction -> undefined, excluded (or 1 with --empty-case one)
    # Patient B: image b1 label 4 px, prediction exact -> Dice 1.
    def maps(label_px: list[int], pred_px: list[int]) -> tuple[np.ndarray, np.ndarray]:
        label, pred = np.zeros((1, 8), np.uint8), np.zeros((1, 8), np.uint8)
        label[0, label_px], pred[0, pred_px] = 1, 1
        return label, pred

    cases = {"A_1": maps([0, 1], [1, 2]), "A_2": maps([], []), "B_1": maps([0, 1, 2, 3], [0, 1, 2, 3])}
    pred_dir = tmp_path / "pred"
    pred_dir.mkdir()
    for stem, (label, pred) in cases.items():
        write_pair(tmp_path, stem, label * 0, label)
        Image.fromarray(pred).save(pred_dir / f"{stem}.png")
    write_split(tmp_path, "val", list(cases))
    assert run_main(miou.main, ["--pred", str(pred_dir), "--data", str(tmp_path), "--group", "^(.)_"]) == 0
    cases_report = json.loads((pred_dir / "miou.json").read_text())["per_case"]
    assert cases_report["mean_image_dice"][1] == pytest.approx((0.5 + 1.0) / 2)
    # Per patient: A sums to tp 1, fp 1, fn 1 -> 0.5; B -> 1; mean 0.75.
    assert cases_report["mean_group_dice"][1] == pytest.approx(0.75) and cases_report["groups"] == 2
    assert run_main(miou.main, ["--pred", str(pred_dir), "--data", str(tmp_path), "--empty-case", "one"]) == 0
    assert json.loads((pred_dir / "miou.json").read_text())["per_case"]["mean_image_dice"][1] == \
        pytest.approx((0.5 + 1.0 + 1.0) / 3)


def test_bf16_autocast_on_the_cpu_trains_and_validates_in_fp32(square_dataset: Path, tmp_path: Path) -> None:
    assert train("unet_bn", tiny_train_args(square_dataset, tmp_path, "--in-channels", "1",
                                            "--amp", "--channels-last")) == 0
    checkpoint = load_checkpoint(tmp_path / "unet_bn" / "r" / "last.pt")
    assert all(t.dtype == torch.float32 for t in checkpoint["state_dict"].values() if t.is_floating_point())
    # validation runs in fp32 even when training autocasts, so the offline score is the printed one
    pred = tmp_path / "pred"
    assert run_main(get_miou_prediction.main, ["--checkpoint", str(tmp_path / "unet_bn" / "r" / "last.pt"),
                                               "--data", str(square_dataset), "--out", str(pred)]) == 0
    assert run_main(miou.main, ["--pred", str(pred), "--data", str(square_dataset)]) == 0
    offline = json.loads((pred / "miou.json").read_text())["miou"]
    assert offline == pytest.approx(checkpoint["history"][0]["val_miou"], abs=1e-9)


def test_channels_last_trains_the_same_model(square_dataset: Path, tmp_path: Path) -> None:
    for layout in ("--channels-last", "--no-channels-last"):
        assert train("unet_bn", tiny_train_args(square_dataset, tmp_path / layout, "--in-channels", "1",
                                                "--optimizer", "sgd", layout)) == 0
    nhwc = load_checkpoint(tmp_path / "--channels-last" / "unet_bn" / "r" / "last.pt")["state_dict"]
    nchw = load_checkpoint(tmp_path / "--no-channels-last" / "unet_bn" / "r" / "last.pt")["state_dict"]
    for key, tensor in nchw.items():
        torch.testing.assert_close(nhwc[key].contiguous(), tensor, rtol=1e-3, atol=1e-4)


def test_fused_and_unfused_adam_train_the_same_model(square_dataset: Path, tmp_path: Path) -> None:
    for flag in ("--fused-optimizer", "--no-fused-optimizer"):
        assert train("unet_bn", tiny_train_args(square_dataset, tmp_path / flag, "--epochs", "2", "--in-channels", "1",
                                                flag)) == 0
    fused = load_checkpoint(tmp_path / "--fused-optimizer" / "unet_bn" / "r" / "last.pt")
    loop = load_checkpoint(tmp_path / "--no-fused-optimizer" / "unet_bn" / "r" / "last.pt")
    assert fused["optimizer"]["param_groups"][0]["fused"] is True
    assert not loop["optimizer"]["param_groups"][0]["fused"]
    # Weights are not compared: the conv biases in front of batch norm have a true gradient of 0, and
    # Adam scales their rounding noise up to steps of the learning rate, differently in each kernel.
    for a, b in zip(fused["history"], loop["history"]):
        for key in ("train_loss", "val_loss", "val_miou"):
            assert a[key] == pytest.approx(b[key], rel=1e-3), key
