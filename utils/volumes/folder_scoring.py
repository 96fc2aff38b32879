"""A folder of NIfTI predictions scored against a folder of NIfTI labels as they are, paired by name, in mm.

A prediction <name>.nii.gz or <name>_label.nii.gz (as predict.py names it) pairs with the label <name>.nii.gz.
The voxel spacing comes from each label's header; prediction and label must lie on one voxel grid. Each pair is
scored per foreground class as utils/volumes/scoring.py scores a sliced data set (Dice, IoU, HD95, ASSD), and all
voxels together give the confusion-matrix scores. Label 255 is not scored.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from utils.cli import MAX_CLASSES
from utils.errors import UserError
from utils.evaluate.score_files import is_score_report, score_path
from utils.io.csv_cells import text_cell
from utils.io.files import atomic_open, read_lines
from utils.io.labels import IGNORE_INDEX
from utils.metrics import scores_from_confusion
from utils.volumes.geometry import affines_match, is_nifti, load_nifti, nifti_header, nifti_stem
from utils.volumes.metrics import EMPTY_RULES, class_scores, summarize, volume_scores

PREDICTION_SUFFIX = "_label"  # predict.py writes a volume's prediction as <name>_label.nii.gz
SKIPPED_SUFFIX = "_probabilities"  # predict.py --save-probabilities writes these beside the label volumes
AFFINE_TOLERANCE = 1e-3  # mm: float32 headers round positions and spacings
PER_VOLUME_FILE = "per_volume.csv"
METRIC_COLUMNS = (("dice", "dice"), ("iou", "iou"), ("hd95", "hd95_mm"), ("assd", "assd_mm"),
                  ("label_voxels", "label_voxels"), ("pred_voxels", "pred_voxels"))


def read_class_file(path: str | os.PathLike) -> list[str]:
    """Class names from a text file, line i = class i."""
    try:
        names = read_lines(path)
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read the class names in {path} ({err}); give a UTF-8 file, one name a line") from None
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice or len(names) < 2:
        raise UserError(f"{path}: give at least two classes, each its own name, one a line "
                        f"({'repeated: ' + ', '.join(twice) if twice else f'{len(names)} found'})")
    return names


def nifti_files(folder: str | os.PathLike, what: str) -> dict[str, Path]:
    """stem -> file of the NIfTI files in `folder`; a missing or empty folder, or a stem twice, is a UserError."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{what} folder {folder} does not exist")
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or not is_nifti(path):
            continue
        stem = nifti_stem(path)
        if stem in files:
            raise UserError(f"{folder} holds {files[stem].name} and {path.name}: one volume per name")
        files[stem] = path
    if not files:
        raise UserError(f"{what} folder {folder} holds no NIfTI files (*.nii, *.nii.gz)")
    return files


def pair_volumes(pred_dir: str | os.PathLike, label_dir: str | os.PathLike) -> list[tuple[str, Path, Path]]:
    """(name, prediction, label) for every label; any file left without its partner is a UserError."""
    labels = nifti_files(label_dir, "label")
    predictions = {stem: path for stem, path in nifti_files(pred_dir, "prediction").items()
                   if not stem.endswith(SKIPPED_SUFFIX)}
    pairs, unmatched, taken = [], [], {}
    for stem, path in predictions.items():
        short = stem[:-len(PREDICTION_SUFFIX)] if stem.endswith(PREDICTION_SUFFIX) else None
        name = stem if stem in labels else short if short in labels else None
        if name is None:
            unmatched.append(path.name)
        elif name in taken:
            raise UserError(f"{taken[name].name} and {path.name} in {pred_dir} both pair with the label "
                            f"{labels[name].name}; keep one")
        else:
            taken[name] = path
            pairs.append((name, path, labels[name]))
    alone = [labels[name].name for name in labels if name not in taken]
    problems = [f"{len(files)} {what}, e.g. {', '.join(files[:3])}" for files, what in (
        (unmatched, f"prediction(s) in {pred_dir} without a label in {label_dir}"),
        (alone, f"label(s) in {label_dir} without a prediction in {pred_dir}")) if files]
    if problems:
        raise UserError("; ".join(problems) + " (a prediction <name>.nii.gz or <name>_label.nii.gz pairs with the "
                                              "label <name>.nii.gz)")
    return sorted(pairs)


def check_grid(pred: Path, label: Path, tolerance: float = AFFINE_TOLERANCE) -> None:
    """Refuse a prediction whose shape or affine (voxel spacing, orientation, position) is not its label's."""
    (pred_shape, pred_affine), (label_shape, label_affine) = nifti_header(pred), nifti_header(label)
    if pred_shape != label_shape:
        raise UserError(f"{pred} has shape {pred_shape} but its label {label} has {label_shape}")
    if not affines_match(pred_affine, label_affine, tolerance):
        spacing = [np.round(np.linalg.norm(a[:3, :3], axis=0), 4).tolist() for a in (pred_affine, label_affine)]
        offset = float(np.abs(pred_affine - label_affine).max())
        raise UserError(f"{pred} is not on the voxel grid of its label {label}: affines differ by up to "
                        f"{offset:.4g} mm (tolerance {tolerance} mm; spacing {spacing[0]} vs {spacing[1]} mm)")


