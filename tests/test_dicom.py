"""Tests for utils/volumes/dicom.py: slice order, HU values, the RAS affine, and every refusal."""
from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.encaps import encapsulate
from pydicom.pixels import get_decoder
from pydicom.uid import JPEGLSLossless

from tests.dicom_series import write_series
from utils.errors import UserError
from utils.volumes.dicom import is_dicom_series, read_series

ORIGIN = np.array([-150.0, -170.0, -300.0])
# Row spacing differs from column spacing so a swapped PixelSpacing shows.
SPACING = (0.7, 0.9, 2.5)


def _hu_volume(rows: int = 6, columns: int = 5, slices: int = 7, seed: int = 0) -> np.ndarray:
    """A random HU volume (rows, columns, slices) with every slice distinct."""
    rng = np.random.default_rng(seed)
    return rng.integers(-1024, 2000, size=(rows, columns, slices)).astype(np.int16)


def _write_hu(folder: Path, hu: np.ndarray, **options) -> list[Path]:
    """Write `hu` as stored = HU + 1024 with intercept -1024."""
    return write_series(folder, (hu.astype(np.int32) + 1024).astype(np.uint16), spacing=SPACING, **options)


def _ijk(array_rows_columns_slices: np.ndarray) -> np.ndarray:
    """(rows, columns, slices) -> the reader's (column, row, slice) = (i, j, k) order."""
    return array_rows_columns_slices.transpose(1, 0, 2)


def _lps_to_ras(point: np.ndarray) -> np.ndarray:
    """Flip x and y: DICOM LPS+ -> NIfTI RAS+."""
    return np.asarray(point) * np.array([-1.0, -1.0, 1.0])


def _edit(path: Path, change) -> None:
    """Rewrite one DICOM file after `change(ds)`."""
    ds = pydicom.dcmread(path)
    change(ds)
    ds.save_as(path, enforce_file_format=True)


def _refusal(folder: Path) -> str:
    """The UserError message read_series gives for `folder` (fails the test when it reads)."""
    with pytest.raises(UserError) as caught:
        read_series(folder)
    return str(caught.value)


def test_shuffled_files_give_hu_in_position_order(tmp_path: Path) -> None:
    hu = _hu_volume()
    paths = _write_hu(tmp_path, hu)
    names_in_k_order = [p.name for p in paths]
    instance_numbers = [int(pydicom.dcmread(p).InstanceNumber) for p in paths]
    assert names_in_k_order != sorted(names_in_k_order)
    assert instance_numbers != sorted(instance_numbers)

    volume = read_series(tmp_path)

    assert volume.data.dtype == np.float32
    assert volume.data.shape == (5, 6, 7)
    np.testing.assert_array_equal(volume.data, _ijk(hu).astype(np.float32))
    assert volume.source == str(tmp_path)


def test_affine_follows_ipp_iop_arithmetic(tmp_path: Path) -> None:
    hu = _hu_volume()
    paths = _write_hu(tmp_path, hu)
    volume = read_series(tmp_path)

    assert nib.aff2axcodes(volume.affine) == ("L", "P", "S")
    np.testing.assert_allclose(volume.spacing, (0.9, 0.7, 2.5))
    row_cosine, column_cosine, normal = np.eye(3)
    for i, j, k in [(0, 0, 0), (3, 1, 2), (4, 5, 6)]:
        lps = ORIGIN + i * SPACING[1] * row_cosine + j * SPACING[0] * column_cosine + k * SPACING[2] * normal
        np.testing.assert_allclose(volume.affine @ [i, j, k, 1], [*_lps_to_ras(lps), 1], atol=1e-6)

    # nibabel's own DICOM wrapper (rows-first voxel order) agrees once its two in-plane axes are swapped.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from nibabel.nicom.dicomwrappers import wrapper_from_file
        reference = wrapper_from_file(str(paths[0])).affine
    np.testing.assert_allclose(volume.affine[:3, 0], _lps_to_ras(reference[:3, 1]), atol=1e-6)
    np.testing.assert_allclose(volume.affine[:3, 1], _lps_to_ras(reference[:3, 0]), atol=1e-6)
    np.testing.assert_allclose(volume.affine[:3, 3], _lps_to_ras(reference[:3, 3]), atol=1e-6)


def test_reversed_slice_direction_is_sorted_by_position(tmp_path: Path) -> None:
    hu = _hu_volume()
    write_series(tmp_path, (hu.astype(np.int32) + 1024).astype(np.uint16), spacing=(0.7, 0.9, -2.5))
    volume = read_series(tmp_path)

    # The last slice written is the lowest, so it becomes k = 0.
    np.testing.assert_array_equal(volume.data, _ijk(hu[:, :, ::-1]).astype(np.float32))
    assert nib.aff2axcodes(volume.affine) == ("L", "P", "S")
    np.testing.assert_allclose(volume.affine[:3, 2], [0, 0, 2.5], atol=1e-6)
    np.testing.assert_allclose(volume.affine[:3, 3], _lps_to_ras(ORIGIN + 6 * -2.5 * np.array([0, 0, 1])), atol=1e-6)


