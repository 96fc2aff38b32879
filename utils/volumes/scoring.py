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


def _row(cells: list[tuple[str, int]]) -> str:
    """Name and class left-aligned, numbers right-aligned, each in its width; a space always separates them, so
    a value wider than its column never runs into the next one."""
    (name, name_width), (class_name, class_width), *numbers = cells
    return (f"{name:<{name_width - 1}} {class_name:<{class_width - 1}} "
            + "".join(f" {text:>{width - 1}}" for text, width in numbers)).rstrip()


def format_volume_report(report: dict[str, Any]) -> str:
    """The per-volume table and the summary over volumes as text."""
    lines = [f"per-volume scores ({report['volumes_scored']} volumes; distances in mm with each volume's spacing)"]
    widths = (20, 14, 9, 9, 10, 10)
    lines.append(_row(list(zip(("volume", "class", "Dice", "IoU", "HD95 mm", "ASSD mm"), widths))))
    for name, classes in report["per_volume"].items():
        for class_name, values in classes.items():
            cells = (name, class_name, _number(values["dice"], True), _number(values["iou"], True),
                     _number(values["hd95"], False), _number(values["assd"], False))
            lines.append(_row(list(zip(cells, widths))))
    lines.append("")
    widths = (20, 14, 10, 9, 9, 11, 11)
    lines.append(_row(list(zip(("over volumes", "class", "mean Dice", "median", "global", "mean HD95", "mean ASSD"),
                               widths))))
    for class_name, values in report["summary"].items():
        cells = ("", class_name, _number(values["dice"]["mean"], True), _number(values["dice"]["median"], True),
                 _number(values["global_dice"], True), _number(values["hd95"]["mean"], False),
                 _number(values["assd"]["mean"], False))
        lines.append(_row(list(zip(cells, widths))))
    for rule, text in report["empty_rules"].items():
        lines.append(f"{rule}: {text}")
    if report["incomplete_volumes"]:
        listed = ", ".join(f"{name} ({count} slices missing)" for name, count in report["incomplete_volumes"].items())
        lines.append(f"not scored per volume, not all slices in this split: {listed}")
    return "\n".join(lines)
