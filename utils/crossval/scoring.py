"""Out-of-fold scores: every fold's validation predictions scored together, with their spread and a per-fold table."""
from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from utils.data.dataset import Sample, find_samples, read_split
from utils.data.folders import index_by_stem, read_class_names
from utils.errors import UserError
from utils.evaluate.em_metrics import class_index, format_rand_voi
from utils.evaluate.score_files import read_uncertainty
from utils.evaluate.score_outputs import planned_outputs, write_score_outputs
from utils.evaluate.statistics import describe, number, rank_correlation, spread_text
from utils.io.checkpoint import load_checkpoint
from utils.io.files import write_json, write_text
from utils.metrics import class_scores, foreground_dice, scores_from_confusion
from utils.volumes.index import read_volumes_file
from utils.volumes.split_scores import read_groups, score_predictions, with_source

SUMMARY_FILE = "cv_summary.json"
SUMMARY_TEXT = "summary.txt"


@dataclass
class OutOfFold:
    """The pooled out-of-fold scores and what the report and summary are made from."""

    summary: dict[str, Any]
    scores: dict[str, Any]
    samples: list[Sample]
    predictions: dict[str, Path]
    matrices: list[np.ndarray]
    groups: dict[str, str] | None
    uncertainty: dict[str, float]


def fold_predictions(folder: Path, stems: list[str]) -> dict[str, Path]:
    """stem -> predicted label map in one fold's prediction folder, for the fold's validation stems."""
    found = index_by_stem(folder)
    missing = [stem for stem in stems if stem not in found]
    if missing:
        raise UserError(f"{folder} lacks the prediction of {len(missing)} case(s) such as {missing[0]}; run "
                        f"crossval.py again")
    return {stem: found[stem] for stem in stems}


def best_epoch(checkpoint: Path) -> dict[str, Any]:
    """The epoch and validation mIoU the fold's best.pt was saved at."""
    saved = load_checkpoint(checkpoint)
    return {"best_epoch": int(saved.get("epoch") or 0), "best_val_miou": float(saved.get("best_miou") or 0.0)}


def fold_rows(fold_stems: list[list[str]], matrices: dict[str, np.ndarray], checkpoints: list[Path],
              names: list[str]) -> list[dict[str, Any]]:
    """One row per fold: its cases, its own pooled mIoU and mean per-case foreground Dice, its best epoch."""
    rows = []
    for fold, (stems, checkpoint) in enumerate(zip(fold_stems, checkpoints)):
        pooled = scores_from_confusion(sum(matrices[stem] for stem in stems), names)
        dice = describe([foreground_dice(matrices[stem]) for stem in stems])
        rows.append({"fold": fold, "cases": len(stems), "miou": pooled["miou"], "mdice": pooled["mdice"],
                     "mean_foreground_dice": dice["mean"], **best_epoch(checkpoint)})
    return rows


def case_statistics(matrices: list[np.ndarray], names: list[str], empty: float | None) -> dict[str, Any]:
    """Per class: mean, median and bootstrap 95 % interval of per-case Dice and IoU; and of foreground Dice."""
    per_case = [class_scores(matrix) for matrix in matrices]

    def values(kind: int, c: int) -> list[float | None]:
        return [empty if scores[kind][c] is None else scores[kind][c] for scores in per_case]

    return {"foreground_dice": describe([foreground_dice(m) for m in matrices]),
            "dice": {name: describe(values(0, c)) for c, name in enumerate(names)},
            "iou": {name: describe(values(1, c)) for c, name in enumerate(names)}}


def volume_statistics(volumes: dict[str, Any]) -> dict[str, Any]:
    """Per class and metric (Dice, HD95, ASSD in mm, ...): mean, median and bootstrap interval over volumes."""
    per_volume = volumes["per_volume"]
    classes = sorted({name for entry in per_volume.values() for name in entry})
    metrics = sorted({metric for entry in per_volume.values() for values in entry.values() for metric in values})
    return {name: {metric: describe([entry.get(name, {}).get(metric) for entry in per_volume.values()])
                   for metric in metrics} for name in classes}


