"""The Python API (utils.api.Segmenter) answers exactly what predict.py writes for the same pixels and options."""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

import predict
from tests.stand_in_models import register_linear, write_linear_checkpoint
from tests.volume_data import LPS_AFFINE, phantom, write_nifti
from utils.api import Segmenter
from utils.cli import run_main
from utils.errors import UserError
from utils.volumes.geometry import Orientation

WINDOW = {"intensity": {"kind": "window", "low": -160.0, "high": 240.0, "name": None}, "context": 0}


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Two 3-class stand-ins whose classes follow the brightness differently (an image has all three)."""
    register_linear(monkeypatch)
    return [write_linear_checkpoint(tmp_path / "a.pt", [0.0, -0.5, 0.5], [0.0, 4.0, -3.0], preprocessing=WINDOW),
            write_linear_checkpoint(tmp_path / "b.pt", [0.0, -1.0, 0.2], [0.0, 3.0, -4.0], preprocessing=WINDOW)]


def grey_image(path: Path) -> np.ndarray:
    """A 23 x 37 grey ramp with noise, saved at `path`; the pixels as read back."""
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, 37)[None, :] + rng.normal(0, 30, (23, 37))
    Image.fromarray(ramp.clip(0, 255).astype(np.uint8)).save(path)
    return np.asarray(Image.open(path))


@pytest.mark.parametrize("ensemble", [False, True])
def test_an_image_gets_the_labels_predict_writes(models: list[Path], tmp_path: Path, ensemble: bool) -> None:
    pixels = grey_image(tmp_path / "scan.png")
    checkpoints = models if ensemble else models[:1]
    assert run_main(predict.main, [str(tmp_path / "scan.png"), "--checkpoint", *map(str, checkpoints), "--out",
                                   str(tmp_path / "out"), "--flip-tta", "--keep-largest", "--save-probabilities",
                                   "--save-uncertainty", "--device", "cpu"]) == 0
    segmenter = Segmenter.load(checkpoints, device="cpu", flip_tta=True, keep_largest=1)
    labels, probabilities = segmenter.predict(pixels)
    written = np.asarray(Image.open(tmp_path / "out" / "scan_label.png"))
    assert len(np.unique(written)) == 3 and np.array_equal(labels, written)
    saved = np.load(tmp_path / "out" / "scan_probabilities.npz")
    assert probabilities.shape == (3, 23, 37) and list(saved["class_names"]) == segmenter.class_names
    np.testing.assert_allclose(probabilities, saved["probabilities"], atol=1e-3)
    result = segmenter.segment(pixels, uncertainty=True)
    entropy = np.asarray(Image.open(tmp_path / "out" / "scan_entropy.png")).astype(int)
    assert np.abs(np.rint(result.entropy * 65535) - entropy).max() == 0
    assert (result.disagreement is not None) == ensemble
    assert result.case("scan").uncertainty == pytest.approx(
        float(result.entropy.sum()) / (float(result.entropy.sum()) + 2 * int((labels != 0).sum())))


def test_a_wide_image_is_scaled_as_predict_scales_it(models: list[Path], tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    hu = rng.integers(0, 400, (20, 30)).astype(np.uint16)  # 16-bit pixels: scaled by the window given
    Image.fromarray(hu).save(tmp_path / "wide.png")
    assert run_main(predict.main, [str(tmp_path / "wide.png"), "--checkpoint", str(models[0]), "--window", "300,100",
                                   "--out", str(tmp_path / "out"), "--device", "cpu"]) == 0
    labels, _ = Segmenter.load(models[0], device="cpu", window="300,100").predict(hu)
    written = np.asarray(Image.open(tmp_path / "out" / "wide_label.png"))
    assert len(np.unique(written)) > 1 and np.array_equal(labels, written)
    with pytest.raises(UserError, match="an image must be H x W or H x W x C pixels"):
        Segmenter.load(models[0], device="cpu").predict(np.zeros((2, 3, 4, 5), dtype=np.uint8))


def test_a_volume_gets_the_labels_predict_writes(models: list[Path], tmp_path: Path) -> None:
    hu, _ = phantom((24, 20, 10))
    source = write_nifti(tmp_path / "ct.nii.gz", hu.astype(np.int16), LPS_AFFINE)
    assert run_main(predict.main, [str(source), "--checkpoint", *map(str, models), "--out", str(tmp_path / "out"),
                                   "--keep-largest", "--save-probabilities", "--device", "cpu"]) == 0
    written = np.asarray(nib.load(str(tmp_path / "out" / "ct_label.nii.gz")).dataobj)
    saved = np.asarray(nib.load(str(tmp_path / "out" / "ct_probabilities.nii.gz")).dataobj)
    segmenter = Segmenter.load(models, device="cpu", keep_largest=1)
    voxels = np.asarray(nib.load(str(source)).dataobj)  # nibabel's voxel order, int16 as stored
    labels, probabilities = segmenter.predict_volume(voxels, affine=LPS_AFFINE)
    assert labels.shape == (24, 20, 10) and len(np.unique(written)) > 1 and np.array_equal(labels, written)
    np.testing.assert_array_equal(np.moveaxis(probabilities, 0, -1), saved)
    # The same voxels as an axial display stack (what SimpleITK's GetArrayFromImage gives): the same answer.
    orientation = Orientation(hu.shape, LPS_AFFINE)
    stack_labels, _ = segmenter.predict_volume(orientation.to_stack(voxels))
    assert np.array_equal(stack_labels, orientation.to_stack(written))
    with pytest.raises(UserError, match="a volume must be 3-D"):
        segmenter.predict_volume(voxels[..., None])
    with pytest.raises(UserError, match="affine must be a 4 x 4 matrix"):
        segmenter.predict_volume(voxels, affine=np.eye(3))
