"""Per-volume scores of a sliced volume dataset: predicted slices put back into volumes, scored in mm."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from utils.volumes.metrics import EMPTY_RULES, summarize, volume_scores

METRICS = ("dice", "iou", "hd95", "assd")


def stack_slices(paths: list[Path], read: Callable[[Path], np.ndarray]) -> np.ndarray:
    """(slices, H, W) stack of the label maps in `paths`, in order."""
    return np.stack([read(path) for path in paths])


def score_volumes(volumes: dict[str, Any], predictions: dict[str, Path], labels: dict[str, Path],
                  num_classes: int, class_names: list[str], read: Callable[[Path], np.ndarray]) -> dict[str, Any]:
    """Dice, IoU, HD95 and ASSD per volume and class, their mean and median, and global Dice, for complete volumes.

    `predictions` and `labels` map the scored stems to files; a volume whose slices are not all among them
    (a training split thinned by --keep-empty, a hand-made split) is listed as incomplete and not scored,
    since a missing slice would hide its errors.
    """
    per_volume: dict[str, dict[str, Any]] = {}
    scores: list[dict[int, dict]] = []
    incomplete: dict[str, int] = {}
    for name, entry in volumes["volumes"].items():
        stems = entry["slices"]
        present = [stem for stem in stems if stem in predictions]
        if not present:
            continue
        if len(present) < len(stems):
            incomplete[name] = len(stems) - len(present)
            continue
        pred = stack_slices([predictions[stem] for stem in stems], read)
        label = stack_slices([labels[stem] for stem in stems], read)
        result = volume_scores(pred, label, num_classes, entry["stack_spacing"])
        scores.append(result)
        per_volume[name] = {class_names[c]: values for c, values in result.items()}
    summary = summarize(scores, num_classes) if scores else {}
    return {
        "volumes_scored": len(per_volume),
        "spacing_from": "volumes.json (through-plane, row, column mm of each volume)",
        "empty_rules": EMPTY_RULES,
        "incomplete_volumes": incomplete,
        "per_volume": per_volume,
        "summary": {class_names[c]: values for c, values in summary.items()},
    }


def _number(value: float | None, percent: bool) -> str:
    if value is None:
        return "-"
    return f"{value * 100:.2f}%" if percent else f"{value:.2f}"


def format_volume_report(report: dict[str, Any]) -> str:
    """The per-volume table and the summary over volumes as text."""
    lines = [f"per-volume scores ({report['volumes_scored']} volumes; distances in mm with each volume's spacing)"]
    header = f"{'volume':<20}{'class':<14}{'Dice':>9}{'IoU':>9}{'HD95 mm':>10}{'ASSD mm':>10}"
    lines.append(header)
    for name, classes in report["per_volume"].items():
        for class_name, values in classes.items():
            lines.append(f"{name:<20}{class_name:<14}{_number(values['dice'], True):>9}"
                         f"{_number(values['iou'], True):>9}{_number(values['hd95'], False):>10}"
                         f"{_number(values['assd'], False):>10}")
    lines.append("")
    lines.append(f"{'over volumes':<20}{'class':<14}{'mean Dice':>10}{'median':>9}{'global':>9}"
                 f"{'mean HD95':>11}{'mean ASSD':>11}")
    for class_name, values in report["summary"].items():
        lines.append(f"{'':<20}{class_name:<14}{_number(values['dice']['mean'], True):>10}"
                     f"{_number(values['dice']['median'], True):>9}{_number(values['global_dice'], True):>9}"
                     f"{_number(values['hd95']['mean'], False):>11}{_number(values['assd']['mean'], False):>11}")
    for rule, text in report["empty_rules"].items():
        lines.append(f"{rule}: {text}")
    if report["incomplete_volumes"]:
        listed = ", ".join(f"{name} ({count} slices missing)" for name, count in report["incomplete_volumes"].items())
        lines.append(f"not scored per volume, not all slices in this split: {listed}")
    return "\n".join(lines)
