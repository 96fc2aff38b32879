"""Volumes end to end: import -> split -> train -> predict the split -> per-volume scores -> NIfTI out."""
from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

import get_miou_prediction
import import_dataset
import miou
import png2txt
import predict
from tests.conftest import tiny_train_args
from tests.volume_data import LPS_AFFINE, SWAPPED_AFFINE, phantom, write_nifti, write_pairs
from utils.cli import run_main
from utils.infer.predictor import Predictor
from utils.io.checkpoint import load_checkpoint
from utils.train.loop import train


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three phantom volumes imported with a window and 2.5-D context, and a unet_bn trained on them for 1 epoch."""
    root = tmp_path_factory.mktemp("volumes")
    write_pairs(root / "img", root / "lab", count=3)
    data = root / "ds"
    assert import_dataset.main(["nifti", str(root / "img"), str(root / "lab"), "--out", str(data),
                                "--window", "400,40", "--context", "1", "--merge", "2:1",
                                "--classes", "background,box"]) == 0
    assert run_main(png2txt.main, ["--data", str(data), "--val-ratio", "0.34"]) == 0
    logs = root / "logs"
    assert train("unet_bn", tiny_train_args(data, logs, "--batch-size", "4")) == 0
    return {"root": root, "data": data, "checkpoint": logs / "unet_bn" / "r" / "best.pt"}


def test_checkpoint_records_the_import_scaling(trained: dict[str, Path]) -> None:
    checkpoint = load_checkpoint(trained["checkpoint"])
    assert checkpoint["preprocessing"] == {"intensity": {"kind": "window", "low": -160.0, "high": 240.0,
                                                         "name": None}, "context": 1}


def test_split_prediction_scores_per_volume(trained: dict[str, Path], tmp_path: Path, capsys) -> None:
    pred = tmp_path / "pred"
    assert run_main(get_miou_prediction.main, ["--checkpoint", str(trained["checkpoint"]), "--data",
                                               str(trained["data"]), "--out", str(pred), "--keep-largest"]) == 0
    val = (trained["data"] / "ImageSets" / "Segmentation" / "val.txt").read_text().split()
    volume = val[0].split("_")[0]
    nifti = nib.load(str(pred / "volumes" / f"{volume}_label.nii.gz"))
    assert nifti.shape == (24, 20, 10) and np.allclose(nifti.affine, LPS_AFFINE)
    stack = np.stack([np.asarray(Image.open(pred / f"{stem}.png")) for stem in val])
    assert np.array_equal(np.asarray(nifti.dataobj), stack.transpose(2, 1, 0))  # LPS order: a transpose

    assert run_main(miou.main, ["--pred", str(pred), "--data", str(trained["data"])]) == 0
    out = capsys.readouterr().out
    assert "per-volume scores (1 volumes" in out and "HD95 mm" in out
    report = json.loads((pred / "miou.json").read_text())["volumes"]
    assert list(report["per_volume"]) == [volume]
    scores = report["per_volume"][volume]["box"]
    label = np.stack([np.asarray(Image.open(trained["data"] / "Labels" / f"{stem}.png")) for stem in val])
    both = int(((stack == 1) & (label == 1)).sum())
    assert scores["dice"] == pytest.approx(2 * both / ((stack == 1).sum() + (label == 1).sum()))
    assert report["summary"]["box"]["dice"]["mean"] == pytest.approx(scores["dice"])


def fake_probabilities(self: Predictor, images: list[np.ndarray]) -> list[torch.Tensor]:
    """Class 1 wherever the centre channel is brighter than soft tissue: a model whose answer is known per voxel."""
    out = []
    for image in images:
        foreground = torch.from_numpy((image[:, :, image.shape[2] // 2] > 180).astype(np.float32))
        out.append(torch.stack([1 - foreground, foreground]))
    return out


@pytest.mark.parametrize("affine", [LPS_AFFINE, SWAPPED_AFFINE], ids=["lps", "swapped-flipped"])
def test_predicted_nifti_lands_voxel_exact_on_the_source(trained: dict[str, Path], tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch, affine: np.ndarray) -> None:
    hu, label = phantom(seed=5)
    source = write_nifti(tmp_path / "patient.nii.gz", hu.astype(np.int16), affine)
    monkeypatch.setattr(Predictor, "probability_batch", fake_probabilities)
    out = tmp_path / "out"
    assert run_main(predict.main, [str(source), "--checkpoint", str(trained["checkpoint"]), "--out", str(out),
                                   "--overlay", "auto", "--save-probabilities"]) == 0
    written = nib.load(str(out / "patient_label.nii.gz"))
    assert written.shape == hu.shape and np.allclose(written.affine, affine)
    assert nib.aff2axcodes(written.affine) == nib.aff2axcodes(affine)
    # Window 400/40 puts 200 HU (the box) at 230 and 120 HU (its core) at 179: only the box passes 180.
    assert np.array_equal(np.asarray(written.dataobj), (label == 1).astype(np.uint8))
    probabilities = nib.load(str(out / "patient_probabilities.nii.gz"))
    assert probabilities.shape == (*hu.shape, 2)
    assert np.array_equal(np.asarray(probabilities.dataobj).argmax(axis=-1), np.asarray(written.dataobj))
    assert len(list(out.glob("patient_slice*_overlay.png"))) == 3


def test_predict_trained_model_on_a_volume(trained: dict[str, Path], tmp_path: Path, capsys) -> None:
    hu, _ = phantom(seed=7)
    source = write_nifti(tmp_path / "p.nii", hu.astype(np.int16), SWAPPED_AFFINE)
    assert run_main(predict.main, [str(source), "--checkpoint", str(trained["checkpoint"]), "--out",
                                   str(tmp_path / "o"), "--keep-largest"]) == 0
    written = nib.load(str(tmp_path / "o" / "p_label.nii.gz"))
    assert written.shape == hu.shape and np.allclose(written.affine, SWAPPED_AFFINE)
    assert set(np.unique(np.asarray(written.dataobj)).tolist()) <= {0, 1}
    assert "window (W 400, L 40), 10 slices" in capsys.readouterr().out


def test_predict_a_dicom_series(trained: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.dicom_series import write_series

    hu, label = phantom(shape=(16, 12, 6), seed=2)  # (rows, columns, slices)
    write_series(tmp_path / "CT_1", np.rint(hu + 1024).astype(np.uint16), spacing=(0.7, 0.9, 2.5),
                 intercept=-1024.0)
    monkeypatch.setattr(Predictor, "probability_batch", fake_probabilities)
    assert run_main(predict.main, [str(tmp_path / "CT_1"), "--checkpoint", str(trained["checkpoint"]),
                                   "--out", str(tmp_path / "o")]) == 0
    written = nib.load(str(tmp_path / "o" / "CT_1_label.nii.gz"))
    affine = np.array([[-0.9, 0, 0, 150.0], [0, -0.7, 0, 170.0], [0, 0, 2.5, -300.0], [0, 0, 0, 1]])
    assert written.shape == (12, 16, 6) and np.allclose(written.affine, affine)
    assert np.array_equal(np.asarray(written.dataobj), (label == 1).transpose(1, 0, 2).astype(np.uint8))


def test_image_probabilities_argmax_equals_the_label_png(trained: dict[str, Path], tmp_path: Path) -> None:
    image = trained["data"] / "Images" / "case0_004.png"
    assert run_main(predict.main, [str(image), "--checkpoint", str(trained["checkpoint"]), "--out", str(tmp_path),
                                   "--save-probabilities", "--keep-largest", "2"]) == 0
    label = np.asarray(Image.open(tmp_path / "case0_004_label.png"))
    saved = np.load(tmp_path / "case0_004_probabilities.npz")
    assert saved["probabilities"].dtype == np.float16 and saved["probabilities"].shape == (2, *label.shape)
    assert saved["class_names"].tolist() == ["background", "box"]
    assert np.array_equal(saved["probabilities"].argmax(axis=0), label)


def test_two_inputs_with_one_name_are_refused(trained: dict[str, Path], tmp_path: Path, capsys) -> None:
    image = trained["data"] / "Images" / "case0_004.png"
    (tmp_path / "b").mkdir()
    other = tmp_path / "b" / "case0_004.png"
    other.write_bytes(image.read_bytes())
    assert run_main(predict.main, [str(image), str(other), "--checkpoint", str(trained["checkpoint"]),
                                   "--out", str(tmp_path / "o")]) == 2
    assert "would write the same output names" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
