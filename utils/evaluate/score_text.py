"""The scores as printed text: the confusion matrix, the per-class table, the means and the per-case Dice."""
from __future__ import annotations

from typing import Any

from utils.evaluate.em_metrics import format_rand_voi


def dice_list(names: list[str], values: list[float | None]) -> str:
    """'liver 0.9123, tumour -' style listing."""
    return ", ".join(f"{n} {v:.4f}" if v is not None else f"{n} -" for n, v in zip(names, values))


def format_report(scores: dict[str, Any], counted: str | None = None) -> str:
    """The confusion matrix and per-class table as text; `counted` replaces '(N pixels, M images)'."""
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
    counted = counted or f"{scores['pixels']} pixels, {scores['images']} images"
    lines.append(f"mIoU {fmt(scores['miou']).strip()}  mPA {fmt(scores['mpa']).strip()}  "
                 f"mDice {fmt(scores['mdice']).strip()}  pixel accuracy {fmt(scores['pixel_accuracy']).strip()}"
                 f"  ({counted})")
    cases = scores.get("per_case")
    if cases:
        rule = f"case where a class is in neither map: {cases['empty_case_rule']}"
        lines.append("mean per-image Dice: " + dice_list(names, cases["mean_image_dice"]) + f"  ({rule})")
        if "mean_group_dice" in cases:
            lines.append(f"mean per-group Dice ({cases['groups']} groups, e.g. patients): "
                         + dice_list(names, cases["mean_group_dice"]))
    if scores.get("rand_voi"):
        lines.append(format_rand_voi(scores["rand_voi"]))
    if scores["absent_classes"]:
        lines.append(f"left out of the means (absent from labels and predictions): {', '.join(scores['absent_classes'])}")
    return "\n".join(lines)
