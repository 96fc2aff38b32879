"""Finding volume cases in a source: LiTS or Decathlon file naming, same-name folders, DICOM series."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from utils.errors import UserError
from utils.importers.common import LeftOut, existing_dir
from utils.volumes.geometry import is_nifti, nifti_stem

NAMINGS = ("auto", "lits", "decathlon")  # how a NIfTI source names its image and label files
LITS_IMAGE = re.compile(r"^volume-(\d+)$")
LITS_LABEL = re.compile(r"^segmentation-(\d+)$")
DECATHLON_CHANNEL = re.compile(r"^(.+)_(\d{4})$")


@dataclass(frozen=True)
class Case:
    """One image volume (a NIfTI file or a DICOM series folder) and its NIfTI label volume."""

    name: str
    image: Path
    label: Path


def _nifti_files(folder: Path) -> dict[str, Path]:
    """stem -> path of every .nii / .nii.gz file directly in `folder`."""
    return {nifti_stem(path): path for path in sorted(folder.iterdir())
            if path.is_file() and is_nifti(path) and not path.name.startswith(".")}


def _match(images: dict[str, Path], labels: dict[str, Path], image_what: str,
           label_what: str) -> tuple[list[Case], list[LeftOut]]:
    """Cases for the names found on both sides; the rest is reported as left out."""
    cases = [Case(name, images[name], labels[name]) for name in sorted(images) if name in labels]
    left_out = [LeftOut(name, f"{image_what} without a {label_what}", image=str(images[name]))
                for name in sorted(images) if name not in labels]
    left_out += [LeftOut(name, f"{label_what} without an {image_what}", mask=str(labels[name]))
                 for name in sorted(labels) if name not in images]
    return cases, left_out


def find_lits(src: Path) -> tuple[list[Case], list[LeftOut]]:
    """LiTS: volume-N.nii[.gz] and segmentation-N.nii[.gz] anywhere below `src`; case name volume-N."""
    images: dict[str, Path] = {}
    labels: dict[str, Path] = {}
    for path in sorted(src.rglob("*.nii*")):
        for regex, found in ((LITS_IMAGE, images), (LITS_LABEL, labels)):
            match = regex.match(nifti_stem(path))
            if match and is_nifti(path):
                found[f"volume-{int(match.group(1))}"] = path
    return _match(images, labels, "volume", "segmentation")


def find_decathlon(src: Path) -> tuple[list[Case], list[LeftOut]]:
    """Medical Segmentation Decathlon / nnU-Net: imagesTr/X_0000.nii.gz (or X.nii.gz) and labelsTr/X.nii.gz."""
    images: dict[str, Path] = {}
    left_out: list[LeftOut] = []
    for stem, path in _nifti_files(src / "imagesTr").items():
        match = DECATHLON_CHANNEL.match(stem)
        if match is None:
            images[stem] = path
        elif match.group(2) == "0000":
            images[match.group(1)] = path
        else:
            left_out.append(LeftOut(stem, "an extra input channel (only _0000 is imported)", image=str(path)))
    cases, unmatched = _match(images, _nifti_files(src / "labelsTr"), "image", "label")
    return cases, left_out + unmatched


def find_nifti_cases(src: str | os.PathLike, labels: str | os.PathLike | None = None,
                     naming: str = "auto") -> tuple[list[Case], list[LeftOut], str]:
    """The cases of a NIfTI source: same-name files in two folders, or LiTS or Decathlon file naming."""
    src = existing_dir(src)
    if labels is not None:
        cases, left_out = _match(_nifti_files(src), _nifti_files(existing_dir(labels, "label folder")),
                                 "image", "label")
        return cases, left_out, "pairs"
    if naming == "auto":
        naming = "decathlon" if (src / "imagesTr").is_dir() and (src / "labelsTr").is_dir() else "lits"
    cases, left_out = find_decathlon(src) if naming == "decathlon" else find_lits(src)
    if not cases:
        raise UserError(f"no NIfTI image/label pairs in {src} (looked for {naming} naming: "
                        + ("imagesTr/X_0000.nii.gz + labelsTr/X.nii.gz" if naming == "decathlon"
                           else "volume-N.nii + segmentation-N.nii")
                        + "; for two folders of same-name files give LABELS too)")
    return cases, left_out, naming


def find_dicom_cases(series_root: str | os.PathLike, labels: str | os.PathLike) -> tuple[list[Case], list[LeftOut]]:
    """One DICOM series per sub-folder of `series_root`, each with LABELS/<folder name>.nii[.gz]."""
    from utils.volumes.dicom import is_dicom_series

    root = existing_dir(series_root, "series folder")
    folders = [folder for folder in sorted(root.iterdir()) if folder.is_dir() and not folder.name.startswith(".")]
    series = {folder.name: folder for folder in folders if is_dicom_series(folder)}
    if not series and is_dicom_series(root):
        series = {root.name: root}
    if not series:
        raise UserError(f"no DICOM series in {root} (expected one sub-folder of DICOM files per series)")
    return _match(series, _nifti_files(existing_dir(labels, "label folder")), "series", "label")
