"""Resuming a run: a moved data set, paths that name the same folder, and options repeated as the run used them."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import tiny_train_args
from utils.train.loop import train


@pytest.fixture
def one_epoch(square_dataset: Path, tmp_path: Path) -> tuple[Path, Path]:
    """(data set, run folder) of a 1-epoch unet_bn run whose classes come from classes.txt."""
    assert train("unet_bn", tiny_train_args(square_dataset, tmp_path / "logs", "--in-channels", "1")) == 0
    return square_dataset, tmp_path / "logs" / "unet_bn" / "r"


def resume(run: Path, *extra: str) -> int:
    return train("unet_bn", ["--resume", str(run), "--epochs", "2", "--no-progress", *extra])


def epochs(run: Path) -> int:
    return len(json.loads((run / "history.json").read_text()))


def test_moved_data_set_resumes_with_its_new_folder(one_epoch: tuple[Path, Path], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    data, run = one_epoch
    moved = shutil.move(str(data), tmp_path / "moved")
    capsys.readouterr()
    assert resume(run) == 2  # the old folder is gone: say so, and how to go on
    assert "is not there any more; if it moved, give --data" in capsys.readouterr().err
    assert resume(run, "--data", str(moved)) == 0
    assert epochs(run) == 2


def test_other_data_is_refused(one_epoch: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data, run = one_epoch
    other = Path(shutil.copytree(data, tmp_path / "other"))
    Image.fromarray(np.zeros((40, 32), np.uint8)).save(other / "Labels" / "img_0.png")  # another label size
    Image.fromarray(np.zeros((40, 32), np.uint8)).save(other / "Images" / "img_0.png")
    before = sorted(p.name for p in run.iterdir())
    capsys.readouterr()
    assert resume(run, "--data", str(other)) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and "is not the run's data set" in error and "split 'train'" in error
    assert sorted(p.name for p in run.iterdir()) == before and epochs(run) == 1


def test_same_folder_as_absolute_path_and_own_class_count(one_epoch: tuple[Path, Path], tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    data, run = one_epoch
    monkeypatch.chdir(data.parent)
    relative = os.path.relpath(data)
    assert relative != str(data)
    assert resume(run, "--data", relative, "--num-classes", "2") == 0
    assert epochs(run) == 2


def test_contradicting_class_count_names_the_runs_own(one_epoch: tuple[Path, Path],
                                                      capsys: pytest.CaptureFixture) -> None:
    _, run = one_epoch
    capsys.readouterr()
    assert resume(run, "--num-classes", "3") == 2
    assert "--num-classes 3 (the run used 2)" in capsys.readouterr().err
