"""DICOM CT/MR series: one folder of single-frame slices -> a float32 Volume in real-world units with a RAS+ affine."""
from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.pixels import get_decoder

from utils.errors import UserError
from utils.volumes.geometry import Volume, check_spacing, load_nifti

# Media Storage Directory Storage: a DICOMDIR index, not an image, whatever the file is called.
_DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
# Orientation and spacing are decimal strings written by many vendors; tiny rounding differences are one geometry.
_GEOMETRY_ATOL = 1e-4
# Two slices closer than this along the normal are the same slice written twice.
_DUPLICATE_MM = 1e-3
# Steps may differ by this fraction of the median step before the series counts as having a gap.
_GAP_TOLERANCE = 0.01
# Messages name this many files per problem; the count always covers all of them.
_MAX_NAMED = 20


def is_dicom_series(path: Path) -> bool:
    """True for a folder holding at least one DICOM file (checked by content: the 'DICM' preamble, not the extension)."""
    path = Path(path)
    if not path.is_dir():
        return False
    return any(_has_dicm_preamble(file) for file in _candidate_files(path) if file.name.upper() != "DICOMDIR")


def read_series(folder: str | os.PathLike) -> Volume:
    """One DICOM series (all files in `folder`, any names, any order) as a float32 volume in real-world units (HU for CT)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"DICOM series folder {folder} does not exist or is not a folder.")
    files = _candidate_files(folder)
    if not files:
        raise UserError(f"DICOM series folder {folder} is empty: expected one DICOM file per slice.")

    datasets: dict[Path, pydicom.Dataset] = {}
    unreadable: list[str] = []
    for file in files:
        try:
            ds = pydicom.dcmread(file, force=False)
        except InvalidDicomError:
            unreadable.append(f"{file.name} (not a DICOM file: no 'DICM' preamble)")
            continue
        except Exception as error:  # truncated or corrupt files raise many types deep inside pydicom
            unreadable.append(f"{file.name} ({_short(error)})")
            continue
        if file.name.upper() == "DICOMDIR" or _sop_class(ds) == _DICOMDIR_SOP_CLASS:
            continue
        datasets[file] = ds
    if not datasets:
        raise UserError(
            f"No DICOM image files in {folder}: none of its {len(files)} file(s) is a readable DICOM slice"
            f"{_list(unreadable, ': ')}."
        )

    # Collect every problem before raising, so one run tells the user everything to fix.
    problems: list[str] = []
    if unreadable:
        problems.append(f"{len(unreadable)} file(s) are not readable DICOM{_list(unreadable)}")
    mixed = _mixed_series(datasets)
    problems += mixed + _per_file_problems(datasets)
    slices: list[tuple[Path, pydicom.Dataset, float]] = []
    # Geometry is only comparable within one series whose files all carry it, or every file would be an offender.
    if not mixed and all(_missing(ds) == [] for ds in datasets.values()):
        inconsistent = _inconsistent_geometry(datasets)
        problems += inconsistent
        if not inconsistent:
            slices, position_problems = _sorted_by_position(datasets, folder)
            problems += position_problems
    _raise_if(problems, folder)

    affine = _affine([ds for _, ds, _ in slices])
    check_spacing(affine, folder)  # a zero or NaN slice thickness of a one-slice series
    data = np.stack([_real_values(file, ds).T for file, ds, _ in slices], axis=-1)
    return Volume(data=data, affine=affine, source=str(folder))


def _candidate_files(folder: Path) -> list[Path]:
    """Non-hidden regular files directly in `folder`, in name order (order never matters, but messages read better)."""
    return sorted(p for p in folder.iterdir() if not p.name.startswith(".") and p.is_file())


def _has_dicm_preamble(file: Path) -> bool:
    """True when bytes 128..131 of `file` are b'DICM' (the DICOM Part 10 file signature)."""
    try:
        with open(file, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def _sop_class(ds: pydicom.Dataset) -> str:
    """The file's SOP class UID from the file meta or the dataset, '' when absent."""
    meta = getattr(ds, "file_meta", None)
    return str(getattr(meta, "MediaStorageSOPClassUID", "") or ds.get("SOPClassUID", "") or "")


