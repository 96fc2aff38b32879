"""Options and data a run is given are checked before anything is written: --seed, --run-name, png2txt.py --group,
the number of classes classes.txt names, and a training split without foreground."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import png2txt
from tests.conftest import tiny_train_args
from utils.cli import run_main
from utils.train.loop import train


def refused(capsys: pytest.CaptureFixture, code: int) -> str:
    """The one error line of a refused command (exit 2)."""
    error = capsys.readouterr().err
    assert code == 2 and error.startswith("error: ") and error.count("\n") == 1 and "Traceback" not in error
    return error


@pytest.mark.parametrize("seed", ["-1", str(2**32), "1.5"])
def test_seed_out_of_range_is_refused(square_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                      seed: str) -> None:
    logs = tmp_path / "logs"
    with pytest.raises(SystemExit) as exit_:
        train("unet_bn", tiny_train_args(square_dataset, logs, "--seed", seed))
    assert "--seed" in refused(capsys, exit_.value.code) and not logs.exists()


@pytest.mark.parametrize("name", ["../../escaped", "a/b", "..", ".", "a\\b", ""])
def test_run_name_stays_inside_the_log_folder(square_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                              name: str) -> None:
    logs = tmp_path / "deep" / "logs"
    with pytest.raises(SystemExit) as exit_:
        train("unet_bn", tiny_train_args(square_dataset, logs, "--run-name", name))
    assert "--run-name" in refused(capsys, exit_.value.code)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["squares"]


def test_group_without_capture_group_is_refused(square_dataset: Path, capsys: pytest.CaptureFixture) -> None:
    splits = square_dataset / "ImageSets" / "Segmentation"
    before = {p.name: p.read_bytes() for p in splits.iterdir()}
    error = refused(capsys, run_main(png2txt.main, ["--data", str(square_dataset), "--group", r"^img_\d"]))
    assert "has no capture group" in error
    error = refused(capsys, run_main(png2txt.main, ["--data", str(square_dataset), "--group", r"^(img)_\d"]))
    assert "puts all 8 images in one group ('img')" in error
    assert {p.name: p.read_bytes() for p in splits.iterdir()} == before
    assert run_main(png2txt.main, ["--data", str(square_dataset), "--group", r"^img_(\d)"]) == 0


def test_too_many_classes_in_classes_txt_names_the_file(square_dataset: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    (square_dataset / "classes.txt").write_text("".join(f"class{i}\n" for i in range(300)))
    logs = tmp_path / "logs"
    error = refused(capsys, train("unet_bn", tiny_train_args(square_dataset, logs)))
    assert "classes.txt names 300 classes; a model has at most 255" in error and "--num-classes" not in error
    assert not logs.exists()


def test_an_all_background_training_split_gets_a_note(square_dataset: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    for label in (square_dataset / "Labels").iterdir():
        Image.fromarray(np.zeros((32, 32), np.uint8)).save(label)
    assert train("unet_bn", tiny_train_args(square_dataset, tmp_path / "logs", "--in-channels", "1")) == 0
    err = capsys.readouterr().err
    assert "note: every label of the training split 'train' (6 images of" in err and "learns no class" in err


def test_a_split_with_foreground_gets_no_note(square_dataset: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    from utils.data.dataset import SegmentationDataset

    assert SegmentationDataset(square_dataset, "train", 2, 1, 32).has_foreground
