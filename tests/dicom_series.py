"""Test helper: write a synthetic single-frame DICOM series (one file per slice) with pydicom."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    SecondaryCaptureImageStorage,
    generate_uid,
)
from pydicom.valuerep import format_number_as_ds

_SOP_CLASSES = {"CT": CTImageStorage, "MR": MRImageStorage}


def write_series(folder: Path, stored: np.ndarray, *, spacing=(0.8, 0.8, 2.5), origin=(-150.0, -170.0, -300.0),
                 orientation=(1, 0, 0, 0, 1, 0), slope=1.0, intercept=-1024.0, shuffle_seed: int | None = 0,
                 series_uid: str | None = None, modality: str = "CT") -> list[Path]:
    """Write `stored` (rows, cols, slices) uint16/int16 stored values as one DICOM file per slice, names in shuffled order.

    `spacing` is (PixelSpacing[0] = between rows, PixelSpacing[1] = between columns, step along the slice normal);
    a negative step writes slice k further *down* the normal, so position decreases with k.
    Slice k sits at origin + k * spacing[2] * cross(row cosine, column cosine). The returned paths are in k order.
    With a seed, file names and InstanceNumbers are both permutations that are not in k order.
    """
    stored = np.asarray(stored)
    if stored.ndim != 3 or stored.dtype not in (np.uint16, np.int16):
        raise ValueError(f"stored must be a 3-D uint16/int16 array, got {stored.dtype} {stored.shape}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows, columns, count = stored.shape
    orientation = np.asarray(orientation, dtype=np.float64)
    normal = np.cross(orientation[:3], orientation[3:])
    name_order, instance_order = _scrambled(count, shuffle_seed)
    series_uid = series_uid or generate_uid()
    study_uid, frame_uid = generate_uid(), generate_uid()
    sop_class = _SOP_CLASSES.get(modality, SecondaryCaptureImageStorage)
    signed = stored.dtype == np.int16
    paths = []
    for k in range(count):
        position = np.asarray(origin, dtype=np.float64) + k * spacing[2] * normal
        ds = pydicom.Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = sop_class
        ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.Modality = modality
        ds.PatientName = "Synthetic^Phantom"
        ds.PatientID = "SYNTH0001"
        ds.SeriesNumber = 1
        ds.InstanceNumber = int(instance_order[k]) + 1
        ds.ImagePositionPatient = [_ds(v) for v in position]
        ds.ImageOrientationPatient = [_ds(v) for v in orientation]
        ds.PixelSpacing = [_ds(spacing[0]), _ds(spacing[1])]
        ds.SliceThickness = _ds(abs(spacing[2]))
        ds.RescaleSlope = _ds(slope)
        ds.RescaleIntercept = _ds(intercept)
        ds.RescaleType = "HU" if modality == "CT" else "US"
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = rows, columns
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1 if signed else 0
        ds.PixelData = np.ascontiguousarray(stored[:, :, k]).astype("<i2" if signed else "<u2").tobytes()
        path = folder / f"IM{name_order[k]:05d}"
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
        paths.append(path)
    return paths


def _scrambled(count: int, seed: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Name and InstanceNumber orders: identity without a seed, otherwise two permutations that are not k order."""
    if seed is None or count < 2:
        return np.arange(count), np.arange(count)
    rng = np.random.default_rng(seed)
    orders = []
    for _ in range(2):
        order = rng.permutation(count)
        if np.all(order == np.arange(count)):
            # A permutation that happens to be sorted would let a name- or number-sorting reader pass.
            order = np.roll(order, 1)
        orders.append(order)
    return orders[0], orders[1]


def _ds(value: float) -> str:
    """A float as a valid (at most 16 character) DICOM decimal string."""
    return format_number_as_ds(float(value))
