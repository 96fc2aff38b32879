"""The on-disk dataset layout: <root>/Images, <root>/Labels, <root>/ImageSets/Segmentation, classes.txt."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from utils.errors import UserError
from utils.io.files import read_lines, write_text

IMAGES_DIR = "Images"
LABELS_DIR = "Labels"
SPLITS_DIR = Path("ImageSets") / "Segmentation"
DATASET_FOLDERS = (IMAGES_DIR, LABELS_DIR, SPLITS_DIR.parts[0])  # hold a data set's inputs: no script writes there
CLASSES_FILE = "classes.txt"
GROUPS_FILE = "groups.json"  # stem -> case group (patient, volume), written by the importers
IMPORT_REPORT_FILE = "import_report.json"
INCOMPLETE_FILE = "INCOMPLETE"  # in a prediction folder while get_miou_prediction.py is still writing it
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp")


def images_dir(root: str | os.PathLike) -> Path:
    """Folder of input images."""
    return Path(root) / IMAGES_DIR


def labels_dir(root: str | os.PathLike) -> Path:
    """Folder of label maps (pixel = class id, 255 = ignore)."""
    return Path(root) / LABELS_DIR


def split_file(root: str | os.PathLike, split: str) -> Path:
    """Path of a split file such as train.txt."""
    return Path(root) / SPLITS_DIR / f"{split}.txt"


def index_by_stem(folder: Path) -> dict[str, Path]:
    """Map file stem -> path for every image file in `folder` (error on two files with one stem)."""
    if not folder.is_dir():
        raise UserError(f"folder not found: {folder}")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES or path.name.startswith("."):
            continue
        if path.stem in found:
            raise UserError(f"two files share the stem '{path.stem}' in {folder}: "
                            f"{found[path.stem].name} and {path.name}; keep one")
        found[path.stem] = path
    return found


def read_class_names(root: str | os.PathLike) -> list[str] | None:
    """Class names from <root>/classes.txt (line i = class i), or None when the file is absent."""
    path = Path(root) / CLASSES_FILE
    if not path.is_file():
        return None
    try:
        names = read_lines(path)
    except UnicodeDecodeError as err:
        raise UserError(f"{path} is not UTF-8 text (byte {err.start}); save it as UTF-8, one class name "
                        f"a line") from None
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror or err}") from None
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        # Scores are reported per class name: two classes of one name would hide one of them.
        raise UserError(f"{path} names {', '.join(map(repr, twice))} on more than one line; give each class its "
                        f"own name")
    return names


def write_class_names(root: str | os.PathLike, names: list[str]) -> None:
    """Write <root>/classes.txt atomically."""
    write_text(Path(root) / CLASSES_FILE, "".join(f"{name}\n" for name in names))


def read_preprocessing(root: str | os.PathLike) -> dict[str, Any]:
    """How the importer made the images from wide data: {"intensity": dict or None, "context": slices}.

    Prediction on raw volumes or 16-bit images repeats it, so it travels in the checkpoint.
    """
    path = Path(root) / IMPORT_REPORT_FILE
    report: Any = {}
    if path.is_file():
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            report = {}
    if not isinstance(report, dict):
        report = {}
    return {"intensity": report.get("intensity"), "context": int(report.get("context") or 0)}
