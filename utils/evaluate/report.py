"""The score report for people: per-image CSV, score plots and an offline, paginated HTML page with an error gallery."""
from __future__ import annotations

import html
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import quote

import numpy as np
from PIL import Image
from tqdm import tqdm

from utils.data.dataset import Sample
from utils.errors import UserError
from utils.evaluate.report_style import STYLE
from utils.evaluate.score_files import BLANK_RULE
from utils.io.files import atomic_open, write_text
from utils.io.images import open_image
from utils.io.labels import IGNORE_INDEX, label_to_array, palette
from utils.metrics import class_scores, foreground_dice

PAGE_SIZE = 100
THUMBNAIL_SIDE = 256
DISPLAY_SIDE = 128  # CSS pixels: 256-px thumbnails stay sharp on high-density screens
FILES_DIR = "report_files"
FALSE_POSITIVE, FALSE_NEGATIVE, WRONG_CLASS = 252, 253, 254  # palette slots above the class ids (255: ignore)
ERROR_COLOURS = {FALSE_POSITIVE: (255, 214, 0), FALSE_NEGATIVE: (0, 190, 255), WRONG_CLASS: (255, 0, 255)}


@dataclass
class GalleryItem:
    """One scored image: its files, its confusion matrix, its case group and its foreground Dice."""

    stem: str
    image_path: Path
    label_path: Path
    pred_path: Path
    matrix: np.ndarray
    group: str | None
    dice: float | None


