"""Tiny NIfTI volumes with known geometry for the volume tests."""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

# Voxel axes run right->left, anterior->posterior, inferior->superior (LPS order, as dcm2niix often writes),
# with anisotropic spacing and an offset: a non-identity affine whose axis codes are ('L', 'P', 'S').
LPS_AFFINE = np.array([[-0.8, 0.0, 0.0, 120.0],
                       [0.0, -0.7, 0.0, 95.0],
                       [0.0, 0.0, 3.0, -40.0],
                       [0.0, 0.0, 0.0, 1.0]])
# The same kind of grid stored with the first two voxel axes swapped and the slice axis first-reversed.
SWAPPED_AFFINE = np.array([[0.0, 0.8, 0.0, -30.0],
                           [0.7, 0.0, 0.0, -60.0],
                           [0.0, 0.0, -3.0, 50.0],
                           [0.0, 0.0, 0.0, 1.0]])


def phantom(shape: tuple[int, int, int] = (24, 20, 10), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(HU float32, label uint8): soft tissue 40 HU, a 200 HU box (class 1) holding a 120 HU core (class 2)."""
    rng = np.random.default_rng(seed)
    hu = np.full(shape, 40.0, dtype=np.float32) + rng.normal(0, 3, shape).astype(np.float32)
    label = np.zeros(shape, dtype=np.uint8)
    x0, y0 = rng.integers(2, 6, size=2)
    label[x0:x0 + 10, y0:y0 + 8, 2:shape[2] - 3] = 1
    label[x0 + 3:x0 + 6, y0 + 3:y0 + 5, 4:6] = 2
    hu[label == 1] = 200.0
    hu[label == 2] = 120.0
    return hu, label


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    """Save `data` with `affine` (sform and qform) to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = nib.Nifti1Image(data, affine)
    image.set_qform(affine, 1)
    image.set_sform(affine, 1)
    nib.save(image, str(path))
    return path


def write_pairs(images: Path, labels: Path, count: int = 3, affine: np.ndarray = LPS_AFFINE,
                shape: tuple[int, int, int] = (24, 20, 10)) -> list[str]:
    """`count` same-name image/label volumes in two folders; returns the case names."""
    names = []
    for index in range(count):
        hu, label = phantom(shape, seed=index)
        name = f"case{index}"
        write_nifti(images / f"{name}.nii.gz", hu.astype(np.int16), affine)
        write_nifti(labels / f"{name}.nii.gz", label, affine)
        names.append(name)
    return names
