"""CT and MRI volumes (NIfTI files or DICOM series with NIfTI labels) -> axial slices in the dataset layout.

Every case is checked before anything is written (shapes, affines, dimensions, label values), and every
offender is named in one message. Each volume becomes a group, and volumes.json records where each slice
came from, so scores can be put back together per volume in millimetres and predictions can go back to
the scanner's voxels.
"""
from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from utils.data.folders import GROUPS_FILE, images_dir, labels_dir, write_class_names
from utils.errors import UserError
from utils.importers.common import REPORT_FILE, ImportSummary, LeftOut
from utils.importers.staging import check_class_count, staged_dataset
from utils.importers.volume_sources import Case
from utils.io.files import save_image, write_json
from utils.io.intensity import Intensity
from utils.io.labels import IGNORE_INDEX
from utils.volumes.dicom import read_image_volume
from utils.volumes.geometry import (
    Orientation,
    Volume,
    affines_match,
    context_channels,
    load_nifti,
    nifti_header,
    squeeze_3d,
)
from utils.volumes.index import VOLUMES_FILE, VOLUMES_FORMAT


@dataclass(frozen=True)
class VolumeOptions:
    """How volumes become slices."""

    intensity: Intensity
    context: int = 0
    class_names: list[str] | None = None
    merge: dict[int, int] | None = None
    keep_empty: float = 1.0
    seed: int = 0


def _image_geometry(path: Path) -> tuple[tuple[int, ...], np.ndarray]:
    """Shape and affine of an image: the NIfTI header, or the DICOM series read in full."""
    if path.is_dir():
        volume = read_image_volume(path)
        return volume.data.shape, volume.affine
    return nifti_header(path)


def _canonical(shape: tuple[int, ...], affine: np.ndarray) -> tuple[tuple[int, ...], np.ndarray]:
    """Shape and affine after reorienting to RAS+, so the same grid stored in another voxel order compares equal."""
    import nibabel.orientations as orientations

    ornt = orientations.io_orientation(affine)
    canonical = affine @ orientations.inv_ornt_aff(ornt, shape)
    return tuple(int(shape[int(axis)]) for axis in np.argsort(ornt[:, 0])), canonical


def parse_merge(text: str) -> dict[int, int]:
    """'2:1,3:ignore' -> {2: 1, 3: 255}: label value -> class id (or ignore)."""
    table: dict[int, int] = {}
    for entry in text.split(","):
        value, sep, target = (part.strip() for part in entry.partition(":"))
        target_id = IGNORE_INDEX if target.lower() == "ignore" else int(target) if target.isdigit() else None
        if not sep or not value.isdigit() or target_id is None or target_id > IGNORE_INDEX:
            raise UserError(f"--merge entry {entry!r}: write VALUE:CLASS pairs such as 2:1 (tumour into liver) "
                            f"or 3:ignore")
        table[int(value)] = target_id
    return table


def map_labels(values: np.ndarray, merge: dict[int, int] | None) -> np.ndarray:
    """Apply the merge table to integer label values (unlisted values keep their id)."""
    if not merge:
        return values
    mapped = values.copy()
    for source, target in merge.items():
        mapped[values == source] = target
    return mapped


def _label_values(volume: Volume) -> tuple[np.ndarray | None, str | None]:
    """Integer label array, or why it is not one (non-integer or non-finite values)."""
    data = volume.data
    if data.dtype.kind == "f":
        if not np.isfinite(data).all():
            return None, "non-finite label values"
        rounded = np.rint(data)
        if not np.array_equal(rounded, data):
            odd = np.unique(data[rounded != data])[:5]
            return None, f"non-integer label values such as {', '.join(f'{v:g}' for v in odd)}"
        data = rounded
    if data.min() < 0 or data.max() > IGNORE_INDEX:
        return None, f"label values outside 0..{IGNORE_INDEX} (found {data.min():g}..{data.max():g})"
    return data.astype(np.uint8), None


def _default_names(count: int, src: Path) -> list[str]:
    """Class names from a Decathlon dataset.json, else background, class_1, ..."""
    names = ["background"] + [f"class_{i}" for i in range(1, count)]
    manifest = src / "dataset.json"
    if manifest.is_file():
        try:
            labels = json.loads(manifest.read_text(encoding="utf-8")).get("labels", {})
            names = [str(labels.get(str(i), names[i])) for i in range(count)]
        except (ValueError, AttributeError):
            pass
    return names


