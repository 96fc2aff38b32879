"""Uncertainty of a prediction: normalised predictive entropy, ensemble disagreement, one number per case, files.

All maps are divided by log K (K classes, 2 for a sigmoid model), so they lie in [0, 1] whatever K is:
- entropy H(p) / log K of the averaged class probabilities p (over members and flips);
- disagreement (mutual information) (H(p) - mean_m H(p_m)) / log K of an ensemble's members p_m;
- per case U = sum H / (sum H + 2 |predicted foreground|): a rough stand-in for the expected 1 - Dice.
"""
from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from scipy.special import entr

from utils.errors import UserError
from utils.io.csv_cells import cell_text, text_cell
from utils.io.files import atomic_open, save_image

UNCERTAINTY_FILE = "uncertainty.csv"
UNCERTAINTY_COLUMNS = ("stem", "uncertainty", "mean_entropy", "mean_disagreement")
ENTROPY, DISAGREEMENT = "entropy", "disagreement"  # file name parts: <stem>_entropy.png, <name>_entropy.nii.gz
PNG_SCALE = 65535  # 16-bit PNG: value = round(u * 65535)


def normalised_entropy(probabilities: np.ndarray) -> np.ndarray:
    """H(p) / log K per pixel of class probabilities (K, *spatial), float32 in [0, 1] (0 log 0 = 0)."""
    probabilities = np.asarray(probabilities)
    classes = probabilities.shape[0]
    if probabilities.ndim < 2 or classes < 2:
        raise UserError(f"entropy needs probabilities (K >= 2, *spatial), got shape {probabilities.shape}")
    entropy = entr(probabilities.astype(np.float32, copy=False)).sum(axis=0) / np.float32(math.log(classes))
    # Rounding can put a uniform distribution a few ulps above 1; the files store [0, 1].
    return np.clip(entropy, 0.0, 1.0).astype(np.float32, copy=False)


def mutual_information(members: Sequence[np.ndarray]) -> np.ndarray:
    """The members' disagreement (H(mean p_m) - mean_m H(p_m)) / log K per pixel, float32 in [0, 1]."""
    stacked = np.stack([np.asarray(member, dtype=np.float32) for member in members])
    mean_entropy = np.mean([normalised_entropy(member) for member in stacked], axis=0)
    # H is concave, so H(mean p_m) >= mean H(p_m); rounding alone can make the difference slightly negative.
    return np.clip(normalised_entropy(stacked.mean(axis=0)) - mean_entropy, 0.0, 1.0).astype(np.float32)


def case_uncertainty(entropy: np.ndarray, labels: np.ndarray) -> float:
    """U = sum H / (sum H + 2 |foreground|) of a normalised entropy map and its predicted labels (0 when both are 0)."""
    total = float(np.sum(entropy, dtype=np.float64))
    foreground = int(np.count_nonzero(labels))
    return total / (total + 2 * foreground) if total + foreground > 0 else 0.0


@dataclass(frozen=True)
class CaseUncertainty:
    """One image's or volume's uncertainty: U, the mean entropy and, for an ensemble, the mean disagreement."""

    name: str
    uncertainty: float
    mean_entropy: float
    mean_disagreement: float | None = None

    @classmethod
    def of(cls, name: str, labels: np.ndarray, entropy: np.ndarray,
           disagreement: np.ndarray | None = None) -> CaseUncertainty:
        """The numbers of one case from its labels and maps."""
        return cls(name, case_uncertainty(entropy, labels), float(np.mean(entropy, dtype=np.float64)),
                   None if disagreement is None else float(np.mean(disagreement, dtype=np.float64)))


def uncertainty_png(values: np.ndarray) -> np.ndarray:
    """A [0, 1] map as 16-bit grey pixels: round(u * 65535)."""
    return np.rint(np.clip(values, 0.0, 1.0) * PNG_SCALE).astype(np.uint16)


def save_uncertainty_png(path: str | os.PathLike, values: np.ndarray) -> None:
    """Write a [0, 1] map (H x W) as a 16-bit greyscale PNG, atomically."""
    save_image(path, uncertainty_png(values))


def write_uncertainty_csv(path: str | os.PathLike, cases: Iterable[CaseUncertainty]) -> None:
    """uncertainty.csv: stem, uncertainty, mean_entropy, mean_disagreement (blank for one model), atomically."""
    with atomic_open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(UNCERTAINTY_COLUMNS)
        for case in cases:
            disagreement = "" if case.mean_disagreement is None else f"{case.mean_disagreement:.6f}"
            writer.writerow([text_cell(case.name), f"{case.uncertainty:.6f}", f"{case.mean_entropy:.6f}",
                             disagreement])


def read_uncertainty_csv(path: str | os.PathLike) -> dict[str, float]:
    """Stem -> U from an uncertainty.csv (blank cells left out); a malformed file is a UserError naming the line."""
    try:
        rows = csv.DictReader(io.StringIO(Path(path).read_text(encoding="utf-8"), newline=""))
        columns = rows.fieldnames or []
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise UserError(f"{path} is not a readable UTF-8 CSV file ({err}); predict again with --save-uncertainty "
                        f"or remove it") from None
    if "stem" not in columns or "uncertainty" not in columns:
        raise UserError(f"{path} is not an uncertainty file: it has no 'stem' and 'uncertainty' columns (it has: "
                        f"{', '.join(columns) or 'none'}); predict again with --save-uncertainty or remove it")
    values: dict[str, float] = {}
    for line, row in enumerate(rows, start=2):
        stem, cell = cell_text(row["stem"] or ""), (row["uncertainty"] or "").strip()
        if stem in values:
            raise UserError(f"{path} line {line}: stem '{stem}' is listed twice")
        if not cell:
            continue
        try:
            value = float(cell)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise UserError(f"{path} line {line}: uncertainty '{cell}' of '{stem}' is not a finite number")
        values[stem] = value
    return values
