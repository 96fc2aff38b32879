"""Scores of predicted label maps for a list of samples: pixels, cases and groups, segments, and volumes in mm.

The core of miou.py, for any mapping of stems to prediction files (one folder, or several folds' folders). It
sits in the volumes layer because a data set imported from volumes is also scored per volume here.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from utils.data.dataset import Sample
from utils.data.folders import GROUPS_FILE
from utils.data.splits import group_of
from utils.errors import UserError
from utils.evaluate.em_metrics import pooled_rand_voi, rand_voi
from utils.io.images import open_image
from utils.io.labels import IGNORE_INDEX, label_to_array
from utils.metrics import dice_per_class, mean_case_dice, scores_from_confusion
from utils.volumes.scoring import score_volumes

SOURCE_AFTER = "images"  # the key after which with_source puts what was scored


def read_label_map(path: Path) -> np.ndarray:
    """A label PNG as an H x W class-id array."""
    return label_to_array(open_image(path), path)


def score_pairs(pairs: list[tuple[Path, Path]], num_classes: int,
                segment_class: int | None = None) -> tuple[list[np.ndarray], list[dict[str, float] | None]]:
    """One confusion matrix per (prediction, label) pair over all its pixels (255 in the label is skipped), and
    with `segment_class` each pair's adapted Rand error and VOI over that class's segments (else an empty list)."""
    matrices, segment_scores = [], []
    for pred_path, label_path in tqdm(pairs, desc="score", leave=False, disable=None):
        pred = read_label_map(pred_path).astype(np.int64)
        label = read_label_map(label_path).astype(np.int64)
        if pred.shape != label.shape:
            raise UserError(f"{pred_path} is {pred.shape[1]}x{pred.shape[0]} but its label {label_path} is "
                            f"{label.shape[1]}x{label.shape[0]}")
        valid = label != IGNORE_INDEX
        out_of_range = np.unique(np.concatenate([label[valid][label[valid] >= num_classes],
                                                 pred[pred >= num_classes]]))
        if out_of_range.size:
            raise UserError(f"{label_path} / {pred_path}: values {out_of_range.tolist()} are not below "
                            f"--num-classes {num_classes}")
        matrices.append(np.bincount(label[valid] * num_classes + pred[valid],
                                    minlength=num_classes * num_classes).reshape(num_classes, num_classes))
        if segment_class is not None:
            segment_scores.append(rand_voi(pred, label, segment_class))
    return matrices, segment_scores


def read_groups(data: Path, stems: list[str], pattern: str | None) -> dict[str, str] | None:
    """stem -> case group (patient): from --group REGEX, else the importer's groups.json, else None."""
    if pattern:
        return group_of(stems, pattern)
    path = data / GROUPS_FILE
    if not path.is_file():
        return None
    try:
        groups = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise UserError(f"{path} is not UTF-8 JSON; re-import the data set or give --group REGEX") from None
    if not isinstance(groups, dict):
        raise UserError(f"{path} is not a JSON object of stem -> group; re-import the data set or give --group REGEX")
    missing = [s for s in stems if s not in groups]
    if missing:
        raise UserError(f"{path} names no group for {len(missing)} image(s): {', '.join(missing[:10])}")
    return {s: groups[s] for s in stems}


def case_report(matrices: list[np.ndarray], stems: list[str], groups: dict[str, str] | None,
                empty: float | None) -> dict:
    """Mean per-image Dice per class and, for grouped data, mean per-group (patient volume) Dice."""
    report = {"empty_case_rule": "excluded" if empty is None else "counted as 1",
              "mean_image_dice": mean_case_dice(matrices, empty)}
    if groups:
        summed: dict[str, np.ndarray] = {}
        for stem, matrix in zip(stems, matrices):
            summed[groups[stem]] = summed.get(groups[stem], 0) + matrix
        report["groups"] = len(summed)
        report["mean_group_dice"] = mean_case_dice(list(summed.values()), empty)
        report["group_dice"] = {name: dice_per_class(m, empty) for name, m in sorted(summed.items())}
    return report


def score_predictions(samples: list[Sample], predictions: dict[str, Path], num_classes: int,
                      names: list[str] | None = None, groups: dict[str, str] | None = None,
                      volumes: dict[str, Any] | None = None, empty: float | None = None,
                      rand_voi_class: int | None = None) -> tuple[dict[str, Any], list[np.ndarray]]:
    """The scores of `predictions` (stem -> label PNG) against the samples' labels, and one confusion matrix per
    sample in the order of `samples`.

    The scores are miou.json's: the pixel scores of the summed matrix, `images`, the per-case Dice (`empty`:
    a case with a class in neither map counts as this, None leaves it out), with `rand_voi_class` the pooled
    adapted Rand error and VOI of that class's segments (`rand_voi`, each image's values under `per_image`),
    and with `volumes` (volumes.json) the per-volume scores in mm. `names` are the class names (None:
    class_0, ...) and `groups` maps stems to case groups (patients) for the per-group Dice.
    """
    missing = [s.stem for s in samples if s.stem not in predictions]
    if missing:
        raise UserError(f"{len(missing)} image(s) have no prediction: {', '.join(missing[:10])}")
    stems = [s.stem for s in samples]
    matrices, segment_scores = score_pairs([(predictions[s.stem], s.label_path) for s in samples], num_classes,
                                           rand_voi_class)
    total = sum(matrices) if matrices else np.zeros((num_classes, num_classes), dtype=np.int64)
    scores = scores_from_confusion(total, names)
    scores["images"] = len(samples)
    scores["per_case"] = case_report(matrices, stems, groups, empty)
    if rand_voi_class is not None:
        scores["rand_voi"] = pooled_rand_voi(dict(zip(stems, segment_scores)), scores["class_names"][rand_voi_class])
    if volumes:
        scores["volumes"] = score_volumes(volumes, {s.stem: predictions[s.stem] for s in samples},
                                          {s.stem: s.label_path for s in samples}, num_classes,
                                          scores["class_names"], read_label_map)
    return scores, matrices


def with_source(scores: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """`scores` with `fields` (what was scored: split, data, pred) placed after `images`, as miou.json lists them."""
    keys = list(scores)
    cut = keys.index(SOURCE_AFTER) + 1 if SOURCE_AFTER in keys else len(keys)
    return {**{k: scores[k] for k in keys[:cut]}, **fields, **{k: scores[k] for k in keys[cut:]}}
