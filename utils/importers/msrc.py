"""MSRC-v2 (21-class convention): images/<row>_<k>_s.(bmp|png) + targets/<row>_<k>_s_GT.bmp, colour-coded."""
from __future__ import annotations

import os
from functools import partial
from pathlib import Path

from utils.importers.common import ImportSummary, existing_dir, locate, pairs_in_folders
from utils.importers.masks import map_colours
from utils.importers.staging import write_pairs
from utils.io.files import read_lines
from utils.io.labels import IGNORE_INDEX

CLASS_NAMES = ["building", "grass", "tree", "cow", "sheep", "sky", "aeroplane", "water", "face", "car",
               "bicycle", "flower", "sign", "bird", "book", "chair", "road", "cat", "dog", "body", "boat"]
CLASS_COLOURS = [(128, 0, 0), (0, 128, 0), (128, 128, 0), (0, 0, 128), (0, 128, 128), (128, 128, 128),
                 (192, 0, 0), (64, 128, 0), (192, 128, 0), (64, 0, 128), (192, 0, 128), (64, 128, 128),
                 (192, 128, 128), (0, 64, 0), (128, 64, 0), (0, 192, 0), (128, 64, 128), (0, 192, 128),
                 (128, 192, 128), (64, 64, 0), (192, 64, 0)]
# void, plus horse and mountain: too rare in MSRC-v2 to learn, so the 21-class convention ignores them.
IGNORED_COLOURS = [(0, 0, 0), (128, 0, 128), (64, 0, 0)]
COLOUR_TABLE = {**{colour: i for i, colour in enumerate(CLASS_COLOURS)},
                **{colour: IGNORE_INDEX for colour in IGNORED_COLOURS}}
MASK_SUFFIX = "_GT"
# Stems are <row>_<k>_s; the row (the MSRC theme, 1-20) is the group.
GROUP_REGEX = r"^(\d+)_"
SPLIT_LISTS = ("train", "val", "test")


def _source_splits(data: Path, imported: set[str]) -> dict[str, dict[str, list[str]]]:
    """The source's own split lists, matched on stem (their entries say .bmp even where the photo is .png)."""
    splits = {}
    for name in SPLIT_LISTS:
        if (data / f"{name}.txt").is_file():
            stems = [Path(entry).stem for entry in read_lines(data / f"{name}.txt")]
            splits[name] = {"imported": [stem for stem in stems if stem in imported],
                            "not_imported": [stem for stem in stems if stem not in imported]}
    return splits


def import_msrc(src: str | os.PathLike, out: str | os.PathLike, *, overwrite: bool = False) -> ImportSummary:
    """Import MSRC-v2 photos and colour GTs (SRC: the data folder or its parent); group = image row."""
    src = existing_dir(src)
    images = locate(src, ["images", "Images", "segmentation_data/images"], "photo folder")
    targets = locate(src, ["targets", "GroundTruth", "segmentation_data/targets"], "ground-truth folder")
    pairs, left_out = pairs_in_folders(images, targets, MASK_SUFFIX)
    splits = _source_splits(images.parent, {pair.stem for pair in pairs})
    return write_pairs(out, pairs, partial(map_colours, table=COLOUR_TABLE), CLASS_NAMES,
                       sources=[images, targets], left_out=left_out, group_regex=GROUP_REGEX,
                       overwrite=overwrite, report_extra={"source_splits": splits} if splits else None)
