"""Score files beside the predictions: per_image.csv, the score and confusion plots."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from utils.errors import UserError
from utils.evaluate.plots import confusion_figure, scores_figure
from utils.io.figures import save_figure
from utils.io.files import atomic_open
from utils.metrics import class_scores, foreground_dice

SCORE_FILES = ("scores.png", "confusion.png", "per_image.csv")
REPORT_KEYS = ("miou", "confusion_matrix", "class_names", "split")  # what marks a JSON file as miou.py's own
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # spreadsheets run a cell that starts with one of these
BLANK_RULE = ("Dice and IoU are blank where a class is in neither the label nor the prediction (undefined); "
              "pixel counts leave out label-255 pixels")


def _cell(value: float | None) -> str:
    return "" if value is None else f"{value:.6f}"


def text_cell(text: str) -> str:
    """`text` made inert for spreadsheets: a leading quote before =, +, -, @ (OWASP's CSV injection rule)."""
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text


def is_score_report(path: Path) -> bool:
    """Whether `path` holds a report miou.py wrote: a JSON object with the report's keys."""
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(report, dict) and all(key in report for key in REPORT_KEYS)


def check_score_outputs(report: Path, stems: Sequence[str], pred: Path) -> list[Path]:
    """The files miou.py writes beside `report`; refuses to replace another file or a prediction with a plot."""
    if report.is_dir():
        raise UserError(f"{report} is a folder; give a file name")
    if report.exists() and not is_score_report(report):
        raise UserError(f"refusing to replace {report}: it is not a report of miou.py; choose another --json")
    clash = sorted({Path(name).stem for name in SCORE_FILES if name.endswith(".png")} & set(stems))
    if clash and report.parent.resolve() == pred.resolve():
        raise UserError(f"the split has an image named '{clash[0]}', whose prediction {pred / clash[0]}.png the "
                        f"plot of that name would replace; write the scores elsewhere with --json FOLDER/miou.json")
    return [report, *(report.parent / name for name in SCORE_FILES)]


def write_per_image_csv(path: str | Path, stems: Sequence[str], matrices: Sequence[np.ndarray],
                        names: Sequence[str]) -> None:
    """stem, foreground Dice, per-class Dice and IoU, per-class pixel counts in label and prediction (atomic)."""
    header = ["stem", "foreground_dice", *(f"dice_{n}" for n in names), *(f"iou_{n}" for n in names),
              *(f"label_pixels_{n}" for n in names), *(f"pred_pixels_{n}" for n in names)]
    with atomic_open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for stem, matrix in zip(stems, matrices):
            dice, iou = class_scores(matrix)
            writer.writerow([text_cell(stem), _cell(foreground_dice(matrix)), *map(_cell, dice), *map(_cell, iou),
                             *matrix.sum(axis=1).tolist(), *matrix.sum(axis=0).tolist()])


def write_score_files(folder: str | Path, scores: dict[str, Any], stems: Sequence[str],
                      matrices: Sequence[np.ndarray]) -> list[str]:
    """scores.png, confusion.png and per_image.csv in `folder`; returns the lines that say what was written."""
    folder = Path(folder)
    names = scores["class_names"]
    save_figure(scores_figure(scores), folder / "scores.png")
    save_figure(confusion_figure(np.asarray(scores["confusion_matrix"]), names), folder / "confusion.png")
    write_per_image_csv(folder / "per_image.csv", stems, matrices, names)
    return [f"plots written to {folder / 'scores.png'} and {folder / 'confusion.png'}",
            f"per-image scores written to {folder / 'per_image.csv'} ({BLANK_RULE})"]
