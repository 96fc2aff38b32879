"""The HTML report's image gallery: thumbnails with the errors coloured, the orders of the cases, pages and links."""
from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import quote

import numpy as np
from PIL import Image

from utils.io.files import atomic_open
from utils.io.images import open_image
from utils.io.labels import IGNORE_INDEX, label_to_array
from utils.metrics import class_scores

THUMBNAIL_SIDE = 256
DISPLAY_SIDE = 128  # CSS pixels: 256-px thumbnails stay sharp on high-density screens
FALSE_POSITIVE, FALSE_NEGATIVE, WRONG_CLASS = 252, 253, 254  # palette slots above the class ids (255: ignore)
ERROR_COLOURS = {FALSE_POSITIVE: (255, 214, 0), FALSE_NEGATIVE: (0, 190, 255), WRONG_CLASS: (255, 0, 255)}
# Gallery orders: the base name of their pages and how their heading names them.
ORDERS = {"dice": ("report", "worst foreground Dice first"),
          "uncertainty": ("report_uncertain", "most uncertain first")}


@dataclass
class GalleryItem:
    """One scored image: its files, its confusion matrix, its case group, its foreground Dice and uncertainty."""

    stem: str
    image_path: Path
    label_path: Path
    pred_path: Path
    matrix: np.ndarray
    group: str | None
    dice: float | None
    uncertainty: float | None = None


def escape(text: Any) -> str:
    """`text` as HTML text."""
    return html.escape(str(text))


def fraction(value: float | None) -> str:
    """A score with four decimals, a dash where it is undefined."""
    return "&ndash;" if value is None else f"{value:.4f}"


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


def gallery_order(items: Sequence[GalleryItem], order: str = "dice") -> list[GalleryItem]:
    """Worst foreground Dice first ('dice'), or most uncertain first ('uncertainty'); cases without the value last.

    Images without foreground in label and prediction have no Dice; ties go by stem.
    """
    if order == "uncertainty":
        return sorted(items, key=lambda item: (item.uncertainty is None, -(item.uncertainty or 0.0), item.stem))
    return sorted(items, key=lambda item: (item.dice is None, item.dice if item.dice is not None else 0.0, item.stem))


def page_name(number: int, prefix: str = "", order: str = "dice") -> str:
    """File name of page `number` (1-based) of a gallery order; the first 'dice' page also holds the summary."""
    base = f"{prefix}{ORDERS[order][0]}"
    return f"{base}.html" if number == 1 else f"{base}_{number}.html"


def legend(names: Sequence[str], colours: np.ndarray, any_ignored: bool) -> str:
    """What the panels and colours of a case mean."""
    def swatch(colour: Sequence[int], text: str) -> str:
        return (f'<span><i class="swatch" style="background:rgb({colour[0]},{colour[1]},{colour[2]})"></i>'
                f"{text}</span>")

    entries = [swatch(colours[c], escape(name)) for c, name in enumerate(names)]
    entries.append(swatch(ERROR_COLOURS[FALSE_POSITIVE], "false positive (predicted, not in label)"))
    entries.append(swatch(ERROR_COLOURS[FALSE_NEGATIVE], "false negative (in label, missed)"))
    if len(names) > 2:
        entries.append(swatch(ERROR_COLOURS[WRONG_CLASS], "wrong foreground class"))
    if any_ignored:
        entries.append(swatch(colours[IGNORE_INDEX], "ignored (label 255, not scored)"))
    return ('<div class="legend"><b>Each case: image | label | prediction.</b> Colours: ' + " ".join(entries)
            + "</div>")


def _navigation(number: int, pages: int, prefix: str, order: str) -> str:
    if pages == 1:
        return ""
    links = [f"<strong>{n}</strong>" if n == number else f'<a href="{quote(page_name(n, prefix, order))}">{n}</a>'
             for n in range(1, pages + 1)]
    if number > 1:
        links.insert(0, f'<a href="{quote(page_name(number - 1, prefix, order))}">&larr; previous</a>')
    if number < pages:
        links.append(f'<a href="{quote(page_name(number + 1, prefix, order))}">next &rarr;</a>')
    return '<nav class="pages">pages: ' + " ".join(links) + "</nav>"


