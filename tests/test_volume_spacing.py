"""Voxel spacing that is zero, negative or not a number is refused with the file, never a traceback or 1 mm."""
from __future__ import annotations

import struct
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import import_dataset
from tests.dicom_series import write_series
from tests.volume_data import LPS_AFFINE, phantom, write_nifti
from utils.errors import UserError
from utils.volumes.geometry import nifti_header

PIXDIM_OFFSET = 80  # bytes: pixdim[1] of a NIfTI-1 header


def patched_pair(folder: Path, *, pixdim: tuple[float, float, float] | None = None,
                 sform: np.ndarray | None = None) -> tuple[Path, Path]:
    """An image/label pair whose header is damaged the same way: stored pixdim (no qform/sform) or a given sform."""
    hu, label = phantom((12, 10, 6))
    for sub, data in (("img", hu), ("lab", label)):
        header = nib.Nifti1Header()
        if sform is not None:  # set in the header itself: an image's affine would replace it on saving
            header["sform_code"] = 1
            header["srow_x"], header["srow_y"], header["srow_z"] = sform[:3]
        image = nib.Nifti1Image(data, None, header=header)
        path = folder / sub / "case0.nii"
        path.parent.mkdir(parents=True, exist_ok=True)
        nib.save(image, str(path))
        if pixdim is not None:  # written after nibabel, which would correct it
            raw = bytearray(path.read_bytes())
            raw[PIXDIM_OFFSET:PIXDIM_OFFSET + 12] = struct.pack("<3f", *pixdim)
            path.write_bytes(bytes(raw))
    return folder / "img", folder / "lab"


@pytest.mark.parametrize("pixdim", [(0.0, 1.0, 1.0), (-2.0, 1.0, 1.0), (float("nan"), 1.0, 1.0)])
def test_a_bad_pixdim_is_refused_with_the_file(tmp_path: Path, capsys, pixdim) -> None:
    images, labels = patched_pair(tmp_path, pixdim=pixdim)
    out = tmp_path / "out"
    assert import_dataset.main(["nifti", str(images), str(labels), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{images / 'case0.nii'}: voxel spacing (pixdim) ({pixdim[0]:g}, 1, 1) mm" in err
    assert "Traceback" not in err and "setting" not in err  # nor nibabel's own repair notice
    assert not out.exists()


def test_an_sform_with_a_zero_column_is_refused(tmp_path: Path, capsys) -> None:
    images, labels = patched_pair(tmp_path, sform=np.diag([1.0, 0.0, 2.0, 1.0]))
    assert import_dataset.main(["nifti", str(images), str(labels), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "case0.nii: voxel spacing (1, 0, 2) mm" in err and "OrientationError" not in err


def test_parallel_voxel_axes_are_refused(tmp_path: Path) -> None:
    affine = np.array([[1.0, 1.0, 0, 0], [0, 0, 0, 0], [0, 0, 2.0, 0], [0, 0, 0, 1]])
    images, _ = patched_pair(tmp_path, sform=affine)
    with pytest.raises(UserError, match="voxel axes of its affine .* are not independent"):
        nifti_header(images / "case0.nii")


def test_a_good_header_still_reads(tmp_path: Path) -> None:
    path = write_nifti(tmp_path / "x.nii.gz", np.zeros((3, 3, 3), np.float32), LPS_AFFINE)
    assert np.allclose(nifti_header(path)[1], LPS_AFFINE)


def test_dicom_pixel_spacing_zero_is_refused_with_the_files(tmp_path: Path, capsys) -> None:
    hu, label = phantom((12, 10, 4))
    write_series(tmp_path / "series" / "ct1", (hu + 1024).astype(np.uint16), spacing=(0.0, 0.8, 2.5))
    write_nifti(tmp_path / "labels" / "ct1.nii.gz", label, np.eye(4))
    out = tmp_path / "out"
    assert import_dataset.main(["dicom", str(tmp_path / "series"), str(tmp_path / "labels"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "4 file(s) have a PixelSpacing that is zero, negative or not a number: IM" in err
    assert "Traceback" not in err and not out.exists()