def error_panel(label: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """The prediction's class ids, with wrong pixels replaced by the false positive / negative / wrong-class codes."""
    panel = pred.astype(np.uint8)
    wrong = (label != IGNORE_INDEX) & (pred != label)
    panel[wrong & (label == 0)] = FALSE_POSITIVE
    panel[wrong & (pred == 0)] = FALSE_NEGATIVE
    panel[wrong & (label != 0) & (pred != 0)] = WRONG_CLASS
    return panel


def thumbnail_size(height: int, width: int, side: int = THUMBNAIL_SIDE) -> tuple[int, int]:
    """(width, height) with the long side at most `side`, keeping the aspect ratio."""
    scale = min(1.0, side / max(height, width))
    return max(1, round(width * scale)), max(1, round(height * scale))


def shrink_map(codes: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Downscale a code map (nearest) so that every non-background code still shows where it covers any pixel."""
    if (codes.shape[1], codes.shape[0]) == size:
        return codes
    small = np.asarray(Image.fromarray(codes).resize(size, Image.NEAREST)).copy()
    # Errors last, so a one-pixel miss is never painted over by the class around it.
    for code in sorted(int(c) for c in np.unique(codes) if c != 0):
        coverage = np.asarray(Image.fromarray(((codes == code) * 255).astype(np.uint8)).resize(size, Image.BOX))
        small[coverage > 0] = code
    return small


def _save_codes(path: Path, codes: np.ndarray, colours: np.ndarray) -> None:
    image = Image.fromarray(codes)
    image.putpalette(colours.tobytes())
    with atomic_open(path, "wb") as handle:
        image.save(handle, format="PNG")


def write_thumbnails(item: GalleryItem, folder: Path, colours: np.ndarray) -> tuple[tuple[int, int], bool]:
    """image.jpg, label.png and pred.png thumbnails of one item; returns their (width, height) and whether 255 occurs."""
    label = label_to_array(open_image(item.label_path), item.label_path)
    pred = label_to_array(open_image(item.pred_path), item.pred_path)
    size = thumbnail_size(*label.shape)
    image = open_image(item.image_path)
    image = image.convert("L" if image.mode in ("1", "L", "LA") else "RGB")
    if image.size != size:
        image = image.resize(size, Image.LANCZOS)
    with atomic_open(folder / f"{item.stem}_image.jpg", "wb") as handle:
        image.save(handle, format="JPEG", quality=85)
    _save_codes(folder / f"{item.stem}_label.png", shrink_map(label, size), colours)
    _save_codes(folder / f"{item.stem}_pred.png", shrink_map(error_panel(label, pred), size), colours)
    return size, bool((label == IGNORE_INDEX).any())


def gallery_order(items: Sequence[GalleryItem]) -> list[GalleryItem]:
    """Worst foreground Dice first; images without foreground in label and prediction last (then by stem)."""
    return sorted(items, key=lambda item: (item.dice is None, item.dice if item.dice is not None else 0.0, item.stem))


def page_name(number: int) -> str:
    """File name of gallery page `number` (1-based); page 1 is report.html, which also holds the summary."""
    return "report.html" if number == 1 else f"report_{number}.html"


def check_report(folder: Path, class_count: int, images: int, page_size: int = PAGE_SIZE) -> list[Path]:
    """The pages and thumbnail folder write_html_report would write; refuses more classes than its palette holds."""
    if class_count > FALSE_POSITIVE:
        raise UserError(f"the HTML report colours errors with palette entries {FALSE_POSITIVE}-{WRONG_CLASS}, so it "
                        f"supports at most {FALSE_POSITIVE} classes, not {class_count}; leave out --report")
    pages = max(1, -(-images // page_size))
    return [*(folder / page_name(number) for number in range(1, pages + 1)), folder / FILES_DIR]


def write_html_report(folder: str | Path, scores: dict[str, Any], samples: Sequence[Sample],
                      predictions: dict[str, Path], matrices: Sequence[np.ndarray],
                      groups: dict[str, str] | None, page_size: int = PAGE_SIZE) -> Path:
    """report.html (+ report_2.html, ...) and report_files/ thumbnails in `folder`; returns report.html's path."""
    folder = Path(folder)
    files = folder / FILES_DIR
    names = scores["class_names"]
    check_report(folder, len(names), len(samples), page_size)
    colours = palette(len(names)).copy()
    for code, colour in ERROR_COLOURS.items():
        colours[code] = colour
    items = gallery_order([GalleryItem(s.stem, s.image_path, s.label_path, predictions[s.stem], m,
                                       groups.get(s.stem) if groups else None, foreground_dice(m))
                           for s, m in zip(samples, matrices)])
    sizes, any_ignored = {}, False
    for item in tqdm(items, desc="thumbnails", leave=False):
        sizes[item.stem], ignored = write_thumbnails(item, files, colours)
        any_ignored |= ignored
    pages = max(1, -(-len(items) // page_size))
    legend = _legend(names, colours, any_ignored)
    for number in range(1, pages + 1):
        chunk = items[(number - 1) * page_size:number * page_size]
        body = [_summary(scores, groups)] if number == 1 else []
        body.append(_gallery(chunk, number, pages, (number - 1) * page_size, len(items), sizes, names, legend))
        write_text(folder / page_name(number), _document(scores, number, pages, "\n".join(body)))
    for stale in folder.glob("report_*.html"):  # pages of an earlier, longer report would be orphans
        match = re.fullmatch(r"report_(\d+)\.html", stale.name)
        if match and int(match.group(1)) > pages:
            stale.unlink()
    return folder / page_name(1)


def _document(scores: dict[str, Any], number: int, pages: int, body: str) -> str:
    title = f"Segmentation scores: {scores.get('pred', '')}" + (f" (page {number} of {pages})" if number > 1 else "")
    meta = (f"split <b>{_e(scores.get('split', '?'))}</b> of <code>{_e(scores.get('data', '?'))}</code>, "
            f"{scores['images']} images, {scores['pixels']} scored pixels; predictions "
            f"<code>{_e(scores.get('pred', '?'))}</code>")
    back = "" if number == 1 else f' &middot; <a href="{page_name(1)}">summary and page 1</a>'
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>{_e(title)}</title>\n'
            f"<style>{STYLE}</style>\n</head>\n<body>\n<h1>Segmentation scores</h1>\n"
            f'<p class="meta">{meta}{back}</p>\n{body}\n</body>\n</html>\n')


def _e(text: Any) -> str:
    return html.escape(str(text))


def _percent(value: float | None) -> str:
    return "&ndash;" if value is None else f"{value * 100:.2f}%"


def _fraction(value: float | None) -> str:
    return "&ndash;" if value is None else f"{value:.4f}"


def _summary(scores: dict[str, Any], groups: dict[str, str] | None) -> str:
    names = scores["class_names"]
    matrix = np.asarray(scores["confusion_matrix"])
    per_image = scores.get("per_case", {}).get("mean_image_dice", [None] * len(names))
    parts = ['<section id="summary">\n<h2>Summary</h2>',
             '<table class="headline"><thead><tr><th>mIoU</th><th>mPA</th><th>mDice</th><th>pixel accuracy</th>'
             f'</tr></thead><tbody><tr><td>{_percent(scores["miou"])}</td><td>{_percent(scores["mpa"])}</td>'
             f'<td>{_percent(scores["mdice"])}</td><td>{_percent(scores["pixel_accuracy"])}</td></tr></tbody></table>',
             "<table><thead><tr><th>class</th><th>IoU</th><th>PA</th><th>Dice</th><th>precision</th>"
             "<th>mean per-image Dice</th><th>label pixels</th><th>predicted pixels</th></tr></thead><tbody>"]
    for index, name in enumerate(names):
        parts.append(f"<tr><td>{_e(name)}</td><td>{_percent(scores['iou'][index])}</td>"
                     f"<td>{_percent(scores['pa'][index])}</td><td>{_percent(scores['dice'][index])}</td>"
                     f"<td>{_percent(scores['precision'][index])}</td><td>{_fraction(per_image[index])}</td>"
                     f"<td>{matrix[index].sum()}</td><td>{matrix[:, index].sum()}</td></tr>")
    parts.append("</tbody></table>")
    notes = ["IoU = TP/(TP+FP+FN), PA = TP/(TP+FN), Dice = 2TP/(2TP+FP+FN) over all pixels of the split; "
             "label 255 is not scored."]
    if scores.get("absent_classes"):
        notes.append("Left out of the means (in neither labels nor predictions): "
                     + ", ".join(_e(n) for n in scores["absent_classes"]) + ".")
    if "per_case" in scores:
        notes.append(f"Mean per-image Dice: an image where the class is in neither map is "
                     f"{_e(scores['per_case']['empty_case_rule'])}. Per-image values: "
                     f'<a href="per_image.csv">per_image.csv</a> ({_e(BLANK_RULE)}).')
    parts.extend(f'<p class="note">{note}</p>' for note in notes)
    parts.append('</section>\n<section id="plots">\n<h2>Plots</h2>\n<div class="plots">'
                 '<img src="scores.png" alt="per-class IoU and Dice">'
                 '<img src="confusion.png" alt="row-normalised confusion matrix"></div>\n</section>')
    if scores.get("volumes"):
        parts.append(_volume_section(scores["volumes"]))
    elif scores.get("per_case", {}).get("group_dice"):
        parts.append(_group_section(scores["per_case"]["group_dice"], names, groups))
    return "\n".join(parts)


def _worst_first(value: float | None) -> tuple[bool, float]:
    return value is None, value if value is not None else 0.0


def _volume_section(volumes: dict[str, Any]) -> str:
    rows = [(name, class_name, values) for name, classes in volumes["per_volume"].items()
            for class_name, values in classes.items()]
    rows.sort(key=lambda row: (_worst_first(row[2]["dice"]), row[0], row[1]))
    parts = ['<section id="volumes">',
             f"<h2>Per volume ({volumes['volumes_scored']} volumes, worst Dice first; distances in mm)</h2>",
             "<table><thead><tr><th>volume</th><th>class</th><th>Dice</th><th>IoU</th><th>HD95 mm</th>"
             "<th>ASSD mm</th></tr></thead><tbody>"]
    for name, class_name, values in rows:
        parts.append(f"<tr><td>{_e(name)}</td><td>{_e(class_name)}</td><td>{_fraction(values['dice'])}</td>"
                     f"<td>{_fraction(values['iou'])}</td><td>{_distance(values['hd95'])}</td>"
                     f"<td>{_distance(values['assd'])}</td></tr>")
    parts.append("</tbody></table>\n<table><thead><tr><th>over volumes</th><th>mean Dice</th><th>median Dice</th>"
                 "<th>global Dice</th><th>mean HD95 mm</th><th>mean ASSD mm</th></tr></thead><tbody>")
    for class_name, values in volumes["summary"].items():
        parts.append(f"<tr><td>{_e(class_name)}</td><td>{_fraction(values['dice']['mean'])}</td>"
                     f"<td>{_fraction(values['dice']['median'])}</td><td>{_fraction(values['global_dice'])}</td>"
                     f"<td>{_distance(values['hd95']['mean'])}</td><td>{_distance(values['assd']['mean'])}</td></tr>")
    parts.append("</tbody></table>")
    parts.extend(f'<p class="note">{_e(rule)}: {_e(text)}</p>' for rule, text in volumes["empty_rules"].items())
    if volumes["incomplete_volumes"]:
        listed = ", ".join(f"{name} ({count} slices missing)" for name, count in volumes["incomplete_volumes"].items())
        parts.append(f'<p class="note">Not scored per volume, not all slices in this split: {_e(listed)}</p>')
    parts.append("</section>")
    return "\n".join(parts)


def _distance(value: float | None) -> str:
    return "&ndash;" if value is None else f"{value:.2f}"


def _group_section(group_dice: dict[str, list[float | None]], names: Sequence[str],
                   groups: dict[str, str] | None) -> str:
    counts: dict[str, int] = {}
    for group in (groups or {}).values():
        counts[group] = counts.get(group, 0) + 1
    foreground = list(range(1, len(names)))

    def mean(values: list[float | None]) -> float | None:
        defined = [values[c] for c in foreground if values[c] is not None]
        return float(np.mean(defined)) if defined else None

    rows = sorted(group_dice.items(), key=lambda row: (_worst_first(mean(row[1])), row[0]))
    parts = ['<section id="groups">', f"<h2>Per group ({len(rows)} groups, e.g. patients; worst Dice first)</h2>",
             "<table><thead><tr><th>group</th><th>images</th>"
             + "".join(f"<th>Dice {_e(names[c])}</th>" for c in foreground) + "</tr></thead><tbody>"]
    for group, values in rows:
        parts.append(f"<tr><td>{_e(group)}</td><td>{counts.get(group, '')}</td>"
                     + "".join(f"<td>{_fraction(values[c])}</td>" for c in foreground) + "</tr>")
    parts.append("</tbody></table>\n<p class=\"note\">Dice of all pixels of a group's images together.</p>\n</section>")
    return "\n".join(parts)


def _legend(names: Sequence[str], colours: np.ndarray, any_ignored: bool) -> str:
    def swatch(colour: Sequence[int], text: str) -> str:
        return (f'<span><i class="swatch" style="background:rgb({colour[0]},{colour[1]},{colour[2]})"></i>'
                f"{text}</span>")

    entries = [swatch(colours[c], _e(name)) for c, name in enumerate(names)]
    entries.append(swatch(ERROR_COLOURS[FALSE_POSITIVE], "false positive (predicted, not in label)"))
    entries.append(swatch(ERROR_COLOURS[FALSE_NEGATIVE], "false negative (in label, missed)"))
    if len(names) > 2:
        entries.append(swatch(ERROR_COLOURS[WRONG_CLASS], "wrong foreground class"))
    if any_ignored:
        entries.append(swatch(colours[IGNORE_INDEX], "ignored (label 255, not scored)"))
    return ('<div class="legend"><b>Each case: image | label | prediction.</b> Colours: ' + " ".join(entries)
            + "</div>")


def _navigation(number: int, pages: int) -> str:
    if pages == 1:
        return ""
    links = [f"<strong>{n}</strong>" if n == number else f'<a href="{page_name(n)}">{n}</a>'
             for n in range(1, pages + 1)]
    if number > 1:
        links.insert(0, f'<a href="{page_name(number - 1)}">&larr; previous</a>')
    if number < pages:
        links.append(f'<a href="{page_name(number + 1)}">next &rarr;</a>')
    return '<nav class="pages">pages: ' + " ".join(links) + "</nav>"


def _badge(dice: float | None) -> str:
    if dice is None:
        return '<span class="dice none" title="no foreground in label or prediction">n/a</span>'
    grade = "bad" if dice < 0.5 else "mid" if dice < 0.8 else "good"
    return f'<span class="dice {grade}" title="foreground Dice">{dice:.3f}</span>'


def _gallery(chunk: Sequence[GalleryItem], number: int, pages: int, offset: int, total: int,
             sizes: dict[str, tuple[int, int]], names: Sequence[str], legend: str) -> str:
    navigation = _navigation(number, pages)
    parts = ['<section id="gallery">',
             f"<h2>Images, worst foreground Dice first: {offset + 1}&ndash;{offset + len(chunk)} of {total}</h2>",
             '<p class="note">Foreground Dice = mean Dice over the non-background classes in the label or the '
             "prediction; images with no foreground in either come last (n/a).</p>", legend, navigation,
             '<div class="gallery">']
    for rank, item in enumerate(chunk, start=offset + 1):
        width, height = sizes[item.stem]
        scale = DISPLAY_SIDE / max(width, height)
        shown = f'width="{round(width * scale)}" height="{round(height * scale)}"'
        upscaled = ' class="up"' if scale > 1 else ""
        panels = "".join(
            f'<img src="{FILES_DIR}/{quote(item.stem + suffix)}" alt="{what}" title="{what}" {shown} '
            f'loading="lazy"{upscaled}>'
            for suffix, what in (("_image.jpg", "image"), ("_label.png", "label"), ("_pred.png", "prediction")))
        details = ""
        if len(names) > 2:
            dice = class_scores(item.matrix)[0]
            details = "<br>" + ", ".join(f"{_e(names[c])} {_fraction(dice[c])}" for c in range(1, len(names))
                                         if dice[c] is not None)
        group = f" &middot; {_e(item.group)}" if item.group else ""
        parts.append(f'<figure class="case"><div class="panels">{panels}</div><figcaption><span class="rank">'
                     f"#{rank}</span> {_badge(item.dice)} <code>{_e(item.stem)}</code>{group}{details}"
                     "</figcaption></figure>")
    parts.extend(["</div>", navigation, "</section>"])
    return "\n".join(parts)
