"""Tests for the synthetic abdominal CT volumes (NIfTI, Decathlon layout)."""
from __future__ import annotations

import functools
import json

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from utils.cli import run_main
from utils.errors import UserError
from utils.synthetic.__main__ import main
from utils.synthetic.anatomy import Patient, ellipsoid
from utils.synthetic.volumes import CLASS_NAMES, make_volume, write_volumes

SIZE, SLICES = 128, 48


@functools.lru_cache(maxsize=None)
def volume(index: int, size: int = SIZE, slices: int = SLICES, seed: int = 0):
    """make_volume, computed once per argument set for the whole module."""
    return make_volume(index, size, slices, seed)


def world(affine: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """RAS+ millimetre coordinates (n, 3) of the voxels in `mask`."""
    ijk = np.argwhere(mask)
    return ijk @ affine[:3, :3].T + affine[:3, 3]


@functools.lru_cache(maxsize=None)
def body_of(index: int) -> np.ndarray:
    """The patient in volume `index`: the largest region denser than -500 HU (the table is apart), holes filled."""
    parts, count = ndimage.label(volume(index)[0] > -500)
    sizes = ndimage.sum_labels(np.ones_like(parts), parts, range(1, count + 1))
    body = parts == 1 + int(np.argmax(sizes))
    # Lungs and bowel gas are holes in each axial slice.
    return np.stack([ndimage.binary_fill_holes(body[..., k]) for k in range(body.shape[2])], axis=2)


def test_shapes_dtypes_and_classes() -> None:
    """HU int16 and labels uint8 on the (size, size, slices) grid; labels are 0, 1, 2 only."""
    hu, label, affine = volume(0)
    assert hu.shape == label.shape == (SIZE, SIZE, SLICES)
    assert hu.dtype == np.int16 and label.dtype == np.uint8
    assert affine.shape == (4, 4) and affine.dtype == np.float64
    assert set(np.unique(label)) <= {0, 1, 2} and (label == 1).any()
    assert CLASS_NAMES == ["background", "liver", "tumour"]
    small = make_volume(0, size=32, slices=16)
    assert small[0].shape == small[1].shape == (32, 32, 16)


def test_deterministic_and_index_dependent() -> None:
    """Same arguments give identical arrays; another index or seed gives another volume."""
    first, again = make_volume(2, 48, 16, seed=3), make_volume(2, 48, 16, seed=3)
    for a, b in zip(first, again):
        assert np.array_equal(a, b)
    for other in (make_volume(3, 48, 16, seed=3), make_volume(2, 48, 16, seed=4)):
        assert not np.array_equal(first[0], other[0])
        assert not np.array_equal(first[1], other[1])
        assert not np.array_equal(first[2], other[2])


def test_affine_is_lps_ordered_oblique_axial() -> None:
    """Spacing 380/size in-plane and 240/slices along z, x and y flipped, a 3-8 degree turn about z, offset origin."""
    angles = []
    for index in range(4):
        affine = volume(index)[2]
        columns = affine[:3, :3]
        assert np.allclose(np.linalg.norm(columns, axis=0), [380 / SIZE, 380 / SIZE, 5.0], atol=1e-5)
        assert np.allclose(columns[2], [0, 0, 5.0]) and np.allclose(columns[:2, 2], 0)
        assert nib.aff2axcodes(affine) == ("L", "P", "S")
        # Undo the flips: what is left is a rotation about z by 3-8 degrees.
        rotation = columns[:2, :2] / (-380 / SIZE)
        assert np.allclose(rotation @ rotation.T, np.eye(2), atol=1e-5) and np.linalg.det(rotation) > 0
        angle = np.degrees(np.arctan2(rotation[1, 0], rotation[0, 0]))
        assert 3 - 1e-3 <= abs(angle) <= 8 + 1e-3
        angles.append(angle)
        assert np.abs(affine[:3, 3]).min() > 10
        assert np.array_equal(affine[3], [0, 0, 0, 1])
        # The centre of the grid lies near the scanner axis (x, y close to 0).
        centre = affine @ np.array([(SIZE - 1) / 2, (SIZE - 1) / 2, (SLICES - 1) / 2, 1])
        assert np.abs(centre[:2]).max() < 10
    assert len({round(a, 3) for a in angles}) == len(angles)
    assert np.allclose(np.linalg.norm(make_volume(0, 64, 96)[2][:3, :3], axis=0), [380 / 64, 380 / 64, 2.5])


def test_anatomy_sides_in_world_coordinates() -> None:
    """In RAS+ mm the liver lies to the patient's right (+x) of the body centre and the spine posterior (-y)."""
    for index in range(3):
        hu, label, affine = volume(index)
        body_voxels = world(affine, body_of(index))
        body = body_voxels.mean(axis=0)
        liver = world(affine, label > 0).mean(axis=0)
        assert liver[0] > body[0] + 30
        bone = world(affine, hu > 300)
        spine = bone[np.abs(bone[:, 0] - body[0]) < 25]
        assert len(spine) > 100
        assert np.median(spine[:, 1]) < body[1] - 20
        # The table lies behind the patient: the dense voxels outside the body are posterior to all of it.
        table = world(affine, (hu > -500) & ~body_of(index))
        assert len(table) > 0 and np.median(table[:, 1]) < body_voxels[:, 1].min()


def test_same_patient_at_another_resolution() -> None:
    """Anatomy lives in millimetres: a coarser grid gives the same liver volume and position within tolerance."""
    fine_hu, fine, fine_affine = volume(1)
    coarse_hu, coarse, coarse_affine = make_volume(1, size=64, slices=24)
    voxel_fine = abs(np.linalg.det(fine_affine[:3, :3]))
    voxel_coarse = abs(np.linalg.det(coarse_affine[:3, :3]))
    assert abs((coarse > 0).sum() * voxel_coarse / ((fine > 0).sum() * voxel_fine) - 1) < 0.1
    shift = world(coarse_affine, coarse > 0).mean(axis=0) - world(fine_affine, fine > 0).mean(axis=0)
    assert np.abs(shift).max() < 6


def test_hounsfield_units_of_tissues() -> None:
    """Air, fat, liver, spleen, tumour and bone sit in their CT ranges; the liver is brighter than the spleen."""
    for index in range(3):
        hu, label, affine = volume(index)
        corners = np.concatenate([hu[:6, :6].ravel(), hu[-6:, :6].ravel(), hu[:6, -6:].ravel()])
        assert -1030 < np.median(corners) < -970
        liver = np.median(hu[label == 1])
        assert 50 <= liver <= 72
        inside = hu[body_of(index)]
        assert ((inside > -140) & (inside < -60)).mean() > 0.08  # subcutaneous and visceral fat
        assert (inside < -800).sum() > 50  # bowel gas and lung bases
        assert hu.max() >= 400 and (hu > 400).sum() > 200
        # Spleen: the inner half of its ellipsoid, found in world coordinates through the affine.
        patient = Patient(np.random.default_rng([0, index]))
        centre, semi, angle = patient.spleen
        x, y, z = (world(affine, np.ones(hu.shape, bool)) - patient.origin).T
        spleen = (ellipsoid(x, y, z, centre, semi, angle) < 0.5).reshape(hu.shape) & (label == 0)
        assert spleen.sum() > 50
        assert 35 <= np.median(hu[spleen]) <= liver - 5
        if (label == 2).any():
            assert np.median(hu[label == 2]) < liver - 12


def test_liver_is_not_a_threshold() -> None:
    """Noise and texture: no HU window alone recovers the liver (best Dice well below 1)."""
    hu, label, _ = volume(0)
    liver = label == 1
    counts = [np.concatenate([[0], np.cumsum(np.bincount(hu[m].astype(int) + 1024, minlength=4096))])
              for m in (liver, ~liver)]
    best = 0.0
    for low in range(1024 - 50, 1024 + 150):
        high = np.arange(low + 1, 1024 + 200)
        hit, extra = counts[0][high] - counts[0][low], counts[1][high] - counts[1][low]
        best = max(best, float((2 * hit / (liver.sum() + hit + extra)).max()))
    assert best < 0.8
    assert 10 <= np.std(hu[liver]) <= 30


def test_liver_spans_a_contiguous_middle_run_of_slices() -> None:
    """Liver slices are one run covering about 50-70 % of the volume, with liver-free slices at both ends."""
    for index in range(4):
        present = np.flatnonzero((volume(index)[1] > 0).any(axis=(0, 1)))
        assert present.size == present[-1] - present[0] + 1
        assert present[0] >= 2 and present[-1] <= SLICES - 3
        assert 0.45 * SLICES <= present.size <= 0.78 * SLICES


def test_neighbouring_slices_agree() -> None:
    """The outline changes smoothly with z: IoU > 0.7 across the liver's bulk, nested masks toward its tips."""
    for index in range(4):
        liver = volume(index)[1] > 0
        areas = liver.sum(axis=(0, 1))
        ious = []
        for k in range(SLICES - 1):
            a, b = liver[..., k], liver[..., k + 1]
            if not (a.any() and b.any()):
                continue
            overlap = (a & b).sum()
            ious.append(overlap / (a | b).sum())
            smaller = min(areas[k], areas[k + 1])
            # A tapering tip shrinks from slice to slice (IoU ~ d/(d+5) near a dome), but stays inside its neighbour.
            if smaller >= 0.02 * areas.max():
                assert overlap / smaller > 0.75, (index, k)
            if smaller >= 0.5 * areas.max():
                assert ious[-1] > 0.7, (index, k)
        assert np.mean(ious) > 0.75


def test_tumours_lie_inside_the_liver() -> None:
    """Tumour voxels lie in the liver's shape and are surrounded by liver; some volumes have none, most have some."""
    with_tumour = 0
    for index in range(6):
        hu, label, affine = volume(index)
        tumour = label == 2
        if not tumour.any():
            continue
        with_tumour += 1
        patient = Patient(np.random.default_rng([0, index]))
        x, y, z = (world(affine, tumour) - patient.origin).T.astype(np.float32)
        assert patient.liver_shape(x, y, z).all()
        ring = ndimage.binary_dilation(tumour) & ~tumour
        assert (label[ring] == 1).mean() > 0.6
    assert 2 <= with_tumour < 6


def test_tumour_label_is_clipped_to_the_liver(monkeypatch) -> None:
    """A lesion straddling the liver's edge is labelled tumour only where it overlaps liver."""
    import utils.synthetic.volumes as synthetic_volume

    class EdgeTumour(synthetic_volume.Patient):
        def __init__(self, rng: np.random.Generator) -> None:
            super().__init__(rng)
            centre, semi, _angle = self.lobes[0]
            self.tumours = [((centre[0] + semi[0] * 0.8, centre[1], centre[2]), (35.0, 35.0, 35.0), 30.0)]

    monkeypatch.setattr(synthetic_volume, "Patient", EdgeTumour)
    hu, label, affine = synthetic_volume.make_volume(0, size=64, slices=24)
    patient = EdgeTumour(np.random.default_rng([0, 0]))
    x, y, z = (world(affine, np.ones(hu.shape, bool)) - patient.origin).T
    lesion = ellipsoid(x, y, z, *patient.tumours[0][0:2]).reshape(hu.shape)
    tumour = label == 2
    assert tumour.sum() > 20 and (lesion[tumour] < 1.3).all()
    assert ((lesion < 0.8) & (label == 0)).sum() > 20  # the part outside the liver stays background
    assert patient.liver_shape(*(world(affine, tumour) - patient.origin).T.astype(np.float32)).all()


def test_files_round_trip_and_layout(tmp_path) -> None:
    """imagesTr/labelsTr/dataset.json in Decathlon style; files read back with the same data, dtype and affine."""
    root = tmp_path / "SynthCT"
    cases = write_volumes(root, count=2, size=32, slices=16, seed=5)
    assert cases == ["synthct_000", "synthct_001"]
    images = sorted(p.name for p in (root / "imagesTr").iterdir())
    assert images == ["synthct_000_0000.nii.gz", "synthct_001_0000.nii.gz"]
    assert sorted(p.name for p in (root / "labelsTr").iterdir()) == ["synthct_000.nii.gz", "synthct_001.nii.gz"]
    for index, case in enumerate(cases):
        hu, label, affine = make_volume(index, 32, 16, seed=5)
        image = nib.load(root / "imagesTr" / f"{case}_0000.nii.gz")
        mask = nib.load(root / "labelsTr" / f"{case}.nii.gz")
        assert image.get_data_dtype() == np.int16 and mask.get_data_dtype() == np.uint8
        assert np.array_equal(np.asanyarray(image.dataobj), hu)
        assert np.array_equal(np.asanyarray(mask.dataobj), label)
        assert np.array_equal(image.affine, affine) and np.array_equal(mask.affine, affine)
        assert image.header.get_xyzt_units()[0] == "mm" and int(image.header["sform_code"]) == 1
    spec = json.loads((root / "dataset.json").read_text(encoding="utf-8"))
    assert spec["modality"] == {"0": "CT"}
    assert spec["labels"] == {"0": "background", "1": "liver", "2": "tumour"}
    assert spec["numTraining"] == 2 and len(spec["training"]) == 2
    for entry in spec["training"]:
        assert (root / entry["image"]).is_file() and (root / entry["label"]).is_file()
    assert not [p for p in root.rglob("*") if p.name.startswith(".")]  # no temporary files left


def test_write_refuses_then_overwrites(tmp_path) -> None:
    """A filled folder is refused; overwrite replaces it and drops the cases of a larger earlier run."""
    root = tmp_path / "ct"
    write_volumes(root, count=2, size=32, slices=16)
    with pytest.raises(UserError, match="overwrite"):
        write_volumes(root, count=1, size=32, slices=16)
    write_volumes(root, count=1, size=32, slices=16, overwrite=True)
    assert [p.name for p in (root / "imagesTr").iterdir()] == ["synthct_000_0000.nii.gz"]
    assert [p.name for p in (root / "labelsTr").iterdir()] == ["synthct_000.nii.gz"]
    assert json.loads((root / "dataset.json").read_text())["numTraining"] == 1


@pytest.mark.parametrize("kwargs, word", [({"size": 8}, "size"), ({"slices": 4}, "slices"), ({"count": 0}, "count"),
                                          ({"seed": -1}, "seed")])
def test_invalid_arguments_are_user_errors(tmp_path, kwargs, word) -> None:
    """Out-of-range options are refused with a message naming them, before anything is written."""
    with pytest.raises(UserError, match=word):
        write_volumes(tmp_path / "x", **kwargs)
    assert not (tmp_path / "x").exists()
    with pytest.raises(UserError, match="index"):
        make_volume(-1)


def test_cli_writes_layout(tmp_path, capsys) -> None:
    """python -m utils.synthetic --volumes writes the layout; a bad option is one 'error:' line and exit code 2."""

    out = tmp_path / "cli"
    assert run_main(main, ["--volumes", "--out", str(out), "--count", "2", "--size", "32", "--slices", "16"]) == 0
    assert len(list((out / "imagesTr").glob("*.nii.gz"))) == 2 and (out / "dataset.json").is_file()
    capsys.readouterr()
    assert run_main(main, ["--volumes", "--out", str(tmp_path / "bad"), "--slices", "4"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


def test_synthetic_cli_delegates_volumes(tmp_path, capsys) -> None:
    """python -m utils.synthetic --volumes writes NIfTI volumes with --slices instead of PNG slices."""
    out = tmp_path / "vol"
    assert run_main(main, ["--volumes", "--out", str(out), "--count", "1", "--size", "32", "--slices", "20"]) == 0
    image = nib.load(out / "imagesTr" / "synthct_000_0000.nii.gz")
    assert image.shape == (32, 32, 20)
    assert not (out / "Images").exists()
    assert run_main(main, ["--volumes", "--out", str(out), "--count", "1", "--size", "32"]) == 2
    assert capsys.readouterr().err.startswith("error: ")
