"""--keep-largest end to end: a stand-in model that sees two blobs, through predict.py, get_miou_prediction.py and
the volume path, keeps only the larger one when asked (in 3-D for volumes) and both when not."""
from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

import get_miou_prediction
import predict
from tests.stand_in_models import BRIGHT, DARK, register, write_checkpoint
from utils.cli import run_main
from utils.infer.postprocess import keep_largest
from utils.infer.predictor import Predictor
from utils.io.intensity import Intensity
from utils.volumes.geometry import Volume, orientation_of
from utils.volumes.inference import predict_volume

SIZE = 32  # square images at the input size: no resampling, so the stand-in's labels are exact
WINDOW = Intensity("window", 0.0, 255.0)


def two_blobs() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image H x W uint8, mask of the large blob, mask of the small blob), the blobs well apart."""
    large = np.zeros((SIZE, SIZE), dtype=bool)
    large[3:17, 4:20] = True
    small = np.zeros((SIZE, SIZE), dtype=bool)
    small[22:27, 24:30] = True
    return np.where(large | small, BRIGHT, DARK).astype(np.uint8), large, small


@pytest.fixture
def checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    register(monkeypatch)
    return write_checkpoint(tmp_path / "bright.pt", input_size=SIZE,
                            preprocessing={"intensity": WINDOW.to_json(), "context": 0})


@pytest.fixture
def image_file(tmp_path: Path) -> Path:
    path = tmp_path / "in" / "blobs.png"
    path.parent.mkdir()
    Image.fromarray(two_blobs()[0]).save(path)
    return path


def read_label(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


@pytest.mark.parametrize("flags, keeps_small", [((), True), (("--keep-largest",), False),
                                                (("--keep-largest", "2"), True),
                                                (("--keep-largest", "--largest-classes", "bright"), False),
                                                (("--largest-classes", "1"), False)])
def test_predict_py_keeps_the_largest_blob_when_asked(checkpoint: Path, image_file: Path, tmp_path: Path,
                                                      flags: tuple[str, ...], keeps_small: bool) -> None:
    out = tmp_path / "out"
    assert run_main(predict.main, [str(image_file), "--checkpoint", str(checkpoint), "--out", str(out),
                                   "--device", "cpu", "--save-probabilities", *flags]) == 0
    _, large, small = two_blobs()
    expected = (large | (small if keeps_small else False)).astype(np.uint8)
    label = read_label(out / "blobs_label.png")
    np.testing.assert_array_equal(label, expected)
    with np.load(out / "blobs_probabilities.npz") as saved:
        probabilities = next(saved[key] for key in saved.files if saved[key].ndim == 3)
    np.testing.assert_array_equal(probabilities.argmax(0), label)  # a removed blob's probability moved too


@pytest.mark.parametrize("flags, keeps_small", [((), True), (("--keep-largest",), False),
                                                (("--largest-classes", "bright"), False)])
def test_get_miou_prediction_keeps_the_largest_blob_when_asked(checkpoint: Path, image_file: Path, tmp_path: Path,
                                                               flags: tuple[str, ...], keeps_small: bool) -> None:
    data = tmp_path / "data"
    (data / "Images").mkdir(parents=True)
    (data / "ImageSets" / "Segmentation").mkdir(parents=True)
    image_file.rename(data / "Images" / "blobs.png")
    (data / "ImageSets" / "Segmentation" / "val.txt").write_text("blobs\n")
    out = tmp_path / "pred"
    assert run_main(get_miou_prediction.main, ["--checkpoint", str(checkpoint), "--data", str(data), "--out",
                                               str(out), "--device", "cpu", *flags]) == 0
    _, large, small = two_blobs()
    expected = (large | (small if keeps_small else False)).astype(np.uint8)
    np.testing.assert_array_equal(read_label(out / "blobs.png"), expected)
    record = json.loads((out / "prediction.json").read_text())
    assert record["largest_classes"] == ([1] if "--largest-classes" in flags else None if not flags else [])


def test_largest_classes_names_a_foreground_class(checkpoint: Path, image_file: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    for bad in ("background", "tumour", "0"):
        out = tmp_path / f"out-{bad}"
        assert run_main(predict.main, [str(image_file), "--checkpoint", str(checkpoint), "--out", str(out),
                                       "--device", "cpu", "--largest-classes", bad]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "not a foreground class" in err and "bright" in err
        assert not out.exists() or not any(out.iterdir())


def test_keep_largest_limited_to_some_classes() -> None:
    labels = np.zeros((6, 9), np.uint8)
    labels[0:2, 0:2] = 1
    labels[4, 0] = 1  # class 1: components of 4 and 1 pixels
    labels[0:3, 6:9] = 2
    labels[5, 8] = 2  # class 2: components of 9 and 1 pixels
    cleaned, removed = keep_largest(labels, 3, 1, classes=[2])
    assert cleaned[4, 0] == 1 and cleaned[5, 8] == 0 and removed.sum() == 1
    cleaned, removed = keep_largest(labels, 3, 1)
    assert cleaned[4, 0] == 0 and cleaned[5, 8] == 0 and removed.sum() == 2


def blob_volume() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(intensities (i, j, k) float32, large blob, small blob): the small blob lies only in slices the large one
    does not reach, so slice-by-slice cleaning would keep it and only 3-D cleaning removes it."""
    shape = (SIZE, SIZE, 8)
    large = np.zeros(shape, dtype=bool)
    large[4:20, 3:18, 1:5] = True
    small = np.zeros(shape, dtype=bool)
    small[24:29, 22:28, 6:8] = True
    return np.where(large | small, float(BRIGHT), float(DARK)).astype(np.float32), large, small


@pytest.mark.parametrize("largest, keeps_small", [(None, True), (1, False), (2, True)])
def test_a_volume_keeps_its_largest_3d_component(checkpoint: Path, largest: int | None, keeps_small: bool) -> None:
    predictor = Predictor(checkpoint, device="cpu")
    data, large, small = blob_volume()
    volume = Volume(data, np.diag([0.8, 0.8, 3.0, 1.0]), "blobs")
    orientation, _, labels, probabilities = predict_volume(predictor, volume, WINDOW, context=0, largest=largest)
    expected = (large | (small if keeps_small else False)).astype(np.uint8)
    np.testing.assert_array_equal(orientation.from_stack(labels), expected)
    np.testing.assert_array_equal(probabilities.argmax(0), labels)
    assert orientation_of(volume).to_stack(expected).shape == labels.shape


@pytest.mark.parametrize("flags, keeps_small", [((), True), (("--keep-largest",), False)])
def test_predict_py_keeps_the_largest_component_of_a_nifti_volume(checkpoint: Path, tmp_path: Path,
                                                                  flags: tuple[str, ...], keeps_small: bool) -> None:
    data, large, small = blob_volume()
    source = tmp_path / "blobs.nii.gz"
    nib.save(nib.Nifti1Image(data, np.diag([0.8, 0.8, 3.0, 1.0])), source)
    out = tmp_path / "out"
    assert run_main(predict.main, [str(source), "--checkpoint", str(checkpoint), "--out", str(out),
                                   "--device", "cpu", *flags]) == 0
    expected = (large | (small if keeps_small else False)).astype(np.uint8)
    np.testing.assert_array_equal(np.asarray(nib.load(out / "blobs_label.nii.gz").dataobj), expected)
