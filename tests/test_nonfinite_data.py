"""NaN, infinite and constant pixels are refused with the file and the count, in import and in prediction input."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

import import_dataset
from tests.volume_data import LPS_AFFINE, phantom, write_nifti
from utils.errors import UserError
from utils.io.images import load_model_input
from utils.io.intensity import parse_window
from utils.volumes.geometry import Volume
from utils.volumes.inference import predict_volume


def float_pair(folder: Path, stem: str, image: np.ndarray) -> None:
    """A float TIFF image and a 0/255 PNG mask of its size."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(folder / "images" / f"{stem}.tif", image.astype(np.float32))
    mask = np.zeros(image.shape, dtype=np.uint8)
    mask[2:5, 2:5] = 255
    Image.fromarray(mask).save(folder / "masks" / f"{stem}.png")


def import_pairs(src: Path, out: Path) -> int:
    return import_dataset.main(["pairs", str(src / "images"), str(src / "masks"), "--out", str(out),
                                "--threshold", "127", "--percentile", "1,99"])


def test_an_all_nan_float_tiff_is_refused_not_imported_black(tmp_path: Path, capsys) -> None:
    float_pair(tmp_path, "a", np.full((8, 8), np.nan))
    assert import_pairs(tmp_path, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "a.tif: all 64 values are NaN or infinite" in err
    assert not (tmp_path / "out").exists()


def test_a_partly_nan_image_is_left_out_with_its_count(tmp_path: Path, capsys) -> None:
    image = np.arange(64, dtype=np.float32).reshape(8, 8)
    float_pair(tmp_path, "good", image)
    image = image.copy()
    image[0, :3] = np.nan
    image[1, 0] = np.inf
    float_pair(tmp_path, "bad", image)
    assert import_pairs(tmp_path, tmp_path / "out") == 0
    err = capsys.readouterr().err
    assert "bad.tif: 4 of 64 values are NaN or infinite" in err
    assert sorted(path.name for path in (tmp_path / "out" / "Images").iterdir()) == ["good.png"]


def test_a_constant_image_is_refused(tmp_path: Path, capsys) -> None:
    float_pair(tmp_path, "flat", np.full((8, 8), 7.0))
    assert import_pairs(tmp_path, tmp_path / "out") == 2
    assert "flat.tif: every one of its 64 values is 7" in capsys.readouterr().err


@pytest.mark.parametrize("fill, expected", [(np.nan, "all 2400 values are NaN or infinite"),
                                            (-np.inf, "1 of 2400 values are NaN or infinite"),
                                            (None, "every one of its 2400 values is 40")])
def test_a_nifti_volume_with_nan_inf_or_one_value_is_refused(tmp_path: Path, capsys, fill, expected) -> None:
    hu, label = phantom((12, 10, 20))
    if fill is None:
        hu[:] = 40.0
    elif np.isnan(fill):
        hu[:] = np.nan
    else:
        hu[3, 4, 5] = fill
    write_nifti(tmp_path / "img" / "case0.nii.gz", hu, LPS_AFFINE)
    write_nifti(tmp_path / "lab" / "case0.nii.gz", label, LPS_AFFINE)
    out = tmp_path / "out"
    assert import_dataset.main(["nifti", str(tmp_path / "img"), str(tmp_path / "lab"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"case0.nii.gz: {expected}" in err and "Traceback" not in err
    assert not out.exists()


def test_prediction_input_with_nan_is_refused(tmp_path: Path) -> None:
    image = np.linspace(0, 1000, 64, dtype=np.float32).reshape(8, 8)
    image[4, 4] = np.nan
    tifffile.imwrite(tmp_path / "x.tif", image)
    with pytest.raises(UserError, match=r"x\.tif: 1 of 64 values are NaN or infinite"):
        load_model_input(tmp_path / "x.tif", 1, parse_window("400,40"))


def test_volume_prediction_refuses_an_all_nan_volume_before_running_the_model() -> None:
    volume = Volume(np.full((6, 5, 4), np.nan, dtype=np.float32), np.eye(4), "scan.nii.gz")
    # The model is never reached: the input is refused first.
    with pytest.raises(UserError, match=r"scan\.nii\.gz: all 120 values are NaN or infinite"):
        predict_volume(None, volume, parse_window("liver"), context=0)
