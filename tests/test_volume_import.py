"""import_dataset.py nifti / dicom: slices, 2.5-D channels, merge, keep-empty, volumes.json, refusals, splits."""
from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

import import_dataset
import png2txt
from tests.volume_data import LPS_AFFINE, phantom, write_nifti, write_pairs
from utils.cli import run_main


def windowed(hu: np.ndarray, width: float, level: float) -> np.ndarray:
    """The documented window formula, written out independently of utils.io.intensity."""
    low = level - width / 2
    return np.rint(np.clip((hu.astype(np.float64) - low) * 255.0 / width, 0, 255)).astype(np.uint8)


def run_import(*args: str) -> int:
    return import_dataset.main(list(args))


@pytest.fixture
def pair_folders(tmp_path: Path) -> tuple[Path, Path]:
    images, labels = tmp_path / "imagesNii", tmp_path / "labelsNii"
    write_pairs(images, labels, count=3)
    return images, labels


def test_slices_match_a_numpy_reference(pair_folders: tuple[Path, Path], tmp_path: Path) -> None:
    images, labels = pair_folders
    out = tmp_path / "ds"
    assert run_import("nifti", str(images), str(labels), "--out", str(out), "--window", "400,40",
                      "--context", "1", "--merge", "2:1", "--classes", "background,box") == 0
    hu, label = phantom(seed=1)
    # LPS voxel order: display stack = transpose (slices, rows = j, columns = i), see test_volumes.
    stack = windowed(hu.astype(np.int16), 400, 40).transpose(2, 1, 0)
    merged = np.where(label == 2, 1, label).transpose(2, 1, 0)
    for k in (0, 4, 9):
        picture = np.asarray(Image.open(out / "Images" / f"case1_{k:03d}.png"))
        expected = np.stack([stack[max(k - 1, 0)], stack[k], stack[min(k + 1, 9)]], axis=2)
        assert np.array_equal(picture, expected)
        assert np.array_equal(np.asarray(Image.open(out / "Labels" / f"case1_{k:03d}.png")), merged[k])
    assert (out / "classes.txt").read_text() == "background\nbox\n"
    meta = json.loads((out / "volumes.json").read_text())
    entry = meta["volumes"]["case1"]
    assert entry["shape"] == [24, 20, 10] and entry["axcodes"] == ["L", "P", "S"]
    assert entry["spacing"] == pytest.approx([0.8, 0.7, 3.0]) and entry["stack_spacing"] == pytest.approx([3.0, 0.7, 0.8])
    assert np.allclose(entry["affine"], LPS_AFFINE)
    assert entry["slices"] == [f"case1_{k:03d}" for k in range(10)]
    assert meta["intensity"] == {"kind": "window", "low": -160.0, "high": 240.0, "name": None}
    assert meta["context"] == 1 and meta["merge"] == {"2": 1}
    assert json.loads((out / "groups.json").read_text())["case2_007"] == "case2"


def test_default_is_per_volume_percentile_scaling(pair_folders: tuple[Path, Path], tmp_path: Path) -> None:
    images, labels = pair_folders
    out = tmp_path / "ds"
    assert run_import("nifti", str(images), str(labels), "--out", str(out)) == 0
    hu = np.asarray(nib.load(str(images / "case0.nii.gz")).dataobj).astype(np.float64)
    low, high = np.percentile(hu, [0.5, 99.5])
    expected = np.rint(np.clip((hu - low) * 255.0 / (high - low), 0, 255)).astype(np.uint8).transpose(2, 1, 0)
    assert np.array_equal(np.asarray(Image.open(out / "Images" / "case0_005.png")), expected[5])
    assert (out / "classes.txt").read_text() == "background\nclass_1\nclass_2\n"