def test_oblique_orientation(tmp_path: Path) -> None:
    a, b = np.radians(30), np.radians(20)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    rotation = rz @ rx
    row_cosine, column_cosine, normal = rotation[:, 0], rotation[:, 1], rotation[:, 2]
    hu = _hu_volume()
    _write_hu(tmp_path, hu, orientation=(*row_cosine, *column_cosine))
    volume = read_series(tmp_path)

    np.testing.assert_array_equal(volume.data, _ijk(hu).astype(np.float32))
    expected = np.eye(4)
    expected[:3, 0] = _lps_to_ras(row_cosine * SPACING[1])
    expected[:3, 1] = _lps_to_ras(column_cosine * SPACING[0])
    expected[:3, 2] = _lps_to_ras(normal * SPACING[2])
    expected[:3, 3] = _lps_to_ras(ORIGIN)
    np.testing.assert_allclose(volume.affine, expected, atol=1e-5)
    np.testing.assert_allclose(volume.spacing, (0.9, 0.7, 2.5), atol=1e-5)


def test_gantry_tilt_uses_the_measured_slice_step(tmp_path: Path) -> None:
    hu = _hu_volume()
    paths = _write_hu(tmp_path, hu)
    # A tilted gantry shifts each slice in y while the image plane stays axial.
    for k, path in enumerate(paths):
        tilted = [ORIGIN[0], ORIGIN[1] + 0.5 * k, ORIGIN[2] + 2.5 * k]
        _edit(path, lambda ds, tilted=tilted: setattr(ds, "ImagePositionPatient", tilted))
    volume = read_series(tmp_path)
    np.testing.assert_array_equal(volume.data, _ijk(hu).astype(np.float32))
    np.testing.assert_allclose(volume.affine[:3, 2], _lps_to_ras([0, 0.5, 2.5]), atol=1e-6)


def test_slope_and_intercept(tmp_path: Path) -> None:
    stored = np.random.default_rng(1).integers(0, 1500, size=(4, 3, 5)).astype(np.uint16)
    write_series(tmp_path, stored, slope=2.0, intercept=-1000.0)
    volume = read_series(tmp_path)
    np.testing.assert_array_equal(volume.data, _ijk(stored.astype(np.float32) * 2 - 1000))


def test_missing_rescale_means_slope_one_intercept_zero(tmp_path: Path) -> None:
    stored = np.random.default_rng(2).integers(-500, 500, size=(4, 3, 3)).astype(np.int16)
    paths = write_series(tmp_path, stored, intercept=0.0)
    for path in paths:
        _edit(path, lambda ds: (delattr(ds, "RescaleSlope"), delattr(ds, "RescaleIntercept")))
    np.testing.assert_array_equal(read_series(tmp_path).data, _ijk(stored.astype(np.float32)))


def test_single_slice_uses_slice_thickness(tmp_path: Path) -> None:
    write_series(tmp_path, np.zeros((4, 3, 1), np.uint16), spacing=(0.7, 0.9, 3.0))
    volume = read_series(tmp_path)
    assert volume.data.shape == (3, 4, 1)
    np.testing.assert_allclose(volume.affine[:3, 2], [0, 0, 3.0])


def test_hidden_files_and_dicomdir_are_skipped(tmp_path: Path) -> None:
    hu = _hu_volume(slices=3)
    _write_hu(tmp_path, hu)
    (tmp_path / ".DS_Store").write_bytes(b"\x00junk")
    (tmp_path / "DICOMDIR").write_bytes(b"\x00" * 128 + b"DICM")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "notes.txt").write_text("not read: the reader is not recursive")
    np.testing.assert_array_equal(read_series(tmp_path).data, _ijk(hu).astype(np.float32))


def test_refuses_mixed_series_listing_uids_and_counts(tmp_path: Path) -> None:
    hu = _hu_volume()
    _write_hu(tmp_path, hu, series_uid="1.2.3.4.100")
    _write_hu(tmp_path / "other", hu[:, :, :3], series_uid="1.2.3.4.200", origin=(0.0, 0.0, 100.0), shuffle_seed=5)
    for path in (tmp_path / "other").iterdir():
        path.rename(tmp_path / f"b_{path.name}")
    message = _refusal(tmp_path)
    assert "mixed series" in message
    assert "1.2.3.4.100 (number 1): 7 file(s)" in message and "1.2.3.4.200 (number 1): 3 file(s)" in message