def class_ids(path: Path, what: str) -> tuple[np.ndarray, tuple[float, float, float]]:
    """The voxels of a label or prediction volume as non-negative integers, and its spacing in mm."""
    volume = load_nifti(path, dtype=None)
    data = volume.data
    if not np.issubdtype(data.dtype, np.integer):
        bad = data[~np.isfinite(data) | (data != np.round(data))]
        if bad.size:
            raise UserError(f"{path}: {what} values must be integer class ids, found {float(bad.flat[0]):g}")
        data = data.astype(np.int64)
    if data.size and int(data.min()) < 0:
        raise UserError(f"{path}: {what} holds the negative value {int(data.min())}; class ids start at 0")
    return data, volume.spacing


def _both_empty() -> dict[str, Any]:
    """The scores of a class in neither prediction nor label."""
    nothing = np.zeros(1, dtype=bool)
    return class_scores(nothing, nothing, (1.0,))


def score_volume_folders(pred_dir: str | os.PathLike, label_dir: str | os.PathLike, num_classes: int | None = None,
                         class_names: list[str] | None = None) -> dict[str, Any]:
    """Pooled confusion-matrix scores and per-volume Dice, IoU, HD95 and ASSD in mm of every pair of files.

    `num_classes` defaults to the class names' count, else to the largest class id found plus one (at least 2).
    """
    if class_names and num_classes and len(class_names) != num_classes:
        raise UserError(f"{len(class_names)} class names for --num-classes {num_classes}; give one name per class")
    num_classes = num_classes or (len(class_names) if class_names else None)
    pairs = pair_volumes(pred_dir, label_dir)
    for _, pred_path, label_path in pairs:  # every grid before any voxel is read
        check_grid(pred_path, label_path)
    results = []
    for name, pred_path, label_path in tqdm(pairs, desc="volumes", leave=False, disable=None):
        pred, _ = class_ids(pred_path, "prediction")
        label, spacing = class_ids(label_path, "label")
        valid = label != IGNORE_INDEX
        tops = {pred_path: int(pred.max(initial=0)), label_path: int(label[valid].max(initial=0))}
        limit = num_classes or MAX_CLASSES
        for path, top in tops.items():
            if top >= limit:
                raise UserError(f"{path} holds class id {top}, not below "
                                + (f"the {num_classes} classes" if num_classes else f"{MAX_CLASSES} (255: ignore)"))
        count = num_classes or max(2, max(tops.values()) + 1)
        matrix = np.bincount(label[valid].astype(np.int64) * count + pred[valid],
                             minlength=count * count).reshape(count, count)
        results.append((name, matrix, volume_scores(pred, label, count, spacing)))
    count = num_classes or max(2, *(len(matrix) for _, matrix, _ in results))
    total = np.zeros((count, count), dtype=np.int64)
    for _, matrix, per_class in results:
        total[:len(matrix), :len(matrix)] += matrix
        per_class.update({c: _both_empty() for c in range(len(matrix), count)})
    scores = scores_from_confusion(total, class_names)
    names = scores["class_names"]
    summary = summarize([per_class for _, _, per_class in results], count)
    scores.update(volume_pairs=len(pairs), pred_volumes=str(pred_dir), label_volumes=str(label_dir))
    scores["volumes"] = {
        "volumes_scored": len(results),
        "spacing_from": "the label file's header (voxel size along its i, j, k axes, mm)",
        "empty_rules": EMPTY_RULES,
        "incomplete_volumes": {},
        "per_volume": {name: {names[c]: values for c, values in sorted(per_class.items())}
                       for name, _, per_class in results},
        "summary": {names[c]: values for c, values in summary.items()},
    }
    scores["files"] = {name: {"prediction": str(pred_path), "label": str(label_path)}
                       for name, pred_path, label_path in pairs}
    return scores


def check_volume_report(report: Path) -> list[Path]:
    """The JSON report and per_volume.csv the folder scoring writes; refuses to replace another kind of file."""
    if report.is_dir():
        raise UserError(f"{report} is a folder; give a file name")
    if report.exists() and not is_score_report(report):
        raise UserError(f"refusing to replace {report}: it is not a report of miou.py; choose another --json")
    return [report, score_path(report, PER_VOLUME_FILE)]


def write_per_volume_csv(path: str | os.PathLike, scores: dict[str, Any]) -> None:
    """volume, its files, then per foreground class Dice, IoU, HD95 and ASSD in mm and voxel counts (atomic)."""
    per_volume = scores["volumes"]["per_volume"]
    classes = scores["class_names"][1:]
    header = ["volume", "prediction", "label",
              *(f"{column}_{name}" for name in classes for _, column in METRIC_COLUMNS)]
    with atomic_open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for volume, values in per_volume.items():
            files = scores["files"][volume]
            cells = ["" if values[name][key] is None else
                     str(values[name][key]) if isinstance(values[name][key], int) else f"{values[name][key]:.6f}"
                     for name in classes for key, _ in METRIC_COLUMNS]
            writer.writerow([text_cell(volume), text_cell(files["prediction"]), text_cell(files["label"]), *cells])
