"""Score files beside the score report: per_image.csv, the score and confusion plots, and their names."""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from utils.errors import UserError
from utils.evaluate.plots import confusion_figure, scores_figure
from utils.infer.uncertainty import UNCERTAINTY_FILE, read_uncertainty_csv
from utils.io.csv_cells import text_cell
from utils.io.figures import save_figure
from utils.io.files import atomic_open
from utils.metrics import class_scores, foreground_dice

SCORE_FILES = ("scores.png", "confusion.png", "per_image.csv")
DEFAULT_REPORT = "miou.json"  # the report whose files keep their plain names
RAND_VOI_COLUMNS = ("adapted_rand_error", "voi_split", "voi_merge", "voi")
REPORT_KEYS = ("miou", "confusion_matrix", "class_names")  # what marks a JSON file as miou.py's own
BLANK_RULE = ("Dice and IoU are blank where a class is in neither the label nor the prediction (undefined); "
              "pixel counts leave out label-255 pixels")


def _cell(value: float | None) -> str:
    return "" if value is None else f"{value:.6f}"


def output_prefix(report: str | os.PathLike) -> str:
    """'' beside the default miou.json, else '<report stem>_', so two reports in one folder keep their own files."""
    report = Path(report)
    return "" if report.name == DEFAULT_REPORT else f"{report.stem}_"


def score_path(report: str | os.PathLike, name: str) -> Path:
    """The path of the score file `name` (e.g. 'scores.png') that belongs to the JSON report `report`."""
    report = Path(report)
    return report.parent / f"{output_prefix(report)}{name}"


def is_score_report(path: Path) -> bool:
    """Whether `path` holds a report miou.py wrote: a JSON object with the report's keys."""
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(report, dict) and all(key in report for key in REPORT_KEYS)


def check_score_outputs(report: Path, stems: Sequence[str], pred: Path | Iterable[Path]) -> list[Path]:
    """The files miou.py writes beside `report`; refuses to replace another file or a prediction with a plot.

    `pred` is the prediction folder, or the folders, whose <stem>.png files a plot must not replace.
    """
    if report.is_dir():
        raise UserError(f"{report} is a folder; give a file name")
    if report.exists() and not is_score_report(report):
        raise UserError(f"refusing to replace {report}: it is not a report of miou.py; choose another --json")
    folders = [pred] if isinstance(pred, (str, os.PathLike)) else list(pred)
    plots = {score_path(report, name).stem for name in SCORE_FILES if name.endswith(".png")}
    clash = sorted(plots & set(stems))
    if clash and any(report.parent.resolve() == Path(folder).resolve() for folder in folders):
        raise UserError(f"the split has an image named '{clash[0]}', whose prediction {clash[0]}.png in "
                        f"{report.parent} the plot of that name would replace; write the scores elsewhere with "
                        f"--json FOLDER/miou.json")
    return [report, *(score_path(report, name) for name in SCORE_FILES)]


def read_uncertainty(folder: str | os.PathLike) -> dict[str, float] | None:
    """stem -> uncertainty from <folder>/uncertainty.csv (blank cells left out); None when there is no such file."""
    path = Path(folder) / UNCERTAINTY_FILE
    return read_uncertainty_csv(path) if path.is_file() else None


def write_per_image_csv(path: str | Path, stems: Sequence[str], matrices: Sequence[np.ndarray],
                        names: Sequence[str], rand_voi: dict[str, dict[str, float] | None] | None = None,
                        uncertainty: dict[str, float] | None = None) -> None:
    """stem, foreground Dice, per-class Dice and IoU, per-class pixel counts in label and prediction (atomic).

    With `rand_voi` (stem -> scores, None where undefined) the Rand error and VOI columns follow, and with
    `uncertainty` an uncertainty column; a stem without a value leaves its cells blank.
    """
    header = ["stem", "foreground_dice", *(f"dice_{n}" for n in names), *(f"iou_{n}" for n in names),
              *(f"label_pixels_{n}" for n in names), *(f"pred_pixels_{n}" for n in names)]
    header += list(RAND_VOI_COLUMNS) if rand_voi is not None else []
    header += ["uncertainty"] if uncertainty is not None else []
    with atomic_open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for stem, matrix in zip(stems, matrices):
            dice, iou = class_scores(matrix)
            row = [text_cell(stem), _cell(foreground_dice(matrix)), *map(_cell, dice), *map(_cell, iou),
                   *matrix.sum(axis=1).tolist(), *matrix.sum(axis=0).tolist()]
            if rand_voi is not None:
                values = rand_voi.get(stem) or {}
                row += [_cell(values.get(key)) for key in RAND_VOI_COLUMNS]
            if uncertainty is not None:
                row.append(_cell(uncertainty.get(stem)))
            writer.writerow(row)


def write_score_files(report: str | os.PathLike, scores: dict[str, Any], stems: Sequence[str],
                      matrices: Sequence[np.ndarray], uncertainty: dict[str, float] | None = None) -> list[str]:
    """The plots and per_image.csv that belong to the JSON `report`; returns the lines that say what was written."""
    names = scores["class_names"]
    plots, confusion, table = (score_path(report, name) for name in SCORE_FILES)
    save_figure(scores_figure(scores), plots)
    save_figure(confusion_figure(np.asarray(scores["confusion_matrix"]), names), confusion)
    rand_voi = scores["rand_voi"]["per_image"] if scores.get("rand_voi") else None
    write_per_image_csv(table, stems, matrices, names, rand_voi, uncertainty)
    return [f"plots written to {plots} and {confusion}", f"per-image scores written to {table} ({BLANK_RULE})"]
