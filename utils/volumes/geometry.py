"""Medical volumes: the Volume record, NIfTI reading and writing, and axial slice stacks in display orientation.

A volume is sliced in three steps that are exactly invertible, so predictions land on the source voxels:
1. reorient to the closest RAS+ voxel order (flips and axis swaps only, never a resampling);
2. take the axial planes, inferior to superior;
3. show each plane as a radiologist does: anterior at the top, the patient's right on the image's left.
The result is a (slices, rows, columns) stack whose spacing is (through-plane, row, column) in mm.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from utils.errors import UserError
from utils.io.files import atomic_path

NIFTI_SUFFIXES = (".nii", ".nii.gz")


@dataclass
class Volume:
    """A 3-D array in its file's voxel order with the affine that maps voxel (i, j, k) to RAS+ millimetres."""

    data: np.ndarray
    affine: np.ndarray
    source: str

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along i, j, k (the affine's column norms)."""
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))


def is_nifti(path: str | os.PathLike) -> bool:
    """True for a .nii or .nii.gz file name."""
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def nifti_stem(path: str | os.PathLike) -> str:
    """File name without .nii / .nii.gz."""
    name = Path(path).name
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            return name[:-len(suffix)]
    return Path(path).stem


def _nibabel():
    """nibabel, imported on first use so 2-D users never pay for it."""
    import nibabel
    return nibabel


def _fmt(values: np.ndarray) -> str:
    """Numbers as a short printable tuple."""
    return "(" + ", ".join(f"{float(v):g}" for v in values) + ")"


def check_spacing(affine: np.ndarray, source: str | os.PathLike) -> None:
    """Refuse an affine whose voxel spacing is zero or not a number, or whose voxel axes do not span 3-D space."""
    matrix = np.asarray(affine, dtype=np.float64)[:3, :3]
    spacing = np.linalg.norm(matrix, axis=0)
    if not np.isfinite(affine).all() or not (spacing > 0).all():
        raise UserError(f"{source}: voxel spacing {_fmt(spacing)} mm (affine {np.round(affine, 3).tolist()}): a "
                        f"spacing must be a positive number; fix the file's header (pixdim, qform or sform)")
    # Two (nearly) parallel voxel axes cannot be reoriented or measured in millimetres.
    if abs(np.linalg.det(matrix)) < 1e-6 * float(np.prod(spacing)):
        raise UserError(f"{source}: the voxel axes of its affine {np.round(affine, 3).tolist()} are not independent; "
                        f"fix the file's header (qform or sform)")


def _stored_pixdim(path: str | os.PathLike, header) -> np.ndarray:
    """pixdim[1:4] as the file stores it (nibabel quietly turns 0 into 1 and negatives positive when loading)."""
    from nibabel.openers import ImageOpener

    with ImageOpener(str(path)) as handle:
        return np.asarray(type(header).from_fileobj(handle, check=False)["pixdim"][1:4], dtype=np.float64)


def nifti_header(path: str | os.PathLike) -> tuple[tuple[int, ...], np.ndarray]:
    """Shape and affine of a NIfTI file without reading its voxels; unusable voxel spacing is a UserError."""
    nib = _nibabel()
    logger = logging.getLogger("nibabel.global")
    level = logger.level
    logger.setLevel(logging.ERROR)  # the spacing nibabel would quietly fix is reported below instead
    try:
        image = nib.load(str(path))
        # Without an sform the affine is built from pixdim, so the stored values are the spacing.
        pixdim = _stored_pixdim(path, image.header) if int(image.header["sform_code"]) == 0 else None
        affine = np.asarray(image.affine, dtype=np.float64)
    except FileNotFoundError:
        raise UserError(f"file not found: {path}") from None
    except Exception as err:  # nibabel raises several unrelated types for damaged files
        raise UserError(f"{path}: not a readable NIfTI file ({err})") from None
    finally:
        logger.setLevel(level)
    if pixdim is not None and not (np.isfinite(pixdim) & (pixdim > 0)).all():
        raise UserError(f"{path}: voxel spacing (pixdim) {_fmt(pixdim)} mm: a spacing must be a positive number; "
                        f"fix the file's header")
    check_spacing(affine, path)
    return tuple(int(n) for n in image.shape), affine


