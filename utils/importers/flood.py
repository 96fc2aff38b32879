"""Kaggle Flood Area Segmentation: Image/<id>.jpg + Mask/<id>.png (+ metadata.csv), anti-aliased grey masks."""
from __future__ import annotations

import csv
import os
from functools import partial
from pathlib import Path

from utils.data.folders import index_by_stem
from utils.errors import UserError
from utils.importers.common import ImportSummary, LeftOut, Pair, existing_dir, locate, pairs_in_folders
from utils.importers.masks import threshold
from utils.importers.staging import write_pairs

CLASS_NAMES = ["background", "water"]
METADATA_FILE = "metadata.csv"
# Masks are 0 / 255 with anti-aliased edges in between; split them half way.
DEFAULT_THRESHOLD = 127


def _listed_pairs(metadata: Path, image_folder: Path, mask_folder: Path) -> tuple[list[Pair], list[LeftOut]]:
    """The pairs metadata.csv lists; listed files that are missing, and files it does not list, are left out."""
    with open(metadata, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        if not {"Image", "Mask"} <= set(reader.fieldnames or ()):
            raise UserError(f"{metadata} needs an 'Image,Mask' header, found {reader.fieldnames}")
        rows = [(row["Image"].strip(), row["Mask"].strip()) for row in reader]
    pairs: list[Pair] = []
    left_out: list[LeftOut] = []
    for image_name, mask_name in rows:
        image, mask = image_folder / image_name, mask_folder / mask_name
        missing = [str(path) for path in (image, mask) if not path.is_file()]
        if missing:
            left_out.append(LeftOut(image.stem, f"listed in {METADATA_FILE} but missing: {', '.join(missing)}",
                                    str(image), str(mask)))
        else:
            pairs.append(Pair(image.stem, image, mask))
    listed = {name for row in rows for name in row}
    for folder, side in ((image_folder, "image"), (mask_folder, "mask")):
        left_out += [LeftOut(stem, f"not listed in {METADATA_FILE}", **{side: str(path)})
                     for stem, path in index_by_stem(folder).items() if path.name not in listed]
    return pairs, left_out


def import_flood(src: str | os.PathLike, out: str | os.PathLike, *, level: int = DEFAULT_THRESHOLD,
                 overwrite: bool = False) -> ImportSummary:
    """Import the pairs metadata.csv lists (or all Image/Mask pairs matched by id); mask > level -> water."""
    src = existing_dir(src)
    image_folder, mask_folder = locate(src, ["Image"], "Image/ folder"), locate(src, ["Mask"], "Mask/ folder")
    if (src / METADATA_FILE).is_file():
        pairs, left_out = _listed_pairs(src / METADATA_FILE, image_folder, mask_folder)
    else:
        pairs, left_out = pairs_in_folders(image_folder, mask_folder)
    return write_pairs(out, pairs, partial(threshold, level=level), CLASS_NAMES,
                       sources=[image_folder, mask_folder], left_out=left_out, overwrite=overwrite)
