"""Segment-level scores of electron microscopy: adapted Rand error and variation of information per image.

The segments are the connected components of one class (the cell interior on ISBI 2012), found with
4-connectivity (pixels that share an edge), so that a one-pixel membrane running diagonally still parts two
cells; every other class is boundary. Following the ISBI 2012 challenge and scikit-image, only pixels inside a
labelled segment are scored (foreground-restricted); a predicted boundary pixel there is one more segment of
the prediction, so a thick predicted membrane costs as a merge. Label 255 pixels are not scored.

- adapted Rand error = 1 - the adapted Rand F-score (alpha 0.5) of scikit-image's `adapted_rand_error`.
- VOI split = H(prediction | label), VOI merge = H(label | prediction), VOI = their sum, in bits (log2), from
  scikit-image's `variation_of_information`.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import ndimage

from utils.errors import UserError

RAND_VOI_KEYS = ("adapted_rand_error", "voi_split", "voi_merge", "voi")
FACE_NEIGHBOURS = ndimage.generate_binary_structure(2, 1)  # 4-connectivity
RAND_VOI_RULES = {
    "segments": "4-connected components of the class in label and prediction; every other class is boundary",
    "scored_pixels": "pixels inside a label segment (foreground-restricted); label 255 is not scored",
    "adapted_rand_error": "1 - adapted Rand F-score (scikit-image adapted_rand_error, alpha 0.5)",
    "voi": "VOI split = H(prediction|label), merge = H(label|prediction), in bits (scikit-image "
           "variation_of_information)",
    "undefined": "an image whose label has no pixel of the class, or whose segments are all single pixels in "
                 "label and prediction, has no score and is left out of the means",
    "pooling": "mean over the images that have a score",
}


def segments(mask: np.ndarray) -> np.ndarray:
    """Connected components (4-connectivity) of a 2-D boolean mask, numbered from 1; 0 elsewhere."""
    return ndimage.label(mask, structure=FACE_NEIGHBOURS)[0]


def rand_voi(pred: np.ndarray, label: np.ndarray, segment_class: int) -> dict[str, float] | None:
    """Adapted Rand error and VOI split/merge/total of one image's class-id maps; None where undefined."""
    from skimage.metrics import adapted_rand_error, variation_of_information  # only --rand-voi pays for it

    # Label 255 is never a class id, so ignored pixels lie outside every segment: not scored, and they part cells.
    truth = segments(label == segment_class)
    if not truth.any():
        return None
    test = segments(pred == segment_class)
    with np.errstate(divide="ignore", invalid="ignore"):  # single-pixel segments only: 0/0, reported as None
        error = float(adapted_rand_error(truth, test, ignore_labels=(0,))[0])
    if not math.isfinite(error):
        return None
    split, merge = (float(v) for v in variation_of_information(truth, test, ignore_labels=(0,)))
    split, merge = max(split, 0.0), max(merge, 0.0)  # -0.0 and rounding below zero read as 0
    return {"adapted_rand_error": error, "voi_split": split, "voi_merge": merge, "voi": split + merge}


def pooled_rand_voi(per_image: dict[str, dict[str, float] | None], class_name: str) -> dict:
    """Means over the scored images, the counts, the conventions and each image's values (None: undefined)."""
    scored = [values for values in per_image.values() if values is not None]
    means = {key: float(np.mean([values[key] for values in scored])) if scored else None for key in RAND_VOI_KEYS}
    return {"class": class_name, **means, "images_scored": len(scored),
            "images_undefined": len(per_image) - len(scored), "rules": RAND_VOI_RULES, "per_image": per_image}


def format_rand_voi(pooled: dict) -> str:
    """One line of the pooled scores for the printed report."""
    def number(value: float | None) -> str:
        return "-" if value is None else f"{value:.4f}"

    undefined = pooled["images_undefined"]
    note = f", {undefined} without a '{pooled['class']}' segment left out" if undefined else ""
    return (f"segments of '{pooled['class']}' (mean over {pooled['images_scored']} images{note}): adapted Rand error "
            f"{number(pooled['adapted_rand_error'])}, VOI split {number(pooled['voi_split'])}, merge "
            f"{number(pooled['voi_merge'])}, total {number(pooled['voi'])} bits")


def class_index(choice: str, names: Sequence[str]) -> int:
    """The class id that `choice` names: a class name, else a number below the class count."""
    if choice in names:
        return list(names).index(choice)
    if choice.isdigit() and int(choice) < len(names):
        return int(choice)
    raise UserError(f"--rand-voi {choice}: not a class; give one of {', '.join(names)} or an id 0..{len(names) - 1}")
