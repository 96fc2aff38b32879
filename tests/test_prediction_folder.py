"""A prediction folder belongs to one checkpoint, data set and split; miou.py scores exactly what it records."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import get_miou_prediction
import miou
from tests.conftest import write_checkpoint
from tests.test_output_paths import digests, one_error_line
from utils.cli import run_main


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two different untrained 1-channel unet_bn checkpoints (runs A and B)."""
    folder = tmp_path_factory.mktemp("runs")
    return tuple(write_checkpoint(folder / name / "best.pt", class_names=["background", "square"], epoch=1)
                 for name in ("a", "b"))


def predict(checkpoint: Path, data: Path, out: Path, split: str) -> int:
    return run_main(get_miou_prediction.main, ["--checkpoint", str(checkpoint), "--data", str(data),
                                               "--split", split, "--out", str(out)])


def test_another_runs_folder_is_refused_and_left_as_it_was(square_dataset: Path, checkpoints, tmp_path: Path,
                                                           capsys) -> None:
    a, b = checkpoints
    folder = tmp_path / "F"
    assert predict(a, square_dataset, folder, "val") == 0
    before = digests(folder)
    assert predict(b, square_dataset, folder, "train") == 2
    line = one_error_line(capsys.readouterr().err)
    assert "holds the predictions of another run" in line and "split val (here: train)" in line
    assert digests(folder) == before
    assert predict(a, square_dataset, folder, "val") == 0  # the same run again is welcome


def test_a_folder_of_unrecorded_files_is_not_overwritten(square_dataset: Path, checkpoints, tmp_path: Path,
                                                         capsys) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "img_6.png").write_bytes(b"my own picture")
    assert predict(checkpoints[0], square_dataset, folder, "val") == 2
    assert "img_6.png, which no recorded prediction wrote" in one_error_line(capsys.readouterr().err)
    assert (folder / "img_6.png").read_bytes() == b"my own picture"


def test_miou_refuses_predictions_of_another_split(square_dataset: Path, checkpoints, tmp_path: Path,
                                                   capsys) -> None:
    # The stale maps of split val sit beside a record of split train, as an older version left them.
    folder = tmp_path / "F"
    assert predict(checkpoints[0], square_dataset, folder / "val", "val") == 0
    assert predict(checkpoints[1], square_dataset, folder, "train") == 0
    for stale in (folder / "val").glob("img_*.png"):
        shutil.copy(stale, folder)
    assert run_main(miou.main, ["--pred", str(folder), "--data", str(square_dataset), "--split", "val"]) == 2
    assert "holds predictions of split 'train'" in one_error_line(capsys.readouterr().err)
    assert not (folder / "miou.json").exists()


def test_miou_refuses_predictions_of_another_data_set(square_dataset: Path, checkpoints, tmp_path: Path,
                                                      capsys) -> None:
    copy = shutil.copytree(square_dataset, tmp_path / "copy")
    folder = tmp_path / "F"
    assert predict(checkpoints[0], square_dataset, folder, "val") == 0
    assert run_main(miou.main, ["--pred", str(folder), "--data", str(copy), "--split", "val"]) == 2
    assert "holds predictions of the data set" in one_error_line(capsys.readouterr().err)


def test_miou_refuses_a_split_that_changed_since_the_prediction(square_dataset: Path, checkpoints, tmp_path: Path,
                                                                capsys) -> None:
    folder = tmp_path / "F"
    assert predict(checkpoints[0], square_dataset, folder, "val") == 0
    shutil.copy(square_dataset / "Labels" / "img_0.png", folder / "img_0.png")  # a map no run recorded
    (square_dataset / "ImageSets" / "Segmentation" / "val.txt").write_text("img_0\nimg_6\nimg_7\n")
    assert run_main(miou.main, ["--pred", str(folder), "--data", str(square_dataset), "--split", "val"]) == 2
    assert "1 image(s) of the split not predicted, e.g. img_0" in one_error_line(capsys.readouterr().err)


def test_the_record_names_the_run_and_its_stems(square_dataset: Path, checkpoints, tmp_path: Path) -> None:
    folder = tmp_path / "F"
    assert predict(checkpoints[0], square_dataset, folder, "val") == 0
    record = json.loads((folder / "prediction.json").read_text())
    assert record["stems"] == ["img_6", "img_7"] and record["split"] == "val"
    assert Path(record["data"]) == square_dataset.resolve() and Path(record["checkpoint"]) == checkpoints[0].resolve()
    assert run_main(miou.main, ["--pred", str(folder), "--data", str(square_dataset)]) == 0
