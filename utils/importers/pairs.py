"""Any folder of images and folder of masks matched by stem, mapped by a threshold, a value map or a colour map.

16-bit and float images are scaled to 8 bits by --window or --percentile (utils/io/intensity.py); a multi-page
TIFF image with a multi-page TIFF mask of as many pages gives one pair per page.
"""
from __future__ import annotations

import csv
import json
import os
from functools import partial
from pathlib import Path
from typing import TypeVar

from utils.errors import UserError
from utils.importers.common import (
    Frame,
    ImportSummary,
    Labeler,
    LeftOut,
    Pair,
    PairReader,
    existing_dir,
    pairs_in_folders,
)
from utils.importers.masks import map_colours, map_values, threshold
from utils.importers.staging import write_pairs
from utils.io.images import tiff_header
from utils.io.intensity import intensity_from_options
from utils.io.labels import IGNORE_INDEX

BINARY_CLASSES = ["background", "foreground"]
IGNORE_NAME = "ignore"
# Stems of the pages of a stack, <stem>_<page:03d>; the stack's stem is the group.
STACK_GROUP_REGEX = r"^(.+)_\d{3,}$"

Key = TypeVar("Key")


def parse_class_names(text: str) -> list[str]:
    """'a,b,c' -> ['a', 'b', 'c']; empty names are an error."""
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise UserError(f"empty class name in {text!r}; write names like background,liver")
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise UserError(f"--classes {text!r} names {', '.join(map(repr, twice))} more than once; each class needs "
                        f"its own name (scores are reported by name)")
    return names


def parse_value_map(text: str) -> dict[int, str]:
    """'0:0,255:1,128:ignore' -> {0: '0', 255: '1', 128: 'ignore'}: mask value -> class id or name."""
    table: dict[int, str] = {}
    for entry in text.split(","):
        value, sep, target = entry.partition(":")
        if not sep or not value.strip().isdigit() or not target.strip():
            raise UserError(f"bad value map entry {entry!r}: write VALUE:CLASS pairs like 0:0,255:1,128:255")
        table[int(value)] = target.strip()
    return table


def _colour(text: str, origin: str) -> tuple[int, int, int]:
    """'R,G,B' -> (R, G, B), each 0..255."""
    parts = [part.strip() for part in text.strip().strip("()[]").split(",")]
    if len(parts) != 3 or not all(part.isdigit() and int(part) < 256 for part in parts):
        raise UserError(f"{origin}: bad colour {text!r}; write R,G,B with each 0..255")
    return int(parts[0]), int(parts[1]), int(parts[2])


