"""What every importer shares: pair records, reading images and masks, mask-to-label maps, writing a dataset."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from utils.data.folders import index_by_stem
from utils.errors import UserError
from utils.importers.masks import TO_GREY_MODES
from utils.io.images import (
    SCALING_OPTIONS,
    array_to_image,
    file_is_wide,
    grey_channel,
    open_image,
    read_pages,
    tiff_header,
    to_uint8,
)
from utils.io.intensity import Intensity

REPORT_FILE = "import_report.json"

# Modes with no sensible 8-bit picture without a windowing choice the importer cannot make for the user.
_UNSUPPORTED_IMAGE_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N", "F")


@dataclass(frozen=True)
class Frame:
    """One page of a multi-page file (a TIFF stack)."""

    path: Path
    index: int

    def __str__(self) -> str:
        return f"{self.path} (page {self.index})"


Source = Path | Frame


@dataclass(frozen=True)
class Pair:
    """An input image and its mask, found but not yet read."""

    stem: str
    image: Source
    mask: Source
    group: str | None = None


@dataclass(frozen=True)
class LeftOut:
    """Something found in the source that was not imported, and why."""

    stem: str
    reason: str
    image: str | None = None
    mask: str | None = None

    def files(self) -> str:
        """The files concerned, for messages."""
        return " + ".join(name for name in (self.image, self.mask) if name) or self.stem


@dataclass
class ImportSummary:
    """What an import wrote."""

    out: Path
    imported: list[str]
    left_out: list[LeftOut]
    class_names: list[str]
    groups: int = 0
    group_regex: str | None = None
    notes: list[str] = field(default_factory=list)


Labeler = Callable[[Image.Image], np.ndarray]


def existing_dir(path: str | os.PathLike, what: str = "source folder") -> Path:
    """`path` as a Path, or a UserError when it is not a folder."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{what} not found: {path}")
    return path


def locate(src: Path, candidates: Sequence[str], what: str) -> Path:
    """The first of src/<candidate> that exists, so SRC may be a dataset root or the folder itself."""
    for candidate in candidates:
        if (src / candidate).exists():
            return src / candidate
    raise UserError(f"no {what} in {src} (looked for {', '.join(candidates)})")


def pair_by_stem(image_files: dict[str, Source], mask_files: dict[str, Source],
                 mask_suffix: str = "") -> tuple[list[tuple[str, Source, Source]], list[LeftOut]]:
    """Match image <stem> to mask <stem><mask_suffix>; the unmatched on either side are left out."""
    image_paths = set(image_files.values())
    if not mask_suffix and image_paths & set(mask_files.values()):
        raise UserError("images and masks share one folder: give the masks' name suffix (e.g. _mask)")
    mask_paths = {path for stem, path in mask_files.items() if stem.endswith(mask_suffix)}
    masks = {stem[:len(stem) - len(mask_suffix)]: path for stem, path in mask_files.items()
             if path in mask_paths}
    images = {stem: path for stem, path in image_files.items() if path not in mask_paths}
    matched = [(stem, images[stem], masks[stem]) for stem in sorted(images) if stem in masks]
    left_out = [LeftOut(stem, "image without a mask", image=str(path))
                for stem, path in sorted(images.items()) if stem not in masks]
    left_out += [LeftOut(stem, "mask without an image", mask=str(path))
                 for stem, path in sorted(masks.items()) if stem not in images]
    # In a separate mask folder a file without the suffix is neither an image nor a recognisable mask.
    left_out += [LeftOut(stem, f"in the mask folder but not named *{mask_suffix}", mask=str(path))
                 for stem, path in sorted(mask_files.items())
                 if path not in mask_paths and path not in image_paths]
    return matched, left_out


def pairs_in_folders(image_folder: Path, mask_folder: Path, mask_suffix: str = "",
                     group: str | None = None) -> tuple[list[Pair], list[LeftOut]]:
    """Pairs matched by stem between two folders (or one folder, told apart by the mask suffix)."""
    matched, left_out = pair_by_stem(index_by_stem(image_folder), index_by_stem(mask_folder), mask_suffix)
    return [Pair(stem, image, mask, group) for stem, image, mask in matched], left_out