def squeeze_3d(shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """The 3-D shape of a file whose extra dimensions are all 1, or None for 4-D (and 2-D) data."""
    if len(shape) < 3 or any(n != 1 for n in shape[3:]):
        return None
    return shape[:3]


def load_nifti(path: str | os.PathLike, dtype: type | None = np.float32) -> Volume:
    """Read a 3-D NIfTI file (scale slope/intercept applied); 4-D or 2-D files are a UserError."""
    nib = _nibabel()
    shape, affine = nifti_header(path)
    shape3 = squeeze_3d(shape)
    if shape3 is None:
        raise UserError(f"{path}: {len(shape)}-D data of shape {shape}; only 3-D volumes are supported")
    try:
        image = nib.load(str(path))
        data = np.asarray(image.dataobj) if dtype is None else np.asarray(image.get_fdata(dtype=np.float64), dtype)
    except Exception as err:  # a truncated .nii.gz fails only when its voxels are read
        raise UserError(f"{path}: cannot read the voxels ({err})") from None
    return Volume(data.reshape(shape3), affine, str(path))


def save_nifti(path: str | os.PathLike, data: np.ndarray, affine: np.ndarray,
               like: str | os.PathLike | None = None) -> None:
    """Write `data` with `affine` atomically; with `like`, copy that file's header (orientation codes, units)."""
    nib = _nibabel()
    header = nib.load(str(like)).header.copy() if like is not None and is_nifti(like) else None
    image = nib.Nifti1Image(data, affine, header=header)
    image.set_data_dtype(data.dtype)
    # A copied header may carry the source's intensity scaling; labels and probabilities are stored as they are.
    image.header.set_slope_inter(1.0, 0.0)
    if header is None:
        image.header.set_xyzt_units("mm")
    codes = (int(header["sform_code"]) or 1, int(header["qform_code"]) or 1) if header is not None else (1, 1)
    image.set_sform(affine, codes[0])  # 1 = scanner coordinates
    image.set_qform(affine, codes[1])
    suffix = ".nii.gz" if str(path).lower().endswith(".gz") else ".nii"
    with atomic_path(path, suffix=f".tmp{suffix}") as tmp:
        nib.save(image, str(tmp))


@dataclass(frozen=True)
class Orientation:
    """How a file's voxel order maps to the display stack, and back."""

    shape: tuple[int, int, int]
    affine: np.ndarray

    def _ornt(self) -> np.ndarray:
        return _nibabel().orientations.io_orientation(self.affine)

    def to_stack(self, data: np.ndarray) -> np.ndarray:
        """File-order (i, j, k[, ...]) array -> (slices, rows, columns[, ...]) display stack."""
        ras = _nibabel().orientations.apply_orientation(data, self._ornt())
        # RAS+ (x right, y anterior, z superior) -> rows run anterior to posterior, columns patient right to left.
        return np.ascontiguousarray(np.flip(ras, (0, 1)).swapaxes(0, 2))

    def from_stack(self, stack: np.ndarray) -> np.ndarray:
        """Inverse of to_stack: a display stack back in the file's voxel order."""
        orientations = _nibabel().orientations
        ras = np.flip(stack.swapaxes(0, 2), (0, 1))
        back = orientations.ornt_transform(orientations.axcodes2ornt("RAS"), self._ornt())
        return np.ascontiguousarray(orientations.apply_orientation(ras, back))

    def stack_spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm of the display stack: (through-plane, row, column)."""
        spacing = np.linalg.norm(self.affine[:3, :3], axis=0)
        axis_of = {int(world): voxel for voxel, (world, _) in enumerate(self._ornt())}
        return float(spacing[axis_of[2]]), float(spacing[axis_of[1]]), float(spacing[axis_of[0]])

    def axcodes(self) -> tuple[str, str, str]:
        """The file's axis codes, e.g. ('L', 'P', 'S')."""
        return tuple(_nibabel().aff2axcodes(self.affine))


def orientation_of(volume: Volume) -> Orientation:
    """The Orientation of a volume."""
    return Orientation(tuple(volume.data.shape[:3]), volume.affine)


def context_channels(stack: np.ndarray, index: int, context: int) -> np.ndarray:
    """Slice `index` of a (slices, H, W) stack as H x W x C: C = 1, or 3 = slices index-1, index, index+1 for context 1.

    At the first and last slice the missing neighbour repeats the edge slice, as the scanner would have
    shown the same tissue once more.
    """
    if context == 0:
        return stack[index][:, :, None]
    if context != 1:
        raise UserError(f"--context must be 0 or 1 (3 input channels at most), got {context}")
    last = stack.shape[0] - 1
    picks = [min(max(index + offset, 0), last) for offset in (-1, 0, 1)]
    return np.stack([stack[k] for k in picks], axis=2)


def affines_match(first: np.ndarray, second: np.ndarray, tolerance: float = 1e-3) -> bool:
    """True when two affines agree to `tolerance` mm (rounding of float32 headers and DICOM positions)."""
    return bool(np.allclose(first, second, rtol=0.0, atol=tolerance))