def _mixed_series(datasets: dict[Path, pydicom.Dataset]) -> list[str]:
    """A problem when the files belong to more than one SeriesInstanceUID."""
    by_uid: dict[str, list[Path]] = {}
    for file, ds in datasets.items():
        by_uid.setdefault(str(ds.get("SeriesInstanceUID", "") or "<no SeriesInstanceUID>"), []).append(file)
    if len(by_uid) < 2:
        return []
    parts = []
    for uid, members in sorted(by_uid.items(), key=lambda item: -len(item[1])):
        ds = datasets[members[0]]
        label = " ".join(f"{name} {ds.get(keyword)}" for name, keyword in
                         (("number", "SeriesNumber"), ("description", "SeriesDescription"))
                         if ds.get(keyword) not in (None, ""))
        names = ", ".join(f.name for f in members[:3]) + (", ..." if len(members) > 3 else "")
        parts.append(f"{uid}{f' ({label})' if label else ''}: {len(members)} file(s) e.g. {names}")
    return [f"mixed series: {len(by_uid)} SeriesInstanceUIDs in one folder; put each series in its own folder:\n    "
            + "\n    ".join(parts)]


def _per_file_problems(datasets: dict[Path, pydicom.Dataset]) -> list[str]:
    """Problems that one file has on its own: missing geometry, multi-frame, no pixels, undecodable compression."""
    missing: dict[str, list[str]] = {}
    multi_frame: list[str] = []
    colour: list[str] = []
    undecodable: dict[str, list[str]] = {}
    bad_spacing: list[str] = []
    for file, ds in datasets.items():
        absent = _missing(ds)
        for keyword in absent:
            missing.setdefault(keyword, []).append(file.name)
        if "PixelSpacing" not in absent and not _positive(ds.PixelSpacing):
            bad_spacing.append(f"{file.name} {list(ds.PixelSpacing)}")
        if int(ds.get("NumberOfFrames", 1) or 1) > 1:
            multi_frame.append(f"{file.name} ({ds.NumberOfFrames} frames)")
        if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
            colour.append(file.name)
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        if syntax is not None and "PixelData" in ds and not _decodable(syntax):
            undecodable.setdefault(f"{syntax.name} ({syntax})", []).append(file.name)
    problems = [f"{len(names)} file(s) have no (or a malformed) {keyword}{_list(names)}"
                for keyword, names in missing.items()]
    if bad_spacing:
        problems.append(f"{len(bad_spacing)} file(s) have a PixelSpacing that is zero, negative or not a number"
                        f"{_list(bad_spacing)}")
    if multi_frame:
        problems.append(f"{len(multi_frame)} multi-frame file(s) (NumberOfFrames > 1, e.g. enhanced CT/MR); this "
                        f"reader takes one slice per file: convert with dcm2niix or export classic single-frame "
                        f"DICOM{_list(multi_frame)}")
    if colour:
        problems.append(f"{len(colour)} colour file(s) (SamplesPerPixel != 1), not a CT/MR slice{_list(colour)}")
    for syntax, names in undecodable.items():
        problems.append(f"{len(names)} file(s) use the compressed transfer syntax {syntax}, which pydicom cannot "
                        f"decode with the installed packages (install pylibjpeg with its plugins or gdcm, or "
                        f"decompress with 'gdcmconv --raw' / 'dcmdjpeg'){_list(names)}")
    return problems


def _missing(ds: pydicom.Dataset) -> list[str]:
    """Keywords of the geometry and pixel attributes that `ds` lacks or holds with the wrong number of values."""
    absent = []
    for keyword, size in (("ImagePositionPatient", 3), ("ImageOrientationPatient", 6), ("PixelSpacing", 2),
                          ("Rows", None), ("Columns", None), ("PixelData", None)):
        value = ds.get(keyword)
        wrong_size = size is not None and (not isinstance(value, Sequence) or len(value) != size)
        if value is None or isinstance(value, str) or wrong_size:
            absent.append(keyword)
    return absent