def read_image(source: Source) -> Image.Image:
    """Read a file by its content, not its extension (a .jpg may be WebP or PNG), or one page of a stack."""
    if isinstance(source, Frame):
        return open_image(source.path, source.index)
    return open_image(source)


class PairReader:
    """Reads pairs' images and masks; the pages of a plain TIFF stack come from one tifffile read of the stack.

    With `scale_wide`, 16-bit and float images are scaled to 8 bits by `intensity` (a percentile range is taken
    over the whole file, all pages of a stack); without an intensity they are refused, naming both options.
    Without `scale_wide` (the importers that offer no scaling) they are refused as before.
    """

    def __init__(self, intensity: Intensity | None = None, scale_wide: bool = False) -> None:
        self.intensity, self.scale_wide = intensity, scale_wide
        self._stacks: dict[tuple[Path, bool], np.ndarray] = {}
        self._wide: dict[Path, bool] = {}
        self._plain: dict[Path, bool] = {}

    def image(self, source: Source, grey_rgb: bool = False) -> Image.Image:
        """The pair's input image as L or RGB (see to_image)."""
        path = source.path if isinstance(source, Frame) else source
        if self.scale_wide and self._is_wide(path):
            if self.intensity is None:
                raise UserError(f"{path} holds more than 8 bits per pixel; choose how it becomes 8-bit with "
                                f"{SCALING_OPTIONS}")
            return to_image(self._page(source, scale=True), grey_rgb)
        if isinstance(source, Frame) and self._plain_stack(path):
            return to_image(self._page(source, scale=False), grey_rgb)
        return to_image(read_image(source), grey_rgb)

    def mask(self, source: Source) -> Image.Image:
        """The pair's mask as it is stored (16-bit label ids stay 16-bit)."""
        if isinstance(source, Frame) and self._plain_stack(source.path):
            return self._page(source, scale=False)
        return read_image(source)

    def _is_wide(self, path: Path) -> bool:
        """Whether the file stores more than 8 bits per sample, from its header (remembered per file)."""
        if path not in self._wide:
            self._wide[path] = file_is_wide(path)
        return self._wide[path]

    def _plain_stack(self, path: Path) -> bool:
        """True when tifffile gives the stack's pixels as they are (grey or RGB, not palette or min-is-white)."""
        if path not in self._plain:
            header = tiff_header(path)
            self._plain[path] = header is not None and header.plain
        return self._plain[path]

    def _page(self, source: Source, scale: bool) -> Image.Image:
        """One page of a file decoded whole (kept for the next pages; the last two files are kept)."""
        path, index = (source.path, source.index) if isinstance(source, Frame) else (source, 0)
        key = (path, scale)
        if key not in self._stacks:
            pages = read_pages(path)
            if scale:
                pages = to_uint8(pages, self.intensity, str(path))
            while len(self._stacks) >= 2:
                del self._stacks[next(iter(self._stacks))]
            self._stacks[key] = pages
        pages = self._stacks[key]
        if not 0 <= index < len(pages):
            raise UserError(f"cannot read {source}: {path} has {len(pages)} page(s)")
        return array_to_image(pages[index], str(source))


def to_image(image: Image.Image, grey_rgb: bool = False) -> Image.Image:
    """Turn any readable image into L or RGB; RGB with R=G=B becomes L when `grey_rgb` (and for palettes)."""
    if image.mode in _UNSUPPORTED_IMAGE_MODES:
        raise UserError(f"{image.mode} (16-bit or float) images are not supported: convert them to 8-bit first")
    if image.mode == "L":
        return image
    if image.mode in TO_GREY_MODES:
        return image.convert("L")
    was_palette = image.mode in ("P", "PA")
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    grey = grey_channel(np.asarray(rgb)) if grey_rgb or was_palette else None
    return rgb if grey is None else Image.fromarray(grey)