def check_cases(cases: Sequence[Case], options: VolumeOptions) -> tuple[list[str], np.ndarray]:
    """Refuse before writing: 4-D data, shape or affine mismatch, bad or unmapped label values; all offenders at once.

    Returns the problems found and the voxel count of every label value (0..255, as stored, before --merge).
    """
    problems: list[str] = []
    counts = np.zeros(IGNORE_INDEX + 1, dtype=np.int64)
    for case in cases:
        try:
            image_shape, image_affine = _image_geometry(case.image)
            label_shape, label_affine = nifti_header(case.label)
        except UserError as err:
            problems.append(f"{case.name}: {err}")
            continue
        image3, label3 = squeeze_3d(tuple(image_shape)), squeeze_3d(label_shape)
        bad = [f"{what} {path} is {len(shape)}-D {tuple(shape)}" for what, path, shape, shape3 in
               (("image", case.image, image_shape, image3), ("label", case.label, label_shape, label3))
               if shape3 is None]
        if bad:
            problems.append(f"{case.name}: {'; '.join(bad)}; only 3-D volumes are supported")
            continue
        image_grid, label_grid = _canonical(image3, image_affine), _canonical(label3, label_affine)
        if image_grid[0] != label_grid[0]:
            problems.append(f"{case.name}: image shape {image3} and label shape {label3} differ")
            continue
        if not affines_match(image_grid[1], label_grid[1]):
            problems.append(f"{case.name}: image and label affines differ (the label is not on the image's voxels):"
                            f" image {np.round(image_affine, 3).tolist()}, label {np.round(label_affine, 3).tolist()}")
            continue
        try:
            values, why = _label_values(load_nifti(case.label, dtype=None))
        except UserError as err:
            problems.append(f"{case.name}: {err}")
            continue
        if values is None:
            problems.append(f"{case.name}: {case.label}: {why}")
            continue
        present = np.unique(map_labels(values, options.merge))
        present = present[present != IGNORE_INDEX]
        if options.class_names is not None:
            unmapped = present[present >= len(options.class_names)]
            if unmapped.size:
                original = sorted(v for v in np.unique(values).tolist() if (options.merge or {}).get(v, v) in unmapped)
                problems.append(f"{case.name}: {case.label}: label values {original} are not classes of "
                                f"{options.class_names} (map them with --merge VALUE:CLASS or name more --classes)")
        counts += np.bincount(values.ravel(), minlength=IGNORE_INDEX + 1)
    return problems, counts


def label_notes(counts: np.ndarray, merge: dict[int, int] | None, class_names: Sequence[str]) -> list[str]:
    """A note when a class gets no voxel, naming every label value found with its voxel count (a stray value?)."""
    classes = np.zeros(IGNORE_INDEX + 1, dtype=np.int64)
    for value in np.flatnonzero(counts):
        classes[(merge or {}).get(int(value), int(value))] += counts[value]
    empty = [f"{index} ({name})" for index, name in enumerate(class_names) if index and not classes[index]]
    if not empty:
        return []
    found = ", ".join(f"{value} ({counts[value]} voxel{'s' if counts[value] != 1 else ''})"
                      for value in np.flatnonzero(counts))
    return [f"class(es) {', '.join(empty)} have no voxel in any label volume; the label values found are {found}: "
            f"a stray value makes empty classes (fold it into another with --merge VALUE:CLASS, or name --classes)"]


def _stem_width(slices: int) -> int:
    return max(3, len(str(slices - 1)))


def _kept_empty(empty: list[int], fraction: float, rng: random.Random) -> set[int]:
    """The share of foreground-free slices that training keeps (seeded)."""
    keep = round(fraction * len(empty))
    return set(rng.sample(empty, keep)) if keep < len(empty) else set(empty)