def _positive(values: Sequence) -> bool:
    """True when every value is a finite number above zero."""
    try:
        numbers = [float(v) for v in values]
    except (TypeError, ValueError):
        return False
    return all(np.isfinite(v) and v > 0 for v in numbers)


def _decodable(syntax: pydicom.uid.UID) -> bool:
    """True when pydicom has a working decoder for the transfer syntax."""
    if not syntax.is_compressed:
        return True
    try:
        return bool(get_decoder(syntax).is_available)
    except (NotImplementedError, ValueError):
        return False


def _inconsistent_geometry(datasets: dict[Path, pydicom.Dataset]) -> list[str]:
    """Problems for files whose orientation, pixel spacing or matrix size differ from the majority's."""
    problems = []
    checks = (
        ("ImageOrientationPatient", lambda ds: tuple(float(v) for v in ds.ImageOrientationPatient), True),
        ("PixelSpacing", lambda ds: tuple(float(v) for v in ds.PixelSpacing), True),
        ("Rows/Columns", lambda ds: (int(ds.Rows), int(ds.Columns)), False),
    )
    for label, value_of, approximate in checks:
        values = {file: value_of(ds) for file, ds in datasets.items()}
        reference, _ = Counter(values.values()).most_common(1)[0]
        odd = [f"{file.name} {_fmt(value)}" for file, value in values.items()
               if len(value) != len(reference)
               or (not np.allclose(value, reference, atol=_GEOMETRY_ATOL, rtol=0) if approximate
                   else value != reference)]
        if odd:
            problems.append(f"{len(odd)} file(s) differ in {label} from the other {len(values) - len(odd)}, "
                            f"which have {_fmt(reference)}{_list(odd)}")
    return problems


def _sorted_by_position(datasets: dict[Path, pydicom.Dataset],
                        folder: Path) -> tuple[list[tuple[Path, pydicom.Dataset, float]], list[str]]:
    """Slices sorted by position along the slice normal, and the duplicate-position and uneven-spacing problems."""
    first = next(iter(datasets.values()))
    normal = _slice_normal(first, folder)
    slices = sorted(((file, ds, float(np.dot(_ipp(ds), normal))) for file, ds in datasets.items()),
                    key=lambda item: item[2])
    positions = np.array([position for _, _, position in slices])
    steps = np.diff(positions)
    problems = []
    duplicates = [f"{a[0].name} and {b[0].name} at {a[2]:.3f} mm"
                  for a, b, step in zip(slices, slices[1:], steps) if step < _DUPLICATE_MM]
    if duplicates:
        problems.append(f"{len(duplicates)} pair(s) of slices at the same position along the slice normal "
                        f"(duplicates, or two acquisitions in one series){_list(duplicates)}")
    real_steps = steps[steps >= _DUPLICATE_MM]
    if real_steps.size:
        median = float(np.median(real_steps))
        gaps = [f"{step:.3f} mm between {a[2]:.3f} and {b[2]:.3f} mm ({a[0].name} -> {b[0].name})"
                for a, b, step in zip(slices, slices[1:], steps)
                if step >= _DUPLICATE_MM and abs(step - median) > _GAP_TOLERANCE * median]
        if gaps:
            problems.append(f"non-uniform slice spacing (missing slices?): the median step is {median:.3f} mm but "
                            f"{len(gaps)} step(s) differ by more than {_GAP_TOLERANCE:.0%}{_list(gaps)}")
    return slices, problems


