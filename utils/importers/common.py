"""What every importer shares: pair records, reading images and masks, mask-to-label maps, writing a dataset."""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
from PIL import Image

from utils.data.folders import images_dir, index_by_stem, labels_dir, write_class_names
from utils.errors import UserError
from utils.io.files import save_image, write_json
from utils.io.images import (
    SCALING_OPTIONS,
    array_to_image,
    file_is_wide,
    grey_channel,
    open_image,
    read_pages,
    tiff_layout,
    to_uint8,
)
from utils.io.intensity import Intensity
from utils.io.labels import IGNORE_INDEX

GROUPS_FILE = "groups.json"
REPORT_FILE = "import_report.json"

# Modes whose pixels are plain numbers (a value map uses them as they are).
_VALUE_MODES = ("L", "I", "I;16", "I;16L", "I;16B", "I;16N")
# Black/white and grey-with-alpha modes: their grey level (1-bit as 0/255) is the value.
_TO_GREY_MODES = ("1", "LA", "La")
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
            layout = tiff_layout(path)
            self._plain[path] = layout is not None and layout.plain
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
    if image.mode in _TO_GREY_MODES:
        return image.convert("L")
    was_palette = image.mode in ("P", "PA")
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    grey = grey_channel(np.asarray(rgb)) if grey_rgb or was_palette else None
    return rgb if grey is None else Image.fromarray(grey)


def mask_values(mask: Image.Image) -> np.ndarray:
    """A mask's pixel values: palette indices for P, 0/255 for 1-bit, the grey level for grey-looking RGB."""
    if mask.mode in _TO_GREY_MODES:
        mask = mask.convert("L")
    if mask.mode in _VALUE_MODES or mask.mode == "P":
        return np.asarray(mask)
    grey = grey_channel(np.asarray(mask.convert("RGB")))
    if grey is None:
        raise UserError(f"mask is in colour (mode {mask.mode}): map it by colour, not by value")
    return grey


def _lookup(keys: np.ndarray, table: dict[int, int], describe: Callable[[int], str], what: str) -> np.ndarray:
    """Map every key through `table`; an unmapped key is an error that names it."""
    uniques, inverse = np.unique(keys, return_inverse=True)
    missing = [describe(key) for key in uniques.tolist() if key not in table]
    if missing:
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise UserError(f"unmapped {what} {', '.join(missing[:10])}{more}")
    lut = np.array([table[key] for key in uniques.tolist()], dtype=np.uint8)
    return lut[inverse].reshape(keys.shape)


def map_values(mask: Image.Image, table: dict[int, int]) -> np.ndarray:
    """Class ids from a value -> class table (palette masks: the index is the value)."""
    what = "palette index(es)" if mask.mode == "P" else "mask value(s)"
    return _lookup(mask_values(mask), table, str, what)


def map_0_255(mask: Image.Image) -> np.ndarray:
    """Class ids from a strictly black/white mask: 0 -> 0, 255 -> 1; any other value is an error."""
    return map_values(mask, {0: 0, 255: 1})


def _colour_key(rgb: tuple[int, int, int] | np.ndarray) -> int | np.ndarray:
    """Pack R, G, B into one integer so colours can be looked up like values."""
    return (rgb[0] << 16) | (rgb[1] << 8) | rgb[2]


def map_colours(mask: Image.Image, table: dict[tuple[int, int, int], int]) -> np.ndarray:
    """Class ids from an (R, G, B) -> class table (palette masks: by the palette colour)."""
    rgb = np.asarray(mask.convert("RGB")).astype(np.uint32)
    keys = _colour_key((rgb[..., 0], rgb[..., 1], rgb[..., 2]))
    packed = {_colour_key(colour): class_id for colour, class_id in table.items()}
    return _lookup(keys, packed, lambda key: f"({key >> 16},{(key >> 8) & 255},{key & 255})", "colour(s)")


def threshold(mask: Image.Image, level: int) -> np.ndarray:
    """Binary classes: value > level -> 1, else 0 (colour and palette masks by their grey level)."""
    if mask.mode not in _VALUE_MODES + _TO_GREY_MODES:
        mask = mask.convert("L")
    return (mask_values(mask) > level).astype(np.uint8)


