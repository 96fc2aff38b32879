"""ISBI 2012 EM membranes: PNG slice folders (image/N.png + label/N.png) or the challenge's multi-page TIFF stacks."""
from __future__ import annotations

import os
from pathlib import Path

from PIL import Image

from utils.data.folders import index_by_stem
from utils.errors import UserError
from utils.importers.common import Frame, ImportSummary, Pair, Source, existing_dir, pair_by_stem
from utils.importers.masks import map_0_255
from utils.importers.staging import write_pairs
from utils.io.images import tiff_header

# Label 255 is cell interior and 0 membrane, as the challenge encodes them.
CLASS_NAMES = ["membrane", "cell"]
FORMS = ("auto", "png", "tiff")
# Where the two forms sit below SRC, so SRC may be the dataset root or the folder itself.
PNG_BASES = ("", "train", "membrane/train", "data/membrane/train")
IMAGE_FOLDERS = ("image", "images")
LABEL_FOLDERS = ("label", "labels")
STACK_BASES = ("", "stack")
VOLUME_FILE = "train-volume.tif"
LABELS_FILE = "train-labels.tif"


def _first_existing(paths: list[Path]) -> Path | None:
    """The first path that exists, or None."""
    return next((path for path in paths if path.exists()), None)


def _find_png(src: Path) -> tuple[Path, Path] | None:
    """The image and label folders of the PNG form under `src`, if any."""
    for base in PNG_BASES:
        image = _first_existing([src / base / name for name in IMAGE_FOLDERS])
        label = _first_existing([src / base / name for name in LABEL_FOLDERS])
        if image and label:
            return image, label
    return None


def _find_tiff(src: Path) -> tuple[Path, Path] | None:
    """The volume and labels stacks of the TIFF form under `src`, if any."""
    for base in STACK_BASES:
        if (src / base / VOLUME_FILE).is_file() and (src / base / LABELS_FILE).is_file():
            return src / base / VOLUME_FILE, src / base / LABELS_FILE
    return None


def _slices(path: Path) -> dict[str, Source]:
    """Slice number -> source: pages of a multi-page TIFF, or the N.png files of a folder."""
    if path.is_dir():
        files = index_by_stem(path)
        odd = [file.name for stem, file in files.items() if not stem.isdigit()]
        if odd:
            raise UserError(f"{path} should hold numbered slices (0.png, 1.png, ...); found {', '.join(odd[:5])}")
        return files
    # A TIFF stack's pages are counted here and decoded by tifffile, all at once (write_pairs' PairReader).
    header = tiff_header(path)
    if header is not None:
        return {str(page): Frame(path, page) for page in range(header.pages)}
    try:
        with Image.open(path) as stack:
            pages = getattr(stack, "n_frames", 1)
    except FileNotFoundError:
        raise UserError(f"not found: {path}") from None
    except OSError as err:
        raise UserError(f"cannot read {path} as an image stack: {err}") from None
    return {str(page): Frame(path, page) for page in range(pages)}


def _locate(src: Path, form: str) -> tuple[Path, Path]:
    """The volume and labels (folders or stacks) below SRC; PNG folders first when both forms are there."""
    found = {"png": _find_png(src), "tiff": _find_tiff(src)}
    for candidate in (("png", "tiff") if form == "auto" else (form,)):
        if found[candidate]:
            return found[candidate]
    raise UserError(f"no ISBI 2012 data in {src}: expected image/ + label/ folders of N.png "
                    f"(e.g. membrane/train/image) or {VOLUME_FILE} + {LABELS_FILE} (e.g. stack/)"
                    + ("" if form == "auto" else f" in {form} form"))


def import_isbi2012(src: str | os.PathLike | None, out: str | os.PathLike, *,
                    volume: str | os.PathLike | None = None, labels: str | os.PathLike | None = None,
                    form: str = "auto", overwrite: bool = False) -> ImportSummary:
    """Import slice i as slice_<i> (zero-padded), from SRC (auto-detected) or explicit volume + labels."""
    if form not in FORMS:
        raise UserError(f"form must be one of {', '.join(FORMS)}, not {form!r}")
    if volume is not None or labels is not None:
        if volume is None or labels is None or src is not None:
            raise UserError("give either SRC or both --volume and --labels")
        volume, labels = Path(volume), Path(labels)
    elif src is None:
        raise UserError("give SRC or both --volume and --labels")
    else:
        volume, labels = _locate(existing_dir(src), form)
    matched, left_out = pair_by_stem(_slices(volume), _slices(labels))
    matched.sort(key=lambda item: int(item[0]))
    # Rank, not the file's number, names the slice: folders numbered from 1 then match a stack's pages.
    width = max(2, len(str(len(matched) - 1)))
    pairs = [Pair(f"slice_{rank:0{width}d}", image, label) for rank, (_, image, label) in enumerate(matched)]
    return write_pairs(out, pairs, map_0_255, CLASS_NAMES, sources=[volume, labels], left_out=left_out,
                       overwrite=overwrite)
