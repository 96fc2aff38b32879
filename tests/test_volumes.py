"""Volume geometry: display stacks and their inverse, 2.5-D channels, NIfTI round trips."""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tests.volume_data import LPS_AFFINE, SWAPPED_AFFINE, write_nifti
from utils.errors import UserError
from utils.volumes.geometry import Orientation, context_channels, load_nifti, save_nifti


def test_lps_volume_stack_is_a_plain_transpose() -> None:
    # i runs to the patient's left (= display columns), j to posterior (= rows), k to superior (= slices).
    data = np.arange(4 * 3 * 2).reshape(4, 3, 2)
    orientation = Orientation(data.shape, LPS_AFFINE)
    stack = orientation.to_stack(data)
    assert np.array_equal(stack, data.transpose(2, 1, 0))
    assert orientation.axcodes() == ("L", "P", "S")
    assert orientation.stack_spacing() == pytest.approx((3.0, 0.7, 0.8))
    assert np.array_equal(orientation.from_stack(stack), data)


def test_swapped_and_flipped_axes_land_on_the_same_display() -> None:
    # i runs anterior, j to the patient's right, k inferior: every display axis is reversed or swapped.
    data = np.random.default_rng(0).integers(0, 100, size=(5, 4, 3))
    orientation = Orientation(data.shape, SWAPPED_AFFINE)
    stack = orientation.to_stack(data)
    size_i, size_j, size_k = data.shape
    for s, r, c in [(0, 0, 0), (2, 4, 3), (1, 2, 0)]:
        assert stack[s, r, c] == data[size_i - 1 - r, size_j - 1 - c, size_k - 1 - s]
    assert stack.shape == (3, 5, 4)
    assert orientation.stack_spacing() == pytest.approx((3.0, 0.7, 0.8))
    assert np.array_equal(orientation.from_stack(stack), data)


def test_from_stack_keeps_a_trailing_class_axis() -> None:
    data = np.random.default_rng(1).random((5, 4, 3, 2))
    orientation = Orientation(data.shape[:3], SWAPPED_AFFINE)
    assert np.array_equal(orientation.from_stack(orientation.to_stack(data)), data)


def test_context_channels_repeat_the_edge_slice() -> None:
    stack = np.stack([np.full((2, 3), value, dtype=np.uint8) for value in (10, 20, 30, 40)])
    assert context_channels(stack, 0, 1)[0, 0].tolist() == [10, 10, 20]
    assert context_channels(stack, 2, 1)[0, 0].tolist() == [20, 30, 40]
    assert context_channels(stack, 3, 1)[0, 0].tolist() == [30, 40, 40]
    assert context_channels(stack, 3, 0).shape == (2, 3, 1)
    with pytest.raises(UserError, match="0 or 1"):
        context_channels(stack, 0, 2)


def test_nifti_round_trip_keeps_affine_and_header_codes(tmp_path: Path) -> None:
    data = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    source = write_nifti(tmp_path / "src.nii.gz", data, SWAPPED_AFFINE)
    volume = load_nifti(source)
    assert volume.data.dtype == np.float32 and np.array_equal(volume.data, data)
    assert volume.spacing == pytest.approx((0.7, 0.8, 3.0))
    labels = (data % 3).astype(np.uint8)
    save_nifti(tmp_path / "out.nii.gz", labels, volume.affine, like=source)
    written = nib.load(str(tmp_path / "out.nii.gz"))
    assert np.allclose(written.affine, SWAPPED_AFFINE) and written.get_data_dtype() == np.uint8
    assert np.array_equal(np.asarray(written.dataobj), labels)
    assert nib.aff2axcodes(written.affine) == nib.aff2axcodes(SWAPPED_AFFINE)
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


def test_four_d_nifti_is_refused(tmp_path: Path) -> None:
    path = write_nifti(tmp_path / "four.nii.gz", np.zeros((3, 3, 3, 2), dtype=np.int16), LPS_AFFINE)
    with pytest.raises(UserError, match="4-D"):
        load_nifti(path)
