"""Outputs never overwrite inputs: every script refuses, in one line and before writing, an output that is an input
file or lies in a data set's Images/, Labels/ or ImageSets/; and a refusal leaves nothing written."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import export
import get_miou_prediction
import miou
import predict
from tests.conftest import write_checkpoint, write_pair, write_split
from tests.volume_data import write_nifti
from utils.cli import run_main
from utils.errors import UserError

DATASET_FOLDERS = ("Images", "Labels", "ImageSets")


def one_error_line(text: str) -> str:
    """The stderr of a refused command: exactly one error line, no traceback."""
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("note: ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), text
    return lines[0]


def digests(folder: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file below `folder`."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained 1-channel unet_bn best.pt."""
    return write_checkpoint(tmp_path_factory.mktemp("ckpt") / "best.pt", class_names=["background", "square"],
                            epoch=1)


def predict_split(checkpoint: Path, data: Path, out: Path, split: str = "val") -> None:
    assert run_main(get_miou_prediction.main, ["--checkpoint", str(checkpoint), "--data", str(data),
                                               "--split", split, "--out", str(out)]) == 0


def test_predictions_into_the_labels_folder_are_refused(square_dataset: Path, checkpoint: Path, capsys) -> None:
    before = digests(square_dataset)
    assert run_main(get_miou_prediction.main, ["--checkpoint", str(checkpoint), "--data", str(square_dataset),
                                               "--out", str(square_dataset / "Labels")]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "refusing to write" in line and "Labels" in line
    assert digests(square_dataset) == before  # no label replaced, no INCOMPLETE marker


def test_score_report_over_a_label_is_refused(square_dataset: Path, checkpoint: Path, tmp_path: Path,
                                              capsys) -> None:
    predict_split(checkpoint, square_dataset, tmp_path / "pred")
    before = digests(square_dataset)
    label = square_dataset / "Labels" / "img_6.png"
    assert run_main(miou.main, ["--pred", str(tmp_path / "pred"), "--data", str(square_dataset),
                                "--json", str(label)]) == 2
    assert "refusing to replace" in one_error_line(capsys.readouterr().err)
    assert run_main(miou.main, ["--pred", str(tmp_path / "pred"), "--data", str(square_dataset),
                                "--json", str(square_dataset / "Labels" / "miou.json")]) == 2
    assert "data set folder" in one_error_line(capsys.readouterr().err)
    assert digests(square_dataset) == before


def test_score_report_replaces_only_its_own_json(square_dataset: Path, checkpoint: Path, tmp_path: Path,
                                                 capsys) -> None:
    predict_split(checkpoint, square_dataset, tmp_path / "pred")
    notes = tmp_path / "scores" / "notes.json"
    notes.parent.mkdir()
    notes.write_text('{"my": "notes"}\n')
    arguments = ["--pred", str(tmp_path / "pred"), "--data", str(square_dataset)]
    assert run_main(miou.main, [*arguments, "--json", str(notes)]) == 2
    assert "not a report of miou.py" in one_error_line(capsys.readouterr().err)
    assert notes.read_text() == '{"my": "notes"}\n' and sorted(os.listdir(notes.parent)) == ["notes.json"]
    own = tmp_path / "scores" / "miou.json"
    assert run_main(miou.main, [*arguments, "--json", str(own)]) == 0
    assert run_main(miou.main, [*arguments, "--json", str(own)]) == 0  # its own report: replaced
    assert "miou" in json.loads(own.read_text())


def test_an_input_named_like_an_output_is_never_overwritten(tmp_path: Path, checkpoint: Path, capsys) -> None:
    folder = tmp_path / "dir"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "a_label.png"):
        Image.fromarray(rng.integers(0, 255, (32, 32), dtype=np.uint8)).save(folder / name)
    before = digests(folder)
    assert run_main(predict.main, ["--checkpoint", str(checkpoint), str(folder / "a.png"), str(folder / "a_label.png"),
                                   "--out", str(folder)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"it is the input {folder / 'a_label.png'}" in line
    assert digests(folder) == before


def test_predict_refuses_an_output_in_a_data_set_folder(square_dataset: Path, checkpoint: Path, capsys) -> None:
    before = digests(square_dataset)
    image = square_dataset / "Images" / "img_0.png"
    assert run_main(predict.main, ["--checkpoint", str(checkpoint), str(image),
                                   "--out", str(square_dataset / "Images")]) == 2
    assert "data set folder" in one_error_line(capsys.readouterr().err)
    assert digests(square_dataset) == before


def test_export_refuses_an_output_in_a_data_set_folder(square_dataset: Path, checkpoint: Path, capsys) -> None:
    before = digests(square_dataset)
    assert run_main(export.main, ["--checkpoint", str(checkpoint), "--format", "torchscript", "--data",
                                  str(square_dataset), "--out", str(square_dataset / "Images" / "model.ts")]) == 2
    assert "data set folder" in one_error_line(capsys.readouterr().err)
    assert digests(square_dataset) == before


def test_check_outputs_sees_hard_links_and_only_real_data_set_folders(tmp_path: Path) -> None:
    from utils.io.outputs import check_outputs, dataset_folder_of

    source = tmp_path / "in.png"
    source.write_bytes(b"x")
    os.link(source, tmp_path / "alias.png")
    with pytest.raises(UserError, match="it is the input"):
        check_outputs([tmp_path / "alias.png"], [source])
    with pytest.raises(UserError, match="it is the input"):
        check_outputs([tmp_path / "sub" / ".." / "in.png"], [source])
    (tmp_path / "Labels").mkdir()  # a lone folder called Labels is not a data set's
    assert dataset_folder_of(tmp_path / "Labels" / "x.png", DATASET_FOLDERS) is None
    (tmp_path / "Images").mkdir()
    assert dataset_folder_of(tmp_path / "Labels" / "x.png", DATASET_FOLDERS) == (tmp_path / "Labels").resolve()
    check_outputs([tmp_path / "out" / "in.png"], [source], DATASET_FOLDERS)


# Written before the error: every check runs before the first write.

def test_overlay_slices_are_checked_before_the_label_volume_is_written(tmp_path: Path, checkpoint: Path,
                                                                       capsys) -> None:
    hu = np.random.default_rng(0).integers(-200, 200, (32, 32, 6)).astype(np.int16)
    volume = write_nifti(tmp_path / "ct.nii.gz", hu, np.diag([1.0, 1.0, 2.0, 1.0]))
    out = tmp_path / "out"
    assert run_main(predict.main, ["--checkpoint", str(checkpoint), str(volume), "--window", "400,40",
                                   "--overlay", "999", "--out", str(out)]) == 2
    assert "--overlay" in one_error_line(capsys.readouterr().err)
    assert not out.exists() or not any(out.iterdir())


def test_score_files_that_would_replace_a_prediction_are_refused_before_miou_json(tmp_path: Path, checkpoint: Path,
                                                                                  capsys) -> None:
    data = tmp_path / "data"
    for stem in ("scores", "other"):
        write_pair(data, stem, np.zeros((32, 32), np.uint8), np.zeros((32, 32), np.uint8))
    write_split(data, "val", ["scores", "other"])
    pred = tmp_path / "pred"
    predict_split(checkpoint, data, pred)
    before = digests(pred)
    assert run_main(miou.main, ["--pred", str(pred), "--data", str(data)]) == 2
    assert "image named 'scores'" in one_error_line(capsys.readouterr().err)
    assert digests(pred) == before  # no miou.json


def test_too_many_classes_for_the_report_are_refused_before_miou_json(square_dataset: Path, checkpoint: Path,
                                                                      tmp_path: Path, capsys) -> None:
    pred = tmp_path / "pred"
    predict_split(checkpoint, square_dataset, pred)
    before = digests(pred)
    assert run_main(miou.main, ["--pred", str(pred), "--data", str(square_dataset), "--num-classes", "253",
                                "--report"]) == 2
    assert "at most 252 classes" in one_error_line(capsys.readouterr().err)
    assert digests(pred) == before


@pytest.mark.parametrize("damage", ["split", "volumes"])
def test_bad_inputs_of_get_miou_prediction_leave_no_folder(square_dataset: Path, checkpoint: Path, tmp_path: Path,
                                                           damage: str, capsys) -> None:
    if damage == "split":
        (square_dataset / "ImageSets" / "Segmentation" / "val.txt").write_bytes(b"img_6\n\xff\xfe\n")
    else:
        (square_dataset / "volumes.json").write_text("{not json")
    out = tmp_path / "pred"
    assert run_main(get_miou_prediction.main, ["--checkpoint", str(checkpoint), "--data", str(square_dataset),
                                               "--out", str(out)]) == 2
    one_error_line(capsys.readouterr().err)
    assert not out.exists()