def test_keep_empty_thins_training_only_and_volumes_stay_whole(pair_folders: tuple[Path, Path],
                                                                tmp_path: Path) -> None:
    images, labels = pair_folders
    out = tmp_path / "ds"
    assert run_import("nifti", str(images), str(labels), "--out", str(out), "--keep-empty", "0",
                      "--merge", "2:1") == 0
    meta = json.loads((out / "volumes.json").read_text())
    # The phantom's box spans slices 2..6 of 10: five empty slices per volume.
    assert all(entry["empty_slices"] == 5 and len(entry["train_excluded"]) == 5 for entry in meta["volumes"].values())
    assert run_main(png2txt.main, ["--data", str(out), "--val-ratio", "0.34"]) == 0
    split = {name: (out / "ImageSets" / "Segmentation" / f"{name}.txt").read_text().split()
             for name in ("train", "val", "trainval")}
    owner = {stem: stem.split("_")[0] for stem in split["trainval"]}
    assert {owner[s] for s in split["train"]}.isdisjoint({owner[s] for s in split["val"]})
    val_volume = owner[split["val"][0]]
    assert split["val"] == meta["volumes"][val_volume]["slices"]  # validation keeps every slice
    excluded = {stem for entry in meta["volumes"].values() for stem in entry["train_excluded"]}
    assert not excluded & set(split["train"]) and len(split["train"]) == 2 * 5
    assert len(split["trainval"]) == 30


def test_keep_empty_fraction_is_seeded(pair_folders: tuple[Path, Path], tmp_path: Path) -> None:
    images, labels = pair_folders
    picks = []
    for run in ("a", "b"):
        assert run_import("nifti", str(images), str(labels), "--out", str(tmp_path / run), "--keep-empty", "0.4") == 0
        meta = json.loads((tmp_path / run / "volumes.json").read_text())
        picks.append([entry["train_excluded"] for entry in meta["volumes"].values()])
    assert picks[0] == picks[1] and all(len(excluded) == 3 for excluded in picks[0])  # round(0.6 * 5)


def test_label_in_another_voxel_order_is_aligned(tmp_path: Path) -> None:
    hu, label = phantom()
    write_nifti(tmp_path / "img" / "a.nii.gz", hu.astype(np.int16), LPS_AFFINE)
    # The same grid stored with i reversed: flip the data and move the affine's origin to the other end.
    flip = np.diag([-1.0, 1.0, 1.0, 1.0])
    flip[0, 3] = hu.shape[0] - 1
    write_nifti(tmp_path / "lab" / "a.nii.gz", label[::-1].copy(), LPS_AFFINE @ flip)
    out = tmp_path / "ds"
    assert run_import("nifti", str(tmp_path / "img"), str(tmp_path / "lab"), "--out", str(out)) == 0
    assert np.array_equal(np.asarray(Image.open(out / "Labels" / "a_004.png")), label.transpose(2, 1, 0)[4])


def test_every_offender_is_named_and_nothing_is_written(tmp_path: Path, capsys) -> None:
    images, labels = tmp_path / "img", tmp_path / "lab"
    hu, label = phantom()
    write_nifti(images / "good.nii.gz", hu.astype(np.int16), LPS_AFFINE)
    write_nifti(labels / "good.nii.gz", label, LPS_AFFINE)
    write_nifti(images / "shape.nii.gz", hu.astype(np.int16), LPS_AFFINE)
    write_nifti(labels / "shape.nii.gz", label[:, :, :8], LPS_AFFINE)
    write_nifti(images / "moved.nii.gz", hu.astype(np.int16), LPS_AFFINE)
    shifted = LPS_AFFINE.copy()
    shifted[2, 3] += 1.5
    write_nifti(labels / "moved.nii.gz", label, shifted)
    write_nifti(images / "fourd.nii.gz", np.zeros((4, 4, 4, 3), dtype=np.int16), LPS_AFFINE)
    write_nifti(labels / "fourd.nii.gz", np.zeros((4, 4, 4), dtype=np.uint8), LPS_AFFINE)
    write_nifti(images / "fraction.nii.gz", hu.astype(np.int16), LPS_AFFINE)
    write_nifti(labels / "fraction.nii.gz", label.astype(np.float32) * 0.5, LPS_AFFINE)
    write_nifti(images / "unmapped.nii.gz", hu.astype(np.int16), LPS_AFFINE)
    write_nifti(labels / "unmapped.nii.gz", np.where(label == 2, 7, label).astype(np.uint8), LPS_AFFINE)
    out = tmp_path / "ds"
    assert run_import("nifti", str(images), str(labels), "--out", str(out), "--merge", "2:1",
                      "--classes", "background,box") == 2
    err = capsys.readouterr().err
    assert "5 of 6 volume(s) refused, nothing written" in err
    for needle in ("shape: image shape (24, 20, 10) and label shape (24, 20, 8) differ",
                   "moved: image and label affines differ", "fourd: image", "4-D",
                   "fraction:", "non-integer label values such as 0.5",
                   "unmapped:", "label values [7] are not classes"):
        assert needle in err
    assert "good" not in err
    assert not out.exists()