def test_refuses_junk_files_naming_each(tmp_path: Path) -> None:
    _write_hu(tmp_path, _hu_volume())
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "fake.dcm").write_bytes(b"\x00" * 300)
    message = _refusal(tmp_path)
    assert "2 file(s) are not readable DICOM" in message
    assert "notes.txt" in message and "fake.dcm" in message


def test_refuses_duplicate_position_naming_both_files(tmp_path: Path) -> None:
    paths = _write_hu(tmp_path, _hu_volume())
    shutil.copy(paths[2], tmp_path / "copy_of_slice")
    message = _refusal(tmp_path)
    assert "same position" in message
    assert paths[2].name in message and "copy_of_slice" in message and "-295.000" in message


def test_refuses_gap_naming_positions(tmp_path: Path) -> None:
    paths = _write_hu(tmp_path, _hu_volume())
    paths[3].unlink()
    message = _refusal(tmp_path)
    assert "non-uniform slice spacing" in message and "median step is 2.500 mm" in message
    assert "5.000 mm between -295.000 and -290.000 mm" in message
    assert f"{paths[2].name} -> {paths[4].name}" in message


def test_refuses_differing_pixel_spacing_and_size_naming_files(tmp_path: Path) -> None:
    paths = _write_hu(tmp_path, _hu_volume())
    _edit(paths[1], lambda ds: setattr(ds, "PixelSpacing", [0.5, 0.5]))
    _edit(paths[4], lambda ds: setattr(ds, "ImageOrientationPatient", [0, 1, 0, 0, 0, -1]))
    message = _refusal(tmp_path)
    expected = f"1 file(s) differ in PixelSpacing from the other 6, which have (0.7, 0.9): {paths[1].name} (0.5, 0.5)"
    assert expected in message
    assert "differ in ImageOrientationPatient" in message and paths[4].name in message


def test_refuses_missing_geometry_and_junk_in_one_message(tmp_path: Path) -> None:
    paths = _write_hu(tmp_path, _hu_volume())
    for path in paths[:2]:
        _edit(path, lambda ds: delattr(ds, "ImagePositionPatient"))
    (tmp_path / "readme.txt").write_text("hello")
    message = _refusal(tmp_path)
    assert "2 file(s) have no (or a malformed) ImagePositionPatient" in message
    assert paths[0].name in message and paths[1].name in message and "readme.txt" in message


def test_refuses_junk_duplicate_and_gap_in_one_message(tmp_path: Path) -> None:
    paths = _write_hu(tmp_path, _hu_volume())
    paths[3].unlink()
    shutil.copy(paths[5], tmp_path / "again")
    (tmp_path / "notes.txt").write_text("hello")
    message = _refusal(tmp_path)
    assert "notes.txt" in message and "same position" in message and "non-uniform slice spacing" in message


def test_refuses_multi_frame(tmp_path: Path) -> None:
    paths = _write_hu(tmp_path, _hu_volume(slices=3))
    _edit(paths[0], lambda ds: setattr(ds, "NumberOfFrames", 2))
    message = _refusal(tmp_path)
    assert "multi-frame" in message and f"{paths[0].name} (2 frames)" in message


@pytest.mark.skipif(get_decoder(JPEGLSLossless).is_available, reason="a JPEG-LS decoder is installed here")
def test_refuses_undecodable_compression_naming_syntax(tmp_path: Path) -> None:
    paths = _write_hu(tmp_path, _hu_volume(slices=3))

    def compress(ds: pydicom.Dataset) -> None:
        ds.file_meta.TransferSyntaxUID = JPEGLSLossless
        ds.PixelData = encapsulate([b"\xff\xd8not-really-jpeg-ls\xff\xd9"])
        ds["PixelData"].VR = "OB"

    _edit(paths[1], compress)
    message = _refusal(tmp_path)
    assert "JPEG-LS Lossless Image Compression" in message and paths[1].name in message


def test_refuses_empty_folder_and_folder_without_dicom(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert "is empty" in _refusal(tmp_path / "empty")
    (tmp_path / "pngs").mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "pngs" / "a.png")
    message = _refusal(tmp_path / "pngs")
    assert "No DICOM image files" in message and "a.png" in message
    assert "does not exist" in _refusal(tmp_path / "missing")


def test_is_dicom_series(tmp_path: Path) -> None:
    _write_hu(tmp_path / "ct", _hu_volume(slices=2))
    (tmp_path / "pngs").mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "pngs" / "a.png")
    (tmp_path / "empty").mkdir()
    assert is_dicom_series(tmp_path / "ct")
    assert not is_dicom_series(tmp_path / "pngs")
    assert not is_dicom_series(tmp_path / "empty")
    assert not is_dicom_series(tmp_path / "missing")
    assert not is_dicom_series(next((tmp_path / "ct").iterdir()))
