"""The score report for people: an offline, paginated HTML page with the summary, plots and an error gallery."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import quote

import numpy as np
from tqdm import tqdm

from utils.data.dataset import Sample
from utils.errors import UserError
from utils.evaluate.report_gallery import (
    ERROR_COLOURS,
    FALSE_POSITIVE,
    ORDERS,
    WRONG_CLASS,
    GalleryItem,
    GalleryPage,
    escape,
    fraction,
    gallery,
    gallery_order,
    legend,
    page_name,
    write_thumbnails,
)
from utils.evaluate.report_style import STYLE
from utils.evaluate.score_files import BLANK_RULE
from utils.io.files import write_text
from utils.io.labels import palette
from utils.metrics import foreground_dice

PAGE_SIZE = 100
FILES_DIR = "report_files"
_e, _fraction = escape, fraction


def files_dir(prefix: str = "") -> str:
    """The thumbnail folder's name for the report files named with `prefix`."""
    return f"{prefix}{FILES_DIR}"


def check_report(folder: Path, class_count: int, images: int, page_size: int = PAGE_SIZE, *, prefix: str = "",
                 uncertainty: bool = False) -> list[Path]:
    """The pages and thumbnail folder write_html_report would write; refuses more classes than its palette holds."""
    if class_count > FALSE_POSITIVE:
        raise UserError(f"the HTML report colours errors with palette entries {FALSE_POSITIVE}-{WRONG_CLASS}, so it "
                        f"supports at most {FALSE_POSITIVE} classes, not {class_count}; leave out --report")
    pages = max(1, -(-images // page_size))
    orders = ("dice", "uncertainty") if uncertainty else ("dice",)
    return [*(folder / page_name(number, prefix, order) for order in orders for number in range(1, pages + 1)),
            folder / files_dir(prefix)]


def write_html_report(folder: str | Path, scores: dict[str, Any], samples: Sequence[Sample],
                      predictions: dict[str, Path], matrices: Sequence[np.ndarray],
                      groups: dict[str, str] | None, page_size: int = PAGE_SIZE, *, prefix: str = "",
                      extra_html: str = "", uncertainty: dict[str, float] | None = None) -> Path:
    """report.html (+ report_2.html, ...) and report_files/ thumbnails in `folder`; returns report.html's path.

    Every name starts with `prefix`. `extra_html` goes on page 1 right after the summary. With `uncertainty`
    (stem -> value) each case shows it, and a second set of pages (report_uncertain.html, ...) orders the
    gallery most uncertain first.
    """
    folder = Path(folder)
    files = folder / files_dir(prefix)
    names = scores["class_names"]
    check_report(folder, len(names), len(samples), page_size, prefix=prefix, uncertainty=uncertainty is not None)
    colours = palette(len(names)).copy()
    for code, colour in ERROR_COLOURS.items():
        colours[code] = colour
    items = [GalleryItem(s.stem, s.image_path, s.label_path, predictions[s.stem], m,
                         groups.get(s.stem) if groups else None, foreground_dice(m),
                         uncertainty.get(s.stem) if uncertainty else None)
             for s, m in zip(samples, matrices)]
    sizes, any_ignored = {}, False
    for item in tqdm(items, desc="thumbnails", leave=False, disable=None):
        sizes[item.stem], ignored = write_thumbnails(item, files, colours)
        any_ignored |= ignored
    pages = max(1, -(-len(items) // page_size))
    legend_html = legend(names, colours, any_ignored)
    orders = ("dice", "uncertainty") if uncertainty is not None else ("dice",)
    for order in orders:
        ordered = gallery_order(items, order)
        for number in range(1, pages + 1):
            chunk = ordered[(number - 1) * page_size:number * page_size]
            body = [_summary(scores, prefix), *([extra_html] if extra_html else []),
                    _plots_and_cases(scores, groups, prefix)] if (order, number) == ("dice", 1) else []
            page = GalleryPage(order, number, pages, (number - 1) * page_size, len(items), prefix, files_dir(prefix),
                               orders, uncertainty is not None)
            body.append(gallery(chunk, page, sizes, names, legend_html))
            write_text(folder / page_name(number, prefix, order), _document(scores, page, "\n".join(body)))
    _remove_stale_pages(folder, prefix, pages, orders)
    return folder / page_name(1, prefix)


def _remove_stale_pages(folder: Path, prefix: str, pages: int, orders: Sequence[str]) -> None:
    """Pages of an earlier, longer report (or of an order not written now) would be orphans: remove them."""
    for order, (base, _) in ORDERS.items():
        kept = pages if order in orders else 0
        pattern = re.compile(re.escape(prefix + base) + r"(?:_(\d+))?\.html")
        for stale in folder.glob("*.html"):
            match = pattern.fullmatch(stale.name)
            if match and int(match.group(1) or 1) > kept:
                stale.unlink()


def _document(scores: dict[str, Any], page: GalleryPage, body: str) -> str:
    where = f"page {page.number} of {page.pages}" if page.number > 1 else ""
    if page.order != "dice":
        where = f"{ORDERS[page.order][1]}" + (f", {where}" if where else "")
    title = f"Segmentation scores: {scores.get('pred', '')}" + (f" ({where})" if where else "")
    meta = (f"split <b>{_e(scores.get('split', '?'))}</b> of <code>{_e(scores.get('data', '?'))}</code>, "
            f"{scores['images']} images, {scores['pixels']} scored pixels; predictions "
            f"<code>{_e(scores.get('pred', '?'))}</code>")
    first = (page.order, page.number) == ("dice", 1)
    back = "" if first else f' &middot; <a href="{quote(page_name(1, page.prefix))}">summary and page 1</a>'
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>{_e(title)}</title>\n'
            f"<style>{STYLE}</style>\n</head>\n<body>\n<h1>Segmentation scores</h1>\n"
            f'<p class="meta">{meta}{back}</p>\n{body}\n</body>\n</html>\n')


def _percent(value: float | None) -> str:
    return "&ndash;" if value is None else f"{value * 100:.2f}%"


def _summary(scores: dict[str, Any], prefix: str) -> str:
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
    if scores.get("rand_voi"):
        parts.append(_rand_voi_table(scores["rand_voi"]))
    notes = ["IoU = TP/(TP+FP+FN), PA = TP/(TP+FN), Dice = 2TP/(2TP+FP+FN) over all pixels of the split; "
             "label 255 is not scored."]
    if scores.get("absent_classes"):
        notes.append("Left out of the means (in neither labels nor predictions): "
                     + ", ".join(_e(n) for n in scores["absent_classes"]) + ".")
    if "per_case" in scores:
        notes.append(f"Mean per-image Dice: an image where the class is in neither map is "
                     f"{_e(scores['per_case']['empty_case_rule'])}. Per-image values: "
                     f'<a href="{quote(prefix)}per_image.csv">{_e(prefix)}per_image.csv</a> ({_e(BLANK_RULE)}).')
    parts.extend(f'<p class="note">{note}</p>' for note in notes)
    return "\n".join(parts) + "\n</section>"


def _rand_voi_table(pooled: dict[str, Any]) -> str:
    head = "".join(f"<th>{title}</th>" for title in ("adapted Rand error", "VOI split", "VOI merge", "VOI (bits)"))
    cells = "".join(f"<td>{_fraction(pooled[key])}</td>" for key in ("adapted_rand_error", "voi_split", "voi_merge",
                                                                       "voi"))
    return (f"<table><thead><tr><th>segments of {_e(pooled['class'])}</th>{head}<th>images</th></tr></thead>"
            f"<tbody><tr><td>mean over images</td>{cells}<td>{pooled['images_scored']}</td></tr></tbody></table>"
            f'<p class="note">Segments: {_e(pooled["rules"]["segments"])}; scored: '
            f'{_e(pooled["rules"]["scored_pixels"])}.</p>')


def _plots_and_cases(scores: dict[str, Any], groups: dict[str, str] | None, prefix: str) -> str:
    names = scores["class_names"]
    parts = [f'<section id="plots">\n<h2>Plots</h2>\n<div class="plots">'
             f'<img src="{quote(prefix)}scores.png" alt="per-class IoU and Dice">'
             f'<img src="{quote(prefix)}confusion.png" alt="row-normalised confusion matrix"></div>\n</section>']
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
