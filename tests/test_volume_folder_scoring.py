"""miou.py --pred-volumes / --label-volumes: NIfTI predictions scored against NIfTI labels as they are, with the
same per-volume numbers as the import path (volumes sliced, predicted slices scored per volume), and its refusals."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import import_dataset
import miou
from tests.volume_data import LPS_AFFINE, SWAPPED_AFFINE, phantom, write_nifti
from utils.cli import run_main
from utils.io.labels import save_label_png
from utils.volumes.geometry import Orientation

NAMES = ["background", "box", "core"]
AFFINES = {"case0": LPS_AFFINE, "case1": SWAPPED_AFFINE}  # spacings (0.8, 0.7, 3) and (0.7, 0.8, 3) mm


def predicted(label: np.ndarray, name: str) -> np.ndarray:
    """A prediction with known mistakes: the box one voxel short along i, a stray voxel, and case1's core missed."""
    pred = label.copy()
    box = np.argwhere(label > 0)
    pred[box[:, 0].max()] = np.where(label[box[:, 0].max()] > 0, 0, pred[box[:, 0].max()])
    pred[0, 0, 0] = 1
    if name == "case1":
        pred[pred == 2] = 1
    return pred


@pytest.fixture(scope="module")
def volumes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two image/label volumes on different grids, their predictions as NIfTI files (one named as predict.py names
    it, one same-name) and as the slice PNGs of the imported data set."""
    root = tmp_path_factory.mktemp("folder-scoring")
    images, labels, pred = root / "images", root / "labels", root / "pred"
    for index, (name, affine) in enumerate(AFFINES.items()):
        hu, label = phantom(seed=index)
        write_nifti(images / f"{name}.nii.gz", hu.astype(np.int16), affine)
        write_nifti(labels / f"{name}.nii.gz", label, affine)
        file_name = f"{name}_label.nii.gz" if name == "case0" else f"{name}.nii.gz"
        write_nifti(pred / file_name, predicted(label, name), affine)
    data = root / "ds"
    assert import_dataset.main(["nifti", str(images), str(labels), "--out", str(data),
                                "--classes", ",".join(NAMES)]) == 0
    index = json.loads((data / "volumes.json").read_text())["volumes"]
    slices = root / "slices"
    for name, entry in index.items():
        label = np.asarray(nib.load(str(labels / f"{name}.nii.gz")).dataobj)
        stack = Orientation(label.shape, AFFINES[name]).to_stack(predicted(label, name))
        for stem, picture in zip(entry["slices"], stack):
            save_label_png(slices / f"{stem}.png", picture, len(NAMES))
    stems = [stem for entry in index.values() for stem in entry["slices"]]
    (data / "ImageSets" / "Segmentation").mkdir(parents=True, exist_ok=True)
    (data / "ImageSets" / "Segmentation" / "all.txt").write_text("".join(f"{s}\n" for s in stems))
    (root / "classes.txt").write_text("\n".join(NAMES) + "\n")
    return {"root": root, "labels": labels, "pred": pred, "data": data, "slices": slices}


def test_folder_scores_equal_the_import_path(volumes: dict[str, Path], capsys) -> None:
    assert run_main(miou.main, ["--pred", str(volumes["slices"]), "--data", str(volumes["data"]), "--split", "all",
                                "--json", str(volumes["root"] / "sliced.json")]) == 0
    sliced = json.loads((volumes["root"] / "sliced.json").read_text())
    assert run_main(miou.main, ["--pred-volumes", str(volumes["pred"]), "--label-volumes", str(volumes["labels"]),
                                "--classes", str(volumes["root"] / "classes.txt")]) == 0
    out = capsys.readouterr().out
    assert "per-volume scores (2 volumes" in out and "voxels, 2 volumes)" in out
    direct = json.loads((volumes["pred"] / "miou.json").read_text())
    assert list(direct["volumes"]["per_volume"]) == ["case0", "case1"]
    for name in ("case0", "case1"):
        for class_name in ("box", "core"):
            ours, theirs = direct["volumes"]["per_volume"][name][class_name], \
                sliced["volumes"]["per_volume"][name][class_name]
            for metric in ("dice", "iou", "hd95", "assd", "label_voxels", "pred_voxels", "intersection"):
                assert ours[metric] == pytest.approx(theirs[metric], abs=1e-9), (name, class_name, metric)
    assert direct["volumes"]["per_volume"]["case1"]["core"]["dice"] == 0.0  # the missed core: one empty
    assert direct["volumes"]["per_volume"]["case1"]["core"]["hd95"] == pytest.approx(
        np.sqrt((24 * 0.7) ** 2 + (20 * 0.8) ** 2 + (10 * 3.0) ** 2))  # the volume's diagonal in mm
    assert direct["confusion_matrix"] == sliced["confusion_matrix"] and direct["miou"] == sliced["miou"]
    assert direct["class_names"] == NAMES and direct["files"]["case0"]["prediction"].endswith("case0_label.nii.gz")
    with open(volumes["pred"] / "per_volume.csv", newline="", encoding="utf-8") as handle:
        rows = {row["volume"]: row for row in csv.DictReader(handle)}
    assert rows["case1"]["dice_core"] == "0.000000" and rows["case0"]["label_voxels_box"] == \
        str(sliced["volumes"]["per_volume"]["case0"]["box"]["label_voxels"])
    assert float(rows["case0"]["hd95_mm_box"]) == pytest.approx(sliced["volumes"]["per_volume"]["case0"]["box"]["hd95"])


def test_classes_default_to_the_largest_id(volumes: dict[str, Path], tmp_path: Path) -> None:
    report = tmp_path / "direct.json"
    assert run_main(miou.main, ["--pred-volumes", str(volumes["pred"]), "--label-volumes", str(volumes["labels"]),
                                "--json", str(report)]) == 0
    scores = json.loads(report.read_text())
    assert scores["class_names"] == ["class_0", "class_1", "class_2"]
    assert (tmp_path / "direct_per_volume.csv").is_file() and not (tmp_path / "per_volume.csv").exists()


def copy_folder(source: Path, target: Path) -> Path:
    target.mkdir()
    for path in source.glob("*.nii.gz"):
        (target / path.name).write_bytes(path.read_bytes())
    return target


def refusal(volumes: dict[str, Path], pred: Path, capsys, *extra: str) -> str:
    assert run_main(miou.main, ["--pred-volumes", str(pred), "--label-volumes", str(volumes["labels"]), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and not (pred / "miou.json").exists()
    return err


def test_unmatched_files_are_named(volumes: dict[str, Path], tmp_path: Path, capsys) -> None:
    pred = copy_folder(volumes["pred"], tmp_path / "pred")
    (pred / "case1.nii.gz").rename(pred / "patient9.nii.gz")
    err = refusal(volumes, pred, capsys)
    assert "1 prediction(s) in" in err and "e.g. patient9.nii.gz" in err and "without a prediction" in err
    assert "case1.nii.gz" in err


def test_shape_and_grid_mismatches_are_refused(volumes: dict[str, Path], tmp_path: Path, capsys) -> None:
    pred = copy_folder(volumes["pred"], tmp_path / "pred")
    label = np.asarray(nib.load(str(volumes["labels"] / "case1.nii.gz")).dataobj)
    write_nifti(pred / "case1.nii.gz", label[:, :, :8], SWAPPED_AFFINE)
    assert "has shape (24, 20, 8) but its label" in refusal(volumes, pred, capsys)
    shifted = SWAPPED_AFFINE.copy()
    shifted[0, 1] = 0.9  # a 0.9 mm column spacing on a 0.8 mm grid
    write_nifti(pred / "case1.nii.gz", label, shifted)
    err = refusal(volumes, pred, capsys)
    assert "is not on the voxel grid of its label" in err and "0.9" in err


def test_values_that_are_not_classes_are_refused(volumes: dict[str, Path], tmp_path: Path, capsys) -> None:
    pred = copy_folder(volumes["pred"], tmp_path / "pred")
    label = np.asarray(nib.load(str(volumes["labels"] / "case1.nii.gz")).dataobj)
    write_nifti(pred / "case1.nii.gz", label.astype(np.float32) + 0.5, SWAPPED_AFFINE)
    assert "prediction values must be integer class ids, found 0.5" in refusal(volumes, pred, capsys)
    write_nifti(pred / "case1.nii.gz", label, SWAPPED_AFFINE)
    assert "holds class id 2, not below the 2 classes" in refusal(volumes, pred, capsys, "--num-classes", "2")


def test_empty_folders_and_mixed_modes_are_refused(volumes: dict[str, Path], tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    assert "holds no NIfTI files" in refusal(volumes, tmp_path / "empty", capsys)
    assert "leave them out with --pred-volumes" in refusal(volumes, tmp_path / "empty", capsys, "--report")