def _order_switch(prefix: str, order: str, orders: Sequence[str]) -> str:
    """Links to the first page of every other order (none when there is one order)."""
    if len(orders) < 2:
        return ""
    links = [f"<strong>{ORDERS[o][1]}</strong>" if o == order
             else f'<a href="{quote(page_name(1, prefix, o))}">{ORDERS[o][1]}</a>' for o in orders]
    return '<nav class="orders">order: ' + " &middot; ".join(links) + "</nav>"


def _badge(dice: float | None) -> str:
    if dice is None:
        return '<span class="dice none" title="no foreground in label or prediction">n/a</span>'
    grade = "bad" if dice < 0.5 else "mid" if dice < 0.8 else "good"
    return f'<span class="dice {grade}" title="foreground Dice">{dice:.3f}</span>'


@dataclass
class GalleryPage:
    """Where one gallery page sits: its order, number, the page count and the report's file prefix."""

    order: str
    number: int
    pages: int
    offset: int
    total: int
    prefix: str
    files_dir: str
    orders: Sequence[str]
    with_uncertainty: bool


def gallery(chunk: Sequence[GalleryItem], page: GalleryPage, sizes: dict[str, tuple[int, int]],
            names: Sequence[str], legend_html: str) -> str:
    """The gallery section of one page: heading, order and page links, and a figure per case."""
    navigation = _navigation(page.number, page.pages, page.prefix, page.order)
    parts = ['<section id="gallery">',
             f"<h2>Images, {ORDERS[page.order][1]}: {page.offset + 1}&ndash;{page.offset + len(chunk)} of "
             f"{page.total}</h2>",
             '<p class="note">Foreground Dice = mean Dice over the non-background classes in the label or the '
             "prediction; images with no foreground in either come last (n/a)."
             + (" Uncertainty: from the prediction folder's uncertainty.csv; images it does not list come last "
                "in that order (n/a)." if page.with_uncertainty else "") + "</p>",
             legend_html]
    switch = _order_switch(page.prefix, page.order, page.orders)
    parts += [switch] if switch else []
    parts += [navigation, '<div class="gallery">']
    for rank, item in enumerate(chunk, start=page.offset + 1):
        width, height = sizes[item.stem]
        scale = DISPLAY_SIDE / max(width, height)
        shown = f'width="{round(width * scale)}" height="{round(height * scale)}"'
        upscaled = ' class="up"' if scale > 1 else ""
        panels = "".join(
            f'<img src="{quote(page.files_dir)}/{quote(item.stem + suffix)}" alt="{what}" title="{what}" {shown} '
            f'loading="lazy"{upscaled}>'
            for suffix, what in (("_image.jpg", "image"), ("_label.png", "label"), ("_pred.png", "prediction")))
        details = ""
        if len(names) > 2:
            dice = class_scores(item.matrix)[0]
            details = "<br>" + ", ".join(f"{escape(names[c])} {fraction(dice[c])}" for c in range(1, len(names))
                                         if dice[c] is not None)
        group = f" &middot; {escape(item.group)}" if item.group else ""
        uncertainty = ""
        if page.with_uncertainty:
            value = "n/a" if item.uncertainty is None else f"{item.uncertainty:.4g}"
            uncertainty = f' &middot; <span class="uncertainty" title="uncertainty">uncertainty {value}</span>'
        parts.append(f'<figure class="case"><div class="panels">{panels}</div><figcaption><span class="rank">'
                     f"#{rank}</span> {_badge(item.dice)} <code>{escape(item.stem)}</code>{group}{uncertainty}"
                     f"{details}</figcaption></figure>")
    parts.extend(["</div>", navigation, "</section>"])
    return "\n".join(parts)
