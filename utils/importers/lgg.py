"""Kaggle LGG brain MRI (kaggle_3m): <CASE>/<CASE>_<n>.tif + <CASE>_<n>_mask.tif, masks 0/255, grouped by patient."""
from __future__ import annotations

import os

from utils.errors import UserError
from utils.importers.common import ImportSummary, LeftOut, Pair, existing_dir, pairs_in_folders
from utils.importers.masks import map_0_255
from utils.importers.staging import write_pairs

CLASS_NAMES = ["background", "abnormality"]
MASK_SUFFIX = "_mask"
# Stems are <CASE>_<n>: everything before the last "_<number>" is the patient folder.
GROUP_REGEX = r"^(.+)_\d+$"


def import_lgg(src: str | os.PathLike, out: str | os.PathLike, *, overwrite: bool = False) -> ImportSummary:
    """Import every patient folder under SRC (the dataset root or its kaggle_3m folder); group = patient."""
    src = existing_dir(src)
    root = src / "kaggle_3m" if (src / "kaggle_3m").is_dir() else src
    patients = sorted(folder for folder in root.iterdir() if folder.is_dir() and not folder.name.startswith("."))
    if not patients:
        raise UserError(f"no patient folders in {root} (expected <CASE>/<CASE>_<n>.tif)")
    pairs: list[Pair] = []
    left_out: list[LeftOut] = []
    for folder in patients:
        found, missing = pairs_in_folders(folder, folder, MASK_SUFFIX, group=folder.name)
        pairs += found
        left_out += missing
    return write_pairs(out, pairs, map_0_255, CLASS_NAMES, sources=[root],
                       left_out=left_out, group_regex=GROUP_REGEX, overwrite=overwrite)
