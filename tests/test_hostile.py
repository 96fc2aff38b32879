"""Hostile input: every bad option, file and fault is one clear line, a non-zero exit, and nothing half-done."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import get_miou_prediction
import import_dataset
import miou
import predict
import utils.train.loop
from tests.conftest import tiny_train_args, write_checkpoint, write_split
from utils.cli import run_main
from utils.errors import UserError
from utils.infer.predictor import Predictor
from utils.io.checkpoint import load_checkpoint, save_checkpoint
from utils.train.loop import train
from utils.train.run_folder import lock_run_dir
from utils.train.state import Run


def one_error_line(text: str) -> str:
    """The stderr of a refused command: exactly one error line (a speed probe's 'note:' lines may precede it)."""
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("note: ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), text
    assert "Traceback" not in text
    return lines[0]


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid best.pt of a 1-channel unet_bn (untrained weights)."""
    return write_checkpoint(tmp_path_factory.mktemp("ckpt") / "best.pt", class_names=["background", "square"],
                            epoch=1)


def edited(source: Path, target: Path, **changes: object) -> Path:
    """A copy of a checkpoint with some fields replaced, tagged as a real one."""
    checkpoint = torch.load(source, weights_only=True)
    for key, value in changes.items():
        if key in ("num_classes", "in_channels"):
            checkpoint["model"][key] = value
        else:
            checkpoint[key] = value
    torch.save(checkpoint, target)
    return target


@pytest.mark.parametrize("option", [
    ("--lr", "inf"), ("--lr", "nan"), ("--lr", "-1"), ("--lr-decay", "nan"), ("--lr-decay", "0"),
    ("--lr-decay", "1.5"), ("--epochs", "0"), ("--num-classes", "0"), ("--input-size", "7"), ("--input-size", "0"),
    ("--input-size", "-5"), ("--batch-size", "0"), ("--workers", "-1"), ("--loss", "foo"), ("--augment", "wild"),
])
def test_bad_training_options_are_one_line_before_anything_is_written(square_dataset: Path, tmp_path: Path,
                                                                       capsys, option: tuple[str, str]) -> None:
    with pytest.raises(SystemExit) as stop:
        train("unet_bn", tiny_train_args(square_dataset, tmp_path / "logs", *option))
    assert stop.value.code == 2
    line = one_error_line(capsys.readouterr().err)
    assert option[0] in line and ("must be" in line or "choice" in line or "unknown loss" in line)
    assert not (tmp_path / "logs").exists()


@pytest.mark.parametrize("script, arguments, needle", [
    (predict, ["x.png", "--checkpoint", "c.pt", "--tiles", "--overlap", "-1"], "--overlap"),
    (predict, ["x.png", "--checkpoint", "c.pt", "--overlap", "1"], "--overlap"),
    (predict, ["x.png", "--checkpoint", "c.pt", "--keep-largest", "0"], "--keep-largest"),
    (predict, ["x.png", "--checkpoint", "c.pt", "--window", "wide"], "--window"),
    (get_miou_prediction, ["--checkpoint", "c.pt", "--batch-size", "0"], "--batch-size"),
    (miou, ["--pred", "p", "--num-classes", "0"], "--num-classes"),
])
def test_bad_scoring_options_are_one_line(script, arguments: list[str], needle: str, capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        script.main(arguments)
    assert stop.value.code == 2
    assert needle in one_error_line(capsys.readouterr().err)


def test_diverged_validation_never_becomes_best_and_stops_the_run(square_dataset: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    original = utils.train.loop.train_one_epoch

    def diverge_in_epoch_two(run: Run, epoch: int):
        stats = original(run, epoch)
        if epoch == 1:  # what a learning rate turned NaN does to the weights
            with torch.no_grad():
                next(run.net.parameters()).fill_(float("nan"))
        return stats

    monkeypatch.setattr(utils.train.loop, "train_one_epoch", diverge_in_epoch_two)
    assert train("unet_bn", tiny_train_args(square_dataset, tmp_path, "--epochs", "3", "--in-channels", "1")) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "validation in epoch 2 gave NaN or infinite logits or loss" in line and "best.pt (epoch 1" in line
    run = tmp_path / "unet_bn" / "r"
    best, last = load_checkpoint(run / "best.pt"), load_checkpoint(run / "last.pt")
    assert best["epoch"] == 1 and last["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in best["state_dict"].values() if t.is_floating_point())
    assert [record["epoch"] for record in json.loads((run / "history.json").read_text())] == [1]


def test_non_finite_weights_are_never_saved_nor_used(tiny_checkpoint: Path, tmp_path: Path, capsys) -> None:
    checkpoint = torch.load(tiny_checkpoint, weights_only=True)
    name = next(iter(checkpoint["state_dict"]))
    checkpoint["state_dict"][name] = torch.full_like(checkpoint["state_dict"][name], float("nan"))
    with pytest.raises(UserError, match="hold NaN or infinite values"):
        save_checkpoint(tmp_path / "nan.pt", {k: v for k, v in checkpoint.items() if k not in ("format", "version")})
    assert not (tmp_path / "nan.pt").exists()
    torch.save(checkpoint, tmp_path / "nan.pt")  # as an older version of this code could have written it
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((32, 32), dtype=np.uint8)).save(image)
    assert run_main(predict.main, [str(image), "--checkpoint", str(tmp_path / "nan.pt"),
                                   "--out", str(tmp_path / "o")]) == 2
    assert "1 of" in one_error_line(capsys.readouterr().err) and not (tmp_path / "o").exists()


@pytest.mark.parametrize("content, kind", [
    (b"\x89PNG\r\n\x1a\n" + b"\0" * 20, "a PNG image"), (b'{"model": "unet"}', "a JSON file"),
    (b"stem,dice\na,0.5\n", "a text file"), (b"", "an empty file"),
])
def test_wrong_file_types_as_checkpoint_say_what_they_are(tmp_path: Path, content: bytes, kind: str) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(content)
    with pytest.raises(UserError, match=f"is {kind}, not a checkpoint"):
        load_checkpoint(path)


@pytest.mark.parametrize("changes, needle", [
    ({"num_classes": "abc"}, "num_classes is 'abc'"), ({"input_size": -3}, "input_size is -3"),
    ({"normalization": {}}, "normalization is {}"), ({"class_names": []}, "class_names lists 0 names for 2 classes"),
])
def test_edited_checkpoint_fields_are_refused(tiny_checkpoint: Path, tmp_path: Path, changes: dict,
                                              needle: str) -> None:
    path = edited(tiny_checkpoint, tmp_path / "edited.pt", **changes)
    with pytest.raises(UserError, match="edited or damaged") as error:
        load_checkpoint(path)
    assert needle in str(error.value)


def test_split_file_that_is_not_utf8(square_dataset: Path, tmp_path: Path, capsys) -> None:
    (square_dataset / "ImageSets" / "Segmentation" / "train.txt").write_bytes(b"img_0\n\xff\xfeimg_1\n")
    assert train("unet_bn", tiny_train_args(square_dataset, tmp_path, "--in-channels", "1")) == 2
    assert "is not UTF-8 text (byte 0xff at position 6)" in one_error_line(capsys.readouterr().err)


def test_decompression_bomb_names_the_limit_and_how_to_raise_it(square_dataset: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # so a 32x32 image stands in for a 20000x20000 one
    assert train("unet_bn", tiny_train_args(square_dataset, tmp_path, "--in-channels", "1")) == 2
    err = capsys.readouterr().err
    assert "safety limit of 100 pixels" in err and "SEGMENTATION_MAX_IMAGE_PIXELS=400" in err
    assert "Traceback" not in err


def test_all_ignore_label_is_refused_by_validation(square_dataset: Path, tmp_path: Path, capsys) -> None:
    Image.fromarray(np.full((32, 32), 255, dtype=np.uint8)).save(square_dataset / "Labels" / "img_2.png")
    assert train("unet_bn", tiny_train_args(square_dataset, tmp_path, "--in-channels", "1")) == 2
    assert "img_2.png: every pixel is 255" in capsys.readouterr().err


def test_resume_restores_options_and_refuses_contradictions(square_dataset: Path, tmp_path: Path, capsys) -> None:
    assert train("unet_bn", tiny_train_args(square_dataset, tmp_path, "--in-channels", "1", "--augment", "light")) == 0
    last = tmp_path / "unet_bn" / "r" / "last.pt"
    capsys.readouterr()
    assert train("unet_bn", ["--resume", str(last), "--num-classes", "3", "--input-size", "64"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "--num-classes 3 (the run used 2)" in line and "--input-size 64 (the run used 32)" in line
    # The resume command as printed: only the checkpoint and, as an allowed override, the epochs.
    assert train("unet_bn", ["--resume", str(last), "--epochs", "2", "--no-progress"]) == 0
    resumed = load_checkpoint(last)
    assert resumed["epoch"] == 2
    assert resumed["args"]["data"] == str(square_dataset) and resumed["args"]["augment"] == "light"
    assert resumed["args"]["input_size"] == 32 and resumed["args"]["in_channels"] == 1


def test_resuming_a_finished_run_asks_for_more_epochs(square_dataset: Path, tmp_path: Path, capsys) -> None:
    assert train("unet_bn", tiny_train_args(square_dataset, tmp_path, "--in-channels", "1")) == 0
    assert train("unet_bn", ["--resume", str(tmp_path / "unet_bn" / "r" / "last.pt")]) == 2
    assert "has already trained 1 of --epochs 1" in capsys.readouterr().err


def test_a_run_folder_has_one_writer_and_stale_temp_files_go(square_dataset: Path, tmp_path: Path, capsys) -> None:
    assert train("unet_bn", tiny_train_args(square_dataset, tmp_path, "--in-channels", "1")) == 0
    run = tmp_path / "unet_bn" / "r"
    stale = run / ".last.pt.abc123.tmp"  # what a SIGKILL during a checkpoint write leaves
    stale.write_bytes(b"x" * 1000)
    holder = lock_run_dir(run)
    try:
        assert not stale.exists()
        assert train("unet_bn", ["--resume", str(run / "last.pt"), "--epochs", "2"]) == 2
        assert f"in use by another training process (PID {os.getpid()})" in capsys.readouterr().err
    finally:
        holder.close()
    assert train("unet_bn", ["--resume", str(run / "last.pt"), "--epochs", "2", "--no-progress"]) == 0


def test_history_is_strict_json(tmp_path: Path) -> None:
    from utils.io.files import write_json

    write_json(tmp_path / "h.json", [{"val_loss": float("nan"), "lr": float("inf"), "epoch": 1}])
    text = (tmp_path / "h.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == [{"val_loss": None, "lr": None, "epoch": 1}]


def test_stopped_prediction_is_marked_incomplete_and_not_scored(square_dataset: Path, tmp_path: Path,
                                                               tiny_checkpoint: Path, monkeypatch, capsys) -> None:
    write_split(square_dataset, "all", [f"img_{i}" for i in range(8)])
    calls = {"n": 0}
    original = Predictor.load

    def fail_on_third(self: Predictor, path):
        calls["n"] += 1
        if calls["n"] == 3:
            raise UserError(f"{path}: cannot read image (broken)")
        return original(self, path)

    monkeypatch.setattr(Predictor, "load", fail_on_third)
    out = tmp_path / "pred"
    arguments = ["--checkpoint", str(tiny_checkpoint), "--data", str(square_dataset), "--split", "all",
                 "--out", str(out), "--batch-size", "1"]
    assert run_main(get_miou_prediction.main, arguments) == 2
    assert (out / "INCOMPLETE").is_file() and not (out / "prediction.json").exists()
    capsys.readouterr()
    assert run_main(miou.main, ["--pred", str(out), "--data", str(square_dataset), "--split", "all"]) == 2
    assert "unfinished prediction" in one_error_line(capsys.readouterr().err)
    monkeypatch.setattr(Predictor, "load", original)
    assert run_main(get_miou_prediction.main, arguments) == 0
    assert not (out / "INCOMPLETE").exists() and (out / "prediction.json").is_file()


def test_output_paths_that_are_folders_or_files(square_dataset: Path, tmp_path: Path, tiny_checkpoint: Path,
                                                capsys) -> None:
    labels = square_dataset / "Labels"
    folder = tmp_path / "report_folder"
    folder.mkdir()
    assert run_main(miou.main, ["--pred", str(labels), "--data", str(square_dataset), "--json", str(folder)]) == 2
    assert f"{folder} is a folder" in one_error_line(capsys.readouterr().err)
    blocker = tmp_path / "taken"
    blocker.write_text("")
    image = square_dataset / "Images" / "img_0.png"
    assert run_main(predict.main, [str(image), "--checkpoint", str(tiny_checkpoint), "--out", str(blocker)]) == 2
    assert f"a file stands where a folder is needed ({blocker})" in one_error_line(capsys.readouterr().err)


def test_rgb_image_with_a_grey_model_says_what_to_do(tmp_path: Path, tiny_checkpoint: Path, capsys) -> None:
    image = tmp_path / "colour.png"
    rgb = np.zeros((32, 32, 3), dtype=np.uint8)
    rgb[..., 0] = 200
    Image.fromarray(rgb).save(image)
    assert run_main(predict.main, [str(image), "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "o")]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "convert the image to grey" in line and "use --in-channels 3" not in line


def test_import_into_an_unwritable_place_is_one_line(tmp_path: Path, capsys) -> None:
    images = tmp_path / "img"
    images.mkdir()
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(images / "a.png")
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(images / "a_mask.png")
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert import_dataset.main(["pairs", str(images), str(images), "--mask-suffix", "_mask", "--threshold", "127",
                                "--out", str(blocker / "ds")]) == 2
    assert "cannot write into" in one_error_line(capsys.readouterr().err)
