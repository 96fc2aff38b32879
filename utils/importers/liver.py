"""Liver CT slices: one folder of NNN.png + NNN_mask.png, masks 0/255 (255 = liver)."""
from __future__ import annotations

import os

from utils.importers.common import ImportSummary, existing_dir, pairs_in_folders
from utils.importers.masks import map_0_255
from utils.importers.staging import write_pairs

CLASS_NAMES = ["background", "liver"]
MASK_SUFFIX = "_mask"


def import_liver(src: str | os.PathLike, out: str | os.PathLike, *, overwrite: bool = False) -> ImportSummary:
    """Import a folder of NNN.png + NNN_mask.png; CT stored as RGB with R=G=B is written grey."""
    src = existing_dir(src)
    pairs, left_out = pairs_in_folders(src, src, MASK_SUFFIX)
    return write_pairs(out, pairs, map_0_255, CLASS_NAMES, sources=[src],
                       left_out=left_out, grey_rgb=True, overwrite=overwrite)