def test_lits_and_decathlon_naming_is_recognised(tmp_path: Path, capsys) -> None:
    hu, label = phantom()
    lits = tmp_path / "lits"
    write_nifti(lits / "batch1" / "volume-3.nii", hu.astype(np.int16), LPS_AFFINE)
    write_nifti(lits / "batch1" / "segmentation-3.nii", label, LPS_AFFINE)
    write_nifti(lits / "batch1" / "volume-4.nii", hu.astype(np.int16), LPS_AFFINE)
    assert run_import("nifti", str(lits), "--out", str(tmp_path / "a"), "--merge", "2:1",
                      "--classes", "background,liver", "--naming", "lits") == 0
    report = json.loads((tmp_path / "a" / "import_report.json").read_text())
    assert report["naming"] == "lits" and report["volumes_count"] == 1
    assert report["left_out"][0]["stem"] == "volume-4" and "without a segmentation" in report["left_out"][0]["reason"]
    assert (tmp_path / "a" / "Images" / "volume-3_000.png").is_file()

    msd = tmp_path / "Task03_Liver"
    write_nifti(msd / "imagesTr" / "liver_7_0000.nii.gz", hu.astype(np.int16), LPS_AFFINE)
    write_nifti(msd / "imagesTr" / "liver_7_0001.nii.gz", hu.astype(np.int16), LPS_AFFINE)
    write_nifti(msd / "labelsTr" / "liver_7.nii.gz", label, LPS_AFFINE)
    (msd / "dataset.json").write_text(json.dumps({"labels": {"0": "background", "1": "liver", "2": "cancer"}}))
    assert run_import("nifti", str(msd), "--out", str(tmp_path / "b")) == 0
    assert (tmp_path / "b" / "classes.txt").read_text() == "background\nliver\ncancer\n"
    report = json.loads((tmp_path / "b" / "import_report.json").read_text())
    assert report["naming"] == "decathlon" and report["left_out"][0]["stem"] == "liver_7_0001"
    assert (tmp_path / "b" / "Labels" / "liver_7_009.png").is_file()
    # --layout is the older spelling of --naming; a wrong naming finds no pairs.
    assert run_import("nifti", str(msd), "--out", str(tmp_path / "c"), "--layout", "lits") == 2
    assert "looked for lits naming" in capsys.readouterr().err