def _check_out(out: Path, overwrite: bool, sources: Sequence[Path]) -> None:
    """Refuse an out folder that already holds a dataset (unless overwriting) or that holds the source."""
    if out.exists() and not out.is_dir():
        raise UserError(f"output path is a file, not a folder: {out}")
    targets = [images_dir(out).resolve(), labels_dir(out).resolve()]
    for source in sources:
        if any(source.resolve().is_relative_to(target) for target in targets):
            raise UserError(f"the source {source} lies inside the output folder's Images/ or Labels/; "
                            f"choose another --out")
    if overwrite:
        return
    for folder in (images_dir(out), labels_dir(out)):
        if folder.is_dir() and any(folder.iterdir()):
            raise UserError(f"{folder} already holds files; pass --overwrite to replace them")


def _swap_hint(stem: str, mask_size: tuple[int, int], by_image_size: dict[tuple[int, int], list[str]]) -> str:
    """Point at another mismatched pair whose image has this mask's size: the masks were likely swapped."""
    others = [other for other in by_image_size.get(mask_size, []) if other != stem]
    return f"; the mask has the size of {', '.join(others)}'s image (swapped?)" if others else ""


def check_class_count(class_names: Sequence[str]) -> None:
    """Refuse an empty class list or one that would reach the ignore value."""
    if not 0 < len(class_names) <= IGNORE_INDEX:
        raise UserError(f"need 1 to {IGNORE_INDEX} class names, got {len(class_names)}")


@contextlib.contextmanager
def staged_dataset(out: Path, overwrite: bool, sources: Sequence[Path]) -> Iterator[Path]:
    """A hidden staging folder inside `out` whose Images/ and Labels/ replace out's only when the block succeeds.

    An error half way (an unmapped colour, say) leaves any earlier dataset untouched, and a new `out`
    that received nothing is removed again.
    """
    _check_out(out, overwrite, sources)
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".import-", dir=out))
    except OSError as err:
        raise UserError(f"cannot write into {out}: {err.strerror or err}") from None
    done = False
    try:
        yield staging
        for folder in (images_dir, labels_dir):
            if folder(out).exists():
                shutil.rmtree(folder(out))
            os.replace(folder(staging), folder(out))
        done = True
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if created and not done:
            with contextlib.suppress(OSError):
                out.rmdir()


def write_pairs(out: str | os.PathLike, pairs: Iterable[Pair], to_label: Labeler, class_names: list[str], *,
                sources: Sequence[Path], left_out: Sequence[LeftOut] = (), grey_rgb: bool = False,
                group_regex: str | None = None, overwrite: bool = False,
                report_extra: dict[str, Any] | None = None, reader: PairReader | None = None) -> ImportSummary:
    """Read, check and convert every pair, then write Images/, Labels/, classes.txt, groups.json and the report."""
    out = Path(out)
    check_class_count(class_names)
    with staged_dataset(out, overwrite, sources) as staging:
        imported, skipped, pixels = _stage(pairs, staging, to_label, grey_rgb, group_regex, reader or PairReader())
        left_out = [*left_out, *skipped]
        if not imported:
            first = f" (e.g. {left_out[0].files()}: {left_out[0].reason})" if left_out else ""
            raise UserError(f"no image/mask pair could be imported from {', '.join(map(str, sources))}{first}")
        if pixels[len(class_names):IGNORE_INDEX].any():
            raise UserError(f"labels hold class ids beyond the {len(class_names)} classes {class_names}")
    return _write_metadata(out, imported, left_out, class_names, pixels, sources, group_regex, report_extra)