def read_colour_map(path: str | os.PathLike) -> dict[tuple[int, int, int], str]:
    """Colour -> class id or name, from JSON {"R,G,B": class} or CSV rows R,G,B,class (header optional)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise UserError(f"cannot read colour map {path}: {err}") from None
    if path.suffix.lower() == ".json":
        try:
            entries = json.loads(text)
        except json.JSONDecodeError as err:
            raise UserError(f"{path} is not valid JSON: {err}") from None
        if not isinstance(entries, dict):
            raise UserError(f"{path} must hold one object like {{\"128,0,0\": \"building\"}}")
        return {_colour(key, str(path)): str(target) for key, target in entries.items()}
    rows = [row for row in csv.reader(text.splitlines()) if row and any(cell.strip() for cell in row)]
    if rows and not rows[0][0].strip().isdigit():
        rows = rows[1:]
    for row in rows:
        if len(row) != 4:
            raise UserError(f"{path}: each row must read R,G,B,class, got {','.join(row)!r}")
    return {_colour(",".join(row[:3]), str(path)): row[3].strip() for row in rows}


def resolve_classes(targets: dict[Key, str], classes: list[str] | None) -> tuple[dict[Key, int], list[str]]:
    """Turn targets (class id, class name or 'ignore') into ids; without `classes`, names define the classes."""
    names = list(classes or [])
    table: dict[Key, int] = {}
    for key, target in targets.items():
        if target.isdigit():
            table[key] = int(target)
        elif target == IGNORE_NAME:
            table[key] = IGNORE_INDEX
        elif target in names:
            table[key] = names.index(target)
        elif classes is None:
            names.append(target)
            table[key] = len(names) - 1
        else:
            raise UserError(f"class {target!r} is not one of --classes {','.join(names)}")
    if not names:
        raise UserError("name the classes with --classes (e.g. --classes background,liver)")
    beyond = sorted({class_id for class_id in table.values() if len(names) <= class_id != IGNORE_INDEX})
    if beyond:
        raise UserError(f"class id(s) {beyond} beyond the {len(names)} classes {','.join(names)} "
                        f"(ids count from 0; {IGNORE_INDEX} = ignore)")
    return table, names


def _labeler(level: int | None, value_map: str | None, colour_map: str | os.PathLike | None,
             classes: list[str] | None) -> tuple[Labeler, list[str]]:
    """The mask -> class ids function and the class names for exactly one of the three mappings."""
    if sum(option is not None for option in (level, value_map, colour_map)) != 1:
        raise UserError("choose exactly one of --threshold, --value-map, --colour-map")
    if level is not None:
        names = classes or BINARY_CLASSES
        if level < 0:
            raise UserError(f"--threshold must be 0 or more, not {level}")
        if len(names) != 2:
            raise UserError(f"--threshold makes two classes, but --classes names {len(names)}")
        return partial(threshold, level=level), names
    if value_map is not None:
        table, names = resolve_classes(parse_value_map(value_map), classes)
        return partial(map_values, table=table), names
    table, names = resolve_classes(read_colour_map(colour_map), classes)
    return partial(map_colours, table=table), names


def _page_count(path: Path) -> int:
    """Pages of a TIFF stack; 1 for other files (and for TIFFs whose header cannot be read: reading reports it)."""
    try:
        header = tiff_header(path)
    except UserError:
        return 1
    return 1 if header is None else header.pages


def split_stacks(pairs: list[Pair]) -> tuple[list[Pair], list[LeftOut]]:
    """A multi-page image with a multi-page mask -> one pair per page, <stem>_<page:03d> in group <stem>."""
    split: list[Pair] = []
    left_out: list[LeftOut] = []
    for pair in pairs:
        image_pages, mask_pages = _page_count(pair.image), _page_count(pair.mask)
        if image_pages == 1 or mask_pages == 1:
            split.append(pair)  # as before: a single file, or the first page of a stack
        elif image_pages != mask_pages:
            left_out.append(LeftOut(pair.stem, f"the image stack has {image_pages} pages but the mask stack "
                                               f"{mask_pages}", str(pair.image), str(pair.mask)))
        else:
            split += [Pair(f"{pair.stem}_{page:03d}", Frame(pair.image, page), Frame(pair.mask, page), pair.stem)
                      for page in range(image_pages)]
    return split, left_out


def import_pairs(images: str | os.PathLike, masks: str | os.PathLike, out: str | os.PathLike, *,
                 mask_suffix: str = "", level: int | None = None, value_map: str | None = None,
                 colour_map: str | os.PathLike | None = None, classes: list[str] | None = None,
                 window: str | None = None, percentile: str | None = None,
                 overwrite: bool = False) -> ImportSummary:
    """Import images/<stem>.* with masks/<stem><mask_suffix>.* (the two folders may be one).

    Images of more than 8 bits are scaled by `window` (a preset or WIDTH,LEVEL) or `percentile` (LOW,HIGH, per
    image file: over all pages of a stack); without either they are left out. 8-bit images are kept as they are.
    """
    intensity = intensity_from_options(window, percentile)
    to_label, names = _labeler(level, value_map, colour_map, classes)
    image_folder = existing_dir(images, "image folder")
    mask_folder = existing_dir(masks, "mask folder")
    pairs, left_out = pairs_in_folders(image_folder, mask_folder, mask_suffix)
    pairs, unequal = split_stacks(pairs)
    stacks_only = bool(pairs) and all(isinstance(pair.image, Frame) for pair in pairs)
    return write_pairs(out, pairs, to_label, names, sources=[image_folder, mask_folder],
                       left_out=[*left_out, *unequal], group_regex=STACK_GROUP_REGEX if stacks_only else None,
                       overwrite=overwrite, report_extra={"intensity": intensity.to_json() if intensity else None},
                       reader=PairReader(intensity, scale_wide=True))
