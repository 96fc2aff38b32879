"""Writing an import: pairs staged in a temporary folder, checked, then moved into Images/ and Labels/ with the report."""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from utils.data.folders import GROUPS_FILE, images_dir, labels_dir, write_class_names
from utils.errors import UserError
from utils.importers.common import REPORT_FILE, ImportSummary, Labeler, LeftOut, Pair, PairReader
from utils.io.files import save_image, write_json
from utils.io.labels import IGNORE_INDEX


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
    """Refuse an empty class list, one that would reach the ignore value, or one that names a class twice."""
    if not 0 < len(class_names) <= IGNORE_INDEX:
        raise UserError(f"need 1 to {IGNORE_INDEX} class names, got {len(class_names)}")
    twice = sorted({name for name in class_names if class_names.count(name) > 1})
    if twice:
        # Scores and pixel counts are reported per class name: two classes of one name would hide one of them.
        raise UserError(f"the class names {list(class_names)} name {', '.join(map(repr, twice))} more than once; "
                        f"give each class its own name (--classes)")


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