def test_bad_options_are_one_line(pair_folders: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    images, labels = pair_folders
    for option, needle in ((("--window", "wide"), "--window 'wide'"), (("--merge", "2-1"), "--merge entry '2-1'"),
                           (("--keep-empty", "1.5"), "must be a finite number in [0, 1]")):
        with pytest.raises(SystemExit):
            run_import("nifti", str(images), str(labels), "--out", str(tmp_path / "x"), *option)
        err = capsys.readouterr().err
        assert needle in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_dicom_series_with_nifti_labels(tmp_path: Path) -> None:
    from tests.dicom_series import write_series

    hu, label = phantom(shape=(16, 12, 6))  # (rows, columns, slices) as the series stores them
    stored = np.rint(hu + 1024).astype(np.uint16)
    write_series(tmp_path / "series" / "patient7", stored, spacing=(0.7, 0.9, 2.5), intercept=-1024.0,
                 shuffle_seed=3)
    # Voxel order (column, row, slice); LPS -> RAS negates x and y: the affine written out by hand.
    affine = np.array([[-0.9, 0, 0, 150.0], [0, -0.7, 0, 170.0], [0, 0, 2.5, -300.0], [0, 0, 0, 1]])
    write_nifti(tmp_path / "labels" / "patient7.nii.gz", label.transpose(1, 0, 2).copy(), affine)
    out = tmp_path / "ds"
    assert run_import("dicom", str(tmp_path / "series"), str(tmp_path / "labels"), "--out", str(out),
                      "--window", "liver") == 0
    stack = windowed(stored.astype(np.int16) - 1024, 150, 30).transpose(2, 0, 1)  # display [k, row, column]
    for k in range(6):
        assert np.array_equal(np.asarray(Image.open(out / "Images" / f"patient7_{k:03d}.png")), stack[k])
        assert np.array_equal(np.asarray(Image.open(out / "Labels" / f"patient7_{k:03d}.png")),
                              label.transpose(2, 0, 1)[k])
    entry = json.loads((out / "volumes.json").read_text())["volumes"]["patient7"]
    assert entry["shape"] == [12, 16, 6] and np.allclose(entry["affine"], affine)


def test_dicom_label_on_another_grid_is_refused(tmp_path: Path, capsys) -> None:
    from tests.dicom_series import write_series

    hu, label = phantom(shape=(16, 12, 6))
    write_series(tmp_path / "series" / "p", (hu + 1024).astype(np.uint16))
    write_nifti(tmp_path / "labels" / "p.nii.gz", label, LPS_AFFINE)
    assert run_import("dicom", str(tmp_path / "series"), str(tmp_path / "labels"), "--out", str(tmp_path / "o")) == 2
    assert "p: image shape (12, 16, 6) and label shape (16, 12, 6) differ" in capsys.readouterr().err


def test_series_and_file_problems_are_reported_together(tmp_path: Path, capsys) -> None:
    from tests.dicom_series import write_series

    hu, label = phantom(shape=(16, 12, 6))
    stored = np.rint(hu + 1024).astype(np.uint16)
    write_series(tmp_path / "series" / "mixed", stored, series_uid="1.2.3.1")
    write_series(tmp_path / "series" / "mixed", stored[:, :, :2], series_uid="1.2.3.2",
                 origin=(-150.0, -170.0, -100.0))
    write_series(tmp_path / "series" / "good", stored)
    (tmp_path / "series" / "junk").mkdir()
    write_series(tmp_path / "series" / "junk", stored)
    (tmp_path / "series" / "junk" / "notes.txt").write_text("not dicom")
    affine = np.array([[-0.8, 0, 0, 150.0], [0, -0.8, 0, 170.0], [0, 0, 2.5, -300.0], [0, 0, 0, 1]])
    for name in ("mixed", "good", "junk"):
        write_nifti(tmp_path / "labels" / f"{name}.nii.gz", label.transpose(1, 0, 2).copy(), affine)
    assert run_import("dicom", str(tmp_path / "series"), str(tmp_path / "labels"), "--out", str(tmp_path / "o")) == 2
    err = capsys.readouterr().err
    assert "2 of 3 volume(s) refused, nothing written" in err
    assert "mixed:" in err and "1.2.3.1" in err and "1.2.3.2" in err
    assert "junk:" in err and "notes.txt" in err
    assert not (tmp_path / "o").exists()