def stage_case(case: Case, options: VolumeOptions, staging: Path, rng: random.Random) -> dict[str, Any]:
    """Write one volume's slices into staging; return its volumes.json entry."""
    image = read_image_volume(case.image)
    label = load_nifti(case.label, dtype=None)
    values, _ = _label_values(label)
    orientation = Orientation(tuple(image.data.shape[:3]), image.affine)
    image_stack = orientation.to_stack(options.intensity.apply(image.data, str(case.image)))
    label_stack = Orientation(tuple(label.data.shape[:3]), label.affine).to_stack(map_labels(values, options.merge))
    width = _stem_width(image_stack.shape[0])
    stems, empty = [], []
    for index in range(image_stack.shape[0]):
        stem = f"{case.name}_{index:0{width}d}"
        labels = label_stack[index]
        if not ((labels != 0) & (labels != IGNORE_INDEX)).any():
            empty.append(index)
        picture = context_channels(image_stack, index, options.context)
        save_image(images_dir(staging) / f"{stem}.png", picture[:, :, 0] if picture.shape[2] == 1 else picture)
        save_image(labels_dir(staging) / f"{stem}.png", labels)
        stems.append(stem)
    excluded = sorted(set(empty) - _kept_empty(empty, options.keep_empty, rng))
    return {
        "image": str(case.image),
        "label": str(case.label),
        "shape": list(image.data.shape[:3]),
        "spacing": list(image.spacing),
        "affine": np.asarray(image.affine).tolist(),
        "axcodes": list(orientation.axcodes()),
        "stack_shape": list(image_stack.shape),
        "stack_spacing": list(orientation.stack_spacing()),
        "slices": stems,
        "empty_slices": len(empty),
        "train_excluded": [stems[index] for index in excluded],
        "pixels_per_class": np.bincount(label_stack.ravel(), minlength=256).tolist(),
    }


def import_volumes(cases: Sequence[Case], left_out: Sequence[LeftOut], out: str | os.PathLike,
                   options: VolumeOptions, *, sources: Sequence[Path], naming: str,
                   overwrite: bool = False, progress: Callable[[str], None] | None = None) -> ImportSummary:
    """Check every case, then write Images/, Labels/, classes.txt, groups.json, volumes.json and the report."""
    out = Path(out)
    if not cases:
        raise UserError(f"no image/label volume pairs found in {', '.join(map(str, sources))}")
    if not 0 <= options.keep_empty <= 1:
        raise UserError(f"--keep-empty must be in [0, 1], got {options.keep_empty}")
    problems, counts = check_cases(cases, options)
    if problems:
        raise UserError(f"{len(problems)} of {len(cases)} volume(s) refused, nothing written:\n  "
                        + "\n  ".join(problems))
    present = [(options.merge or {}).get(int(v), int(v)) for v in np.flatnonzero(counts)]
    needed = max([v for v in present if v != IGNORE_INDEX], default=0) + 1
    class_names = options.class_names or _default_names(max(needed, 2), sources[0])
    check_class_count(class_names)
    notes = label_notes(counts, options.merge, class_names)
    rng = random.Random(options.seed)
    volumes: dict[str, Any] = {}
    with staged_dataset(out, overwrite, sources) as staging:
        for case in cases:
            if progress:
                progress(case.name)
            volumes[case.name] = stage_case(case, options, staging, rng)
    write_class_names(out, class_names)
    groups = {stem: name for name, entry in volumes.items() for stem in entry["slices"]}
    write_json(out / GROUPS_FILE, groups)
    write_json(out / VOLUMES_FILE, {"format": VOLUMES_FORMAT, "naming": naming, "classes": class_names,
                                    "intensity": options.intensity.to_json(), "context": options.context,
                                    "merge": {str(k): v for k, v in (options.merge or {}).items()},
                                    "keep_empty": options.keep_empty, "volumes": volumes})
    pixels = np.sum([entry["pixels_per_class"] for entry in volumes.values()], axis=0)
    per_class = {name: int(pixels[i]) for i, name in enumerate(class_names)}
    per_class["ignore"] = int(pixels[IGNORE_INDEX])
    excluded = sum(len(entry["train_excluded"]) for entry in volumes.values())
    write_json(out / REPORT_FILE, {
        "sources": [str(source) for source in sources], "naming": naming, "classes": class_names,
        "intensity": options.intensity.to_json(), "context": options.context,
        "imported_count": len(groups), "volumes_count": len(volumes), "train_excluded_count": excluded,
        "left_out_count": len(left_out), "pixels_per_class": per_class, "notes": list(notes),
        "left_out": [vars(item) for item in left_out],
    })
    if excluded:
        notes.append(f"{excluded} slice(s) without foreground are kept out of training by --keep-empty "
                     f"{options.keep_empty:g} (validation keeps every slice)")
    if any(out.glob("ImageSets/Segmentation/*.txt")):
        notes.append(f"{out}/ImageSets/Segmentation holds split files from an earlier import; "
                     f"rewrite them with png2txt.py")
    return ImportSummary(out, sorted(groups), list(left_out), class_names, len(volumes), None, notes)