def _stage(pairs: Iterable[Pair], staging: Path, to_label: Labeler, grey_rgb: bool,
           group_regex: str | None, reader: PairReader) -> tuple[list[Pair], list[LeftOut], np.ndarray]:
    """Convert every pair into staging/Images and staging/Labels; return the imported, the left out, pixel counts."""
    imported: list[Pair] = []
    left_out: list[LeftOut] = []
    mismatched: list[tuple[Pair, tuple[int, int], tuple[int, int]]] = []
    seen: set[str] = set()
    pixels = np.zeros(256, dtype=np.int64)
    for pair in pairs:
        if pair.stem in seen:
            raise UserError(f"two pairs share the name '{pair.stem}' ({pair.image}); names must be unique")
        seen.add(pair.stem)
        if group_regex is not None:
            pair = _grouped(pair, group_regex)
            if isinstance(pair, LeftOut):
                left_out.append(pair)
                continue
        try:
            image, mask = reader.image(pair.image, grey_rgb), reader.mask(pair.mask)
        except UserError as err:
            left_out.append(LeftOut(pair.stem, str(err), str(pair.image), str(pair.mask)))
            continue
        if image.size != mask.size:
            mismatched.append((pair, image.size, mask.size))
            continue
        try:
            label = to_label(mask)
        except UserError as err:
            raise UserError(f"{pair.mask}: {err}") from None
        pixels += np.bincount(label.ravel(), minlength=256)
        save_image(images_dir(staging) / f"{pair.stem}.png", image)
        save_image(labels_dir(staging) / f"{pair.stem}.png", label)
        imported.append(pair)
    by_image_size: dict[tuple[int, int], list[str]] = {}
    for pair, image_size, _ in mismatched:
        by_image_size.setdefault(image_size, []).append(pair.stem)
    for pair, (image_w, image_h), mask_size in mismatched:
        hint = _swap_hint(pair.stem, mask_size, by_image_size)
        left_out.append(LeftOut(pair.stem, f"size mismatch: image {image_w}x{image_h}, mask "
                                           f"{mask_size[0]}x{mask_size[1]}{hint}", str(pair.image), str(pair.mask)))
    return imported, left_out, pixels


def _grouped(pair: Pair, group_regex: str) -> Pair | LeftOut:
    """The pair with the group its stem carries (as png2txt.py will read it), or why it cannot be grouped."""
    match = re.match(group_regex, pair.stem)
    group = match.group(1) if match else None
    if group is None or pair.group not in (None, group):
        expected = f"its group {pair.group}" if pair.group else f"a group matching {group_regex}"
        return LeftOut(pair.stem, f"name does not carry {expected}", str(pair.image), str(pair.mask))
    return replace(pair, group=group)


def _write_metadata(out: Path, imported: list[Pair], left_out: list[LeftOut], class_names: list[str],
                    pixels: np.ndarray, sources: Sequence[Path], group_regex: str | None,
                    report_extra: dict[str, Any] | None) -> ImportSummary:
    """Write classes.txt, groups.json (or remove a stale one) and import_report.json."""
    write_class_names(out, class_names)
    groups = {pair.stem: pair.group for pair in imported if pair.group is not None}
    if groups:
        write_json(out / GROUPS_FILE, groups)
    elif (out / GROUPS_FILE).exists():
        (out / GROUPS_FILE).unlink()
    notes = []
    if any(out.glob("ImageSets/Segmentation/*.txt")):
        notes.append(f"{out}/ImageSets/Segmentation holds split files from an earlier import; "
                     f"rewrite them with png2txt.py")
    per_class = {name: int(pixels[i]) for i, name in enumerate(class_names)}
    per_class["ignore"] = int(pixels[IGNORE_INDEX])
    write_json(out / REPORT_FILE, {
        "sources": [str(source) for source in sources],
        "classes": class_names,
        "imported_count": len(imported),
        "left_out_count": len(left_out),
        "groups_count": len(set(groups.values())),
        "group_regex": group_regex if groups else None,
        "pixels_per_class": per_class,
        **(report_extra or {}),
        "left_out": [asdict(item) for item in left_out],
        "imported": [{"stem": pair.stem, "image": str(pair.image), "mask": str(pair.mask),
                      **({"group": pair.group} if pair.group is not None else {})} for pair in imported],
    })
    return ImportSummary(out, [pair.stem for pair in imported], left_out, class_names,
                         len(set(groups.values())), group_regex if groups else None, notes)

