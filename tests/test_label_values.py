"""Label values and class names: a stray value is noted with its voxel count; names are unique and readable."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import import_dataset
from tests.volume_data import LPS_AFFINE, phantom, write_nifti
from utils.data.folders import read_class_names
from utils.errors import UserError


def test_a_stray_label_voxel_is_noted_with_the_values_and_counts(tmp_path: Path, capsys) -> None:
    hu, label = phantom((12, 10, 6))
    label[0, 0, 0] = 7  # one voxel of a value no other voxel has
    write_nifti(tmp_path / "img" / "case0.nii.gz", hu, LPS_AFFINE)
    write_nifti(tmp_path / "lab" / "case0.nii.gz", label, LPS_AFFINE)
    out = tmp_path / "out"
    assert import_dataset.main(["nifti", str(tmp_path / "img"), str(tmp_path / "lab"), "--out", str(out)]) == 0
    counts = {value: int((label == value).sum()) for value in (0, 1, 2)}
    note = json.loads((out / "import_report.json").read_text())["notes"][0]
    assert note.startswith("class(es) 3 (class_3), 4 (class_4), 5 (class_5), 6 (class_6) have no voxel")
    assert (f"the label values found are 0 ({counts[0]} voxels), 1 ({counts[1]} voxels), 2 ({counts[2]} voxels), "
            f"7 (1 voxel)") in note
    assert f"note: {note}" in capsys.readouterr().err


def test_labels_that_fill_every_class_get_no_note(tmp_path: Path) -> None:
    hu, label = phantom((12, 10, 6))
    write_nifti(tmp_path / "img" / "case0.nii.gz", hu, LPS_AFFINE)
    write_nifti(tmp_path / "lab" / "case0.nii.gz", label, LPS_AFFINE)
    out = tmp_path / "out"
    assert import_dataset.main(["nifti", str(tmp_path / "img"), str(tmp_path / "lab"), "--out", str(out)]) == 0
    assert json.loads((out / "import_report.json").read_text())["notes"] == []


def test_duplicate_class_names_are_refused(tmp_path: Path, capsys) -> None:
    hu, label = phantom((12, 10, 6))
    write_nifti(tmp_path / "img" / "case0.nii.gz", hu, LPS_AFFINE)
    write_nifti(tmp_path / "lab" / "case0.nii.gz", label, LPS_AFFINE)
    with pytest.raises(SystemExit) as exit_info:
        import_dataset.main(["nifti", str(tmp_path / "img"), str(tmp_path / "lab"), "--out", str(tmp_path / "out"),
                             "--classes", "background,box,box"])
    assert exit_info.value.code == 2
    assert "names 'box' more than once" in capsys.readouterr().err
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"0": "bg", "1": "organ", "2": "organ"}}))
    (tmp_path / "img").rename(tmp_path / "imagesTr")
    (tmp_path / "lab").rename(tmp_path / "labelsTr")
    assert import_dataset.main(["nifti", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert "name 'organ' more than once" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_classes_txt_not_utf8_or_with_a_repeated_name_is_one_message(tmp_path: Path) -> None:
    (tmp_path / "classes.txt").write_bytes(b"background\n\xff\xfeliver\n")
    with pytest.raises(UserError, match=r"classes\.txt is not UTF-8 text \(byte 11\)"):
        read_class_names(tmp_path)
    (tmp_path / "classes.txt").write_text("background\nliver\nliver\n")
    with pytest.raises(UserError, match=r"classes\.txt names 'liver' on more than one line"):
        read_class_names(tmp_path)