def _slice_normal(ds: pydicom.Dataset, folder: Path) -> np.ndarray:
    """Unit normal cross(row cosine, column cosine) of the slice plane."""
    iop = np.array([float(v) for v in ds.ImageOrientationPatient])
    if iop.size != 6:
        raise UserError(f"ImageOrientationPatient in {folder} has {iop.size} values, expected 6.")
    normal = np.cross(iop[:3], iop[3:])
    length = np.linalg.norm(normal)
    # Rounded decimal strings leave the cosines a little off unit length; a degenerate pair is a broken header.
    if not 0.9 < length < 1.1:
        raise UserError(f"ImageOrientationPatient {_fmt(iop)} in {folder} is not two perpendicular unit vectors.")
    return normal / length


def _ipp(ds: pydicom.Dataset) -> np.ndarray:
    """ImagePositionPatient as a float array (LPS mm)."""
    return np.array([float(v) for v in ds.ImagePositionPatient], dtype=np.float64)


def _real_values(file: Path, ds: pydicom.Dataset) -> np.ndarray:
    """Stored pixels * RescaleSlope + RescaleIntercept as float32 (rows, columns)."""
    try:
        pixels = ds.pixel_array
    except Exception as error:  # pydicom raises many types for broken or undecodable pixel data
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "unknown")
        name = getattr(syntax, "name", str(syntax))
        raise UserError(f"Cannot decode the pixel data of {file} (transfer syntax {name}): {_short(error)}") from error
    if pixels.ndim != 2:
        raise UserError(f"{file} holds pixel data of shape {pixels.shape}; expected one 2-D slice.")
    slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    # Scale in float64 so large stored values keep their precision until the one final rounding.
    return (pixels.astype(np.float64) * slope + intercept).astype(np.float32)


def _affine(slices: list[pydicom.Dataset]) -> np.ndarray:
    """The 4x4 voxel (column, row, slice) -> RAS+ mm affine of position-sorted slices."""
    first = slices[0]
    iop = np.array([float(v) for v in first.ImageOrientationPatient])
    row_cosine, column_cosine = iop[:3], iop[3:]
    # PixelSpacing is (between rows, between columns): i walks along a row, so it moves by the column spacing.
    row_spacing, column_spacing = (float(v) for v in first.PixelSpacing)
    if len(slices) > 1:
        # The measured step, not the normal times a nominal thickness, so gantry tilt keeps its shear.
        step = (_ipp(slices[-1]) - _ipp(first)) / (len(slices) - 1)
    else:
        thickness = first.get("SpacingBetweenSlices") or first.get("SliceThickness") or 1.0
        step = _slice_normal(first, Path(".")) * float(thickness)
    affine = np.eye(4)
    affine[:3, 0] = row_cosine * column_spacing
    affine[:3, 1] = column_cosine * row_spacing
    affine[:3, 2] = step
    affine[:3, 3] = _ipp(first)
    # DICOM patient coordinates are LPS+; RAS+ flips x and y.
    affine[:2, :] *= -1
    return affine + 0.0  # turns the -0.0 entries the flip leaves into 0.0, for readable prints


def _raise_if(problems: list[str], folder: Path) -> None:
    """Raise one UserError listing every problem, if there are any."""
    if problems:
        raise UserError(f"Cannot read the DICOM series in {folder}:\n  - " + "\n  - ".join(problems))


def _list(items: Iterable[str], lead: str = ": ") -> str:
    """Up to _MAX_NAMED items joined for a message, with a count of the rest."""
    items = list(items)
    if not items:
        return ""
    shown = ", ".join(items[:_MAX_NAMED])
    more = f", and {len(items) - _MAX_NAMED} more" if len(items) > _MAX_NAMED else ""
    return f"{lead}{shown}{more}"


def _fmt(value: Iterable[float]) -> str:
    """A short printable tuple of numbers."""
    return "(" + ", ".join(f"{v:g}" for v in value) + ")"


def _short(error: BaseException) -> str:
    """The first line of an exception message, trimmed."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text[:160]


def read_image_volume(path: Path) -> Volume:
    """A NIfTI file or a DICOM series folder as a float32 volume (HU for CT)."""
    if path.is_dir():
        return read_series(path)
    return load_nifti(path)