def score_out_of_fold(data: str, folds: int, folders: list[Path], checkpoints: list[Path], empty_case: str,
                      rand_voi: str | None) -> OutOfFold:
    """Score every fold's out-of-fold predictions as one set: pooled confusion matrix, per-case spread, fold table."""
    fold_stems = [read_split(data, f"fold{fold}_val") for fold in range(folds)]
    stems = [stem for group in fold_stems for stem in group]
    samples = find_samples(data, stems)
    predictions = {stem: path for folder, group in zip(folders, fold_stems)
                   for stem, path in fold_predictions(folder, group).items()}
    names = read_class_names(data)
    num_classes = max(len(names) if names else 2, 2)
    empty = None if empty_case == "exclude" else 1.0
    groups = read_groups(Path(data), stems, None)
    uncertainty = {stem: value for folder in folders for stem, value in (read_uncertainty(folder) or {}).items()}
    segment_class = class_index(rand_voi, names or [f"class_{c}" for c in range(num_classes)]) if rand_voi else None
    scores, matrices = score_predictions(samples, predictions, num_classes, names, groups,
                                         read_volumes_file(data), empty, segment_class)
    scores = with_source(scores, split="out-of-fold", data=str(data), pred=str(folders[0].parent))
    by_stem = dict(zip(stems, matrices))
    class_names = scores["class_names"]
    summary: dict[str, Any] = {
        "folds": folds, "cases": len(stems), "pooled_miou": scores["miou"], "pooled_dice": scores["dice"],
        "pooled_iou": scores["iou"], "class_names": class_names,
        "empty_case_rule": scores["per_case"]["empty_case_rule"],
        "per_case": case_statistics(matrices, class_names, empty),
        "fold_table": fold_rows(fold_stems, by_stem, checkpoints, class_names),
        "interval": "bootstrap 95 % percentile interval of the mean over cases (10000 resamples, seed 0)"}
    group_dice = scores["per_case"].get("group_dice")
    if group_dice:  # patients: the unit many papers average over
        summary["per_group"] = {name: describe([dice[c] for dice in group_dice.values()])
                                for c, name in enumerate(class_names)}
    if scores.get("volumes"):
        summary["per_volume"] = volume_statistics(scores["volumes"])
    if scores.get("rand_voi"):
        summary["rand_voi"] = {key: value for key, value in scores["rand_voi"].items() if key != "per_image"}
    if uncertainty:
        errors = [1 - d if (d := foreground_dice(by_stem[stem])) is not None else None for stem in stems]
        summary["uncertainty_vs_error"] = {
            **rank_correlation([uncertainty.get(stem) for stem in stems], errors),
            "what": "Spearman rank correlation of per-case uncertainty with 1 - foreground Dice"}
    return OutOfFold(summary, scores, samples, predictions, matrices, groups, uncertainty)


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """The readable summary: pooled scores, per-class spread over cases, per-volume metrics, the fold table."""
    lines = [f"{summary['folds']}-fold cross-validation, {summary['cases']} out-of-fold cases",
             f"pooled mIoU (one confusion matrix over all cases): {number(summary['pooled_miou'])}",
             f"per-case foreground Dice: {spread_text(summary['per_case']['foreground_dice'])}"]
    for name, stats in summary["per_case"]["dice"].items():
        lines.append(f"  Dice {name}: {spread_text(stats)}")
    for name, stats in summary.get("per_group", {}).items():
        lines.append(f"  per group (patient) Dice {name}: {spread_text(stats)}")
    for name, metrics in summary.get("per_volume", {}).items():
        for metric in ("dice", "hd95", "assd"):
            if metric in metrics:
                lines.append(f"  per volume {metric} {name}: {spread_text(metrics[metric])}")
    if "rand_voi" in summary:
        lines.append(format_rand_voi(summary["rand_voi"]))
    if "uncertainty_vs_error" in summary:
        rho = summary["uncertainty_vs_error"]
        lines.append(f"uncertainty vs 1 - Dice: Spearman {number(rho['spearman'], 3)} (p {number(rho['p_value'], 4)}"
                     f", {rho['cases']} cases)")
    lines.append("fold  cases   mIoU   fg Dice  best epoch")
    for row in summary["fold_table"]:
        lines.append(f"{row['fold']:>4}  {row['cases']:>5}  {number(row['miou'])}  "
                     f"{number(row['mean_foreground_dice'])}  {row['best_epoch']:>10}")
    return lines


def fold_table_html(summary: dict[str, Any]) -> str:
    """The per-fold table for the report's first page, so that one bad fold stands out."""
    rows = "".join(f"<tr><td>{row['fold']}</td><td>{row['cases']}</td><td>{number(row['miou'])}</td>"
                   f"<td>{number(row['mean_foreground_dice'])}</td><td>{row['best_epoch']}</td>"
                   f"<td>{number(row['best_val_miou'])}</td></tr>" for row in summary["fold_table"])
    spread = html.escape(spread_text(summary["per_case"]["foreground_dice"]))
    return ("<h2>Folds</h2><table><tr><th>fold</th><th>cases</th><th>mIoU</th><th>mean foreground Dice</th>"
            f"<th>best epoch</th><th>its val mIoU</th></tr>{rows}</table>"
            f"<p class=\"note\">Per-case foreground Dice over all folds: {spread}; "
            f"{html.escape(summary['interval'])}.</p>")


def write_summary(cv_dir: Path, result: OutOfFold) -> list[str]:
    """cv_summary.json, summary.txt, and miou.py's files (JSON, plots, per_image.csv, report.html) in `cv_dir`."""
    lines = summary_lines(result.summary)
    folders = sorted({path.parent for path in result.predictions.values()})
    planned_outputs(cv_dir / "miou.json", [sample.stem for sample in result.samples], folders,
                    len(result.scores["class_names"]), html=True, uncertainty=bool(result.uncertainty))
    written = write_score_outputs(cv_dir / "miou.json", result.scores, result.samples, result.predictions,
                                  result.matrices, result.groups, html=True, extra_html=fold_table_html(result.summary),
                                  uncertainty=result.uncertainty or None)
    write_json(cv_dir / SUMMARY_FILE, result.summary)
    write_text(cv_dir / SUMMARY_TEXT, "\n".join(lines) + "\n")
    return [*lines, *written, f"summary written to {cv_dir / SUMMARY_FILE} and {cv_dir / SUMMARY_TEXT}"]
