"""Score predicted label maps against the labels of a split: confusion matrix, IoU, PA, Dice, mIoU, mPA.

For datasets imported from volumes (volumes.json) also per volume: Dice, IoU, HD95 and ASSD in mm.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from utils.cli import MAX_CLASSES, ArgumentParser, int_at_least, run_main
from utils.data.dataset import find_samples, read_split
from utils.data.folders import CLASSES_FILE, DATASET_FOLDERS, GROUPS_FILE, index_by_stem, read_class_names, split_file
from utils.data.splits import group_of
from utils.errors import UserError
from utils.evaluate.prediction_folder import PREDICTION_FILE, predicted_stems
from utils.evaluate.report import check_report, write_html_report
from utils.evaluate.score_files import check_score_outputs, write_score_files
from utils.io.files import write_json
from utils.io.images import open_image
from utils.io.labels import IGNORE_INDEX, label_to_array
from utils.io.outputs import check_outputs
from utils.metrics import dice_per_class, mean_case_dice, scores_from_confusion
from utils.volumes.index import VOLUMES_FILE, read_volumes_file
from utils.volumes.scoring import format_volume_report, score_volumes


def read_label_map(path: Path) -> np.ndarray:
    """A label PNG as an H x W class-id array."""
    return label_to_array(open_image(path), path)


def accumulate(pairs: list[tuple[Path, Path]], num_classes: int) -> list[np.ndarray]:
    """One confusion matrix per (prediction, label) pair over all its pixels; 255 in the label is skipped."""
    matrices = []
    for pred_path, label_path in tqdm(pairs, desc="score", leave=False, disable=None):
        pred = label_to_array(open_image(pred_path), pred_path).astype(np.int64)
        label = label_to_array(open_image(label_path), label_path).astype(np.int64)
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
    return matrices


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


def format_report(scores: dict) -> str:
    """The confusion matrix and per-class table as text."""
    names, width = scores["class_names"], max(12, *(len(n) + 2 for n in scores["class_names"]))
    lines = ["confusion matrix (rows: label, columns: prediction)"]
    lines.append(" " * width + "".join(f"{n:>{width}}" for n in names))
    for name, row in zip(names, scores["confusion_matrix"]):
        lines.append(f"{name:<{width}}" + "".join(f"{v:>{width}d}" for v in row))
    lines.append("")
    lines.append(f"{'class':<{width}}{'IoU':>9}{'PA':>9}{'Dice':>9}{'precision':>11}")

    def fmt(value: float | None, size: int = 9) -> str:
        return f"{value * 100:>{size - 1}.2f}%" if value is not None else f"{'-':>{size}}"

    for i, name in enumerate(names):
        lines.append(f"{name:<{width}}{fmt(scores['iou'][i])}{fmt(scores['pa'][i])}{fmt(scores['dice'][i])}"
                     f"{fmt(scores['precision'][i], 11)}")
    lines.append("")
    lines.append(f"mIoU {fmt(scores['miou']).strip()}  mPA {fmt(scores['mpa']).strip()}  "
                 f"mDice {fmt(scores['mdice']).strip()}  pixel accuracy {fmt(scores['pixel_accuracy']).strip()}"
                 f"  ({scores['pixels']} pixels, {scores['images']} images)")
    cases = scores["per_case"]
    rule = f"case where a class is in neither map: {cases['empty_case_rule']}"
    lines.append("mean per-image Dice: " + dice_list(names, cases["mean_image_dice"]) + f"  ({rule})")
    if "mean_group_dice" in cases:
        lines.append(f"mean per-group Dice ({cases['groups']} groups, e.g. patients): "
                     + dice_list(names, cases["mean_group_dice"]))
    if scores["absent_classes"]:
        lines.append(f"left out of the means (absent from labels and predictions): {', '.join(scores['absent_classes'])}")
    return "\n".join(lines)


def dice_list(names: list[str], values: list[float | None]) -> str:
    """'liver 0.9123, tumour -' style listing."""
    return ", ".join(f"{n} {v:.4f}" if v is not None else f"{n} -" for n, v in zip(names, values))


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--pred", required=True, help="folder of predicted label PNGs (get_miou_prediction.py)")
    parser.add_argument("--data", default="datasets/SynthLiver", help="dataset folder with the true labels")
    parser.add_argument("--split", default="val", help="split whose images are scored")
    parser.add_argument("--num-classes", type=int_at_least(1, MAX_CLASSES), default=None,
                        help="classes (default: lines of classes.txt, else 2)")
    parser.add_argument("--json", default=None, help="report file (default: <pred>/miou.json)")
    parser.add_argument("--group", default=None,
                        help="regex on the stem naming the case group (patient) for per-group Dice "
                             "(default: the dataset's groups.json when present)")
    parser.add_argument("--report", action="store_true",
                        help="also write report.html next to the JSON: summary, plots and a worst-first image gallery")
    parser.add_argument("--empty-case", choices=("exclude", "one"), default="exclude",
                        help="per-case Dice when a class is in neither prediction nor label: "
                             "leave the case out of that class's mean, or count it as 1")
    args = parser.parse_args(argv)
    names = read_class_names(args.data)
    num_classes = max(args.num_classes or (len(names) if names else 2), 2)
    if names and len(names) != num_classes:
        names = None
    samples = find_samples(args.data, read_split(args.data, args.split))
    pred, data = Path(args.pred), Path(args.data)
    stems = predicted_stems(pred, data, args.split, [s.stem for s in samples])
    predictions = index_by_stem(pred)
    missing = [stem for stem in stems if stem not in predictions]
    if missing:
        raise UserError(f"{len(missing)} image(s) of split '{args.split}' have no prediction in {args.pred}: "
                        f"{', '.join(missing[:10])}")
    groups = read_groups(data, stems, args.group)
    report = Path(args.json) if args.json else pred / "miou.json"
    outputs = check_score_outputs(report, stems, pred)
    if args.report:
        outputs += check_report(report.parent, num_classes, len(samples))
    inputs = [*(predictions[stem] for stem in stems), *(s.label_path for s in samples),
              *(s.image_path for s in samples), split_file(data, args.split), pred / PREDICTION_FILE,
              *(data / name for name in (CLASSES_FILE, GROUPS_FILE, VOLUMES_FILE))]
    check_outputs(outputs, inputs, DATASET_FOLDERS)
    matrices = accumulate([(predictions[s.stem], s.label_path) for s in samples], num_classes)
    scores = scores_from_confusion(sum(matrices), names)
    scores.update(images=len(samples), split=args.split, data=str(args.data), pred=str(args.pred))
    empty = None if args.empty_case == "exclude" else 1.0
    scores["per_case"] = case_report(matrices, stems, groups, empty)
    print(format_report(scores))
    volumes = read_volumes_file(args.data)
    if volumes:
        class_names = scores["class_names"]
        scores["volumes"] = score_volumes(volumes, {s.stem: predictions[s.stem] for s in samples},
                                          {s.stem: s.label_path for s in samples}, num_classes, class_names,
                                          read_label_map)
        print()
        print(format_volume_report(scores["volumes"]))
    write_json(report, scores)
    print(f"report written to {report}")
    print("\n".join(write_score_files(report.parent, scores, stems, matrices)))
    if args.report:
        page = write_html_report(report.parent, scores, samples, predictions, matrices, groups)
        print(f"HTML report written to {page} (open it in a browser; it needs no network)")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
