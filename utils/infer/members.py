"""What --checkpoint names: one model, or the members of an ensemble (several paths, or a cross-validation folder).

A cross-validation folder holds crossval.json: {"folds": [{"fold": 0, "checkpoint": "fold0/best.pt"}, ...], ...};
a relative checkpoint path is relative to the folder.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from utils.errors import UserError
from utils.infer.ensemble import CROSSVAL_FILE
from utils.io.outputs import resolved

CheckpointArgument = str | os.PathLike | Sequence[str | os.PathLike]
MODEL_SUFFIXES = (".pt", ".pth", ".onnx")


def is_crossval_folder(path: str | os.PathLike) -> bool:
    """A folder holding crossval.json."""
    return (Path(path) / CROSSVAL_FILE).is_file()


def is_model_path(path: str | os.PathLike) -> bool:
    """A model by its name: a .pt, .pth or .onnx file, a run folder (last.pt / best.pt) or a cross-validation folder."""
    path = Path(path)
    if path.is_dir():
        return is_crossval_folder(path) or (path / "last.pt").is_file() or (path / "best.pt").is_file()
    return path.suffix.lower() in MODEL_SUFFIXES


def _fold_entries(folder: Path) -> list[tuple[int, Path]]:
    """(fold, checkpoint path) per entry of crossval.json; a malformed file is a UserError."""
    record_path = folder / CROSSVAL_FILE
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
        entries = [(entry["fold"], entry["checkpoint"]) for entry in record["folds"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{record_path}: not a cross-validation record (expected {{\"folds\": [{{\"fold\": 0, "
                        f"\"checkpoint\": \"...\"}}, ...]}}): {exc}") from None
    bad = [fold for fold, checkpoint in entries if not isinstance(fold, int) or isinstance(fold, bool)
           or not isinstance(checkpoint, str) or not checkpoint]
    if bad or not entries:
        raise UserError(f"{record_path}: {'no folds' if not entries else f'fold entry {bad[0]!r} is malformed'}; "
                        f"each fold needs an integer 'fold' and a 'checkpoint' path")
    return [(fold, folder / checkpoint) for fold, checkpoint in entries]  # an absolute path stays as it is


def crossval_checkpoints(folder: str | os.PathLike) -> list[Path]:
    """The checkpoints of a cross-validation folder's folds, in its order; a fold not trained yet is a UserError."""
    folder = Path(folder)
    entries = _fold_entries(folder)
    missing = [(fold, path) for fold, path in entries if not path.exists()]
    if missing:
        folds = ", ".join(str(fold) for fold, _ in missing)
        path = missing[0][1]
        which = f"fold {folds} has" if len(missing) == 1 else f"folds {folds} have"
        raise UserError(f"{folder}: {which} no checkpoint yet ({path} is missing); finish training first: the "
                        f"crossval.py command that made the folder, run again, resumes its folds")
    return [path for _, path in entries]


@dataclass(frozen=True)
class Members:
    """The model files --checkpoint names, and whether they form an ensemble (and its name)."""

    paths: list[Path]
    crossval: Path | None = None  # the one cross-validation folder --checkpoint names, if that is all it names
    records: tuple[Path, ...] = ()  # the crossval.json files read

    @property
    def is_ensemble(self) -> bool:
        """Several paths, or a cross-validation folder (even of one fold)."""
        return len(self.paths) > 1 or self.crossval is not None

    @property
    def source(self) -> Path:
        """What the models are recorded as coming from: the cross-validation folder, else the first path."""
        return self.crossval or self.paths[0]

    @property
    def name(self) -> str:
        """The cross-validation folder's name, else the first run's name and the member count ('r-x3')."""
        if self.crossval is not None:
            return resolved(self.crossval).name
        first = resolved(self.paths[0])
        run = first.name if first.is_dir() else first.parent.name
        return f"{run}-x{len(self.paths)}"

    @property
    def inputs(self) -> list[Path]:
        """Every file the members are read from (for the checks that no output replaces an input)."""
        files = list(self.records)
        for path in self.paths:
            files += [path / "last.pt", path / "best.pt"] if path.is_dir() else [path]
        return files


def checkpoint_members(checkpoint: CheckpointArgument) -> Members:
    """The models of --checkpoint: .pt files, run folders, .onnx files, or cross-validation folders' folds."""
    given = [checkpoint] if isinstance(checkpoint, (str, os.PathLike)) else list(checkpoint)
    if not given:
        raise UserError("no checkpoint given")
    paths: list[Path] = []
    crossval = [Path(path) for path in given if is_crossval_folder(path)]
    for path in map(Path, given):
        paths += crossval_checkpoints(path) if is_crossval_folder(path) else [path]
    seen: dict[Path, Path] = {}
    for path in paths:
        first = seen.setdefault(resolved(path), path)
        if first is not path:
            raise UserError(f"{path} is named twice among the checkpoints ({first}); an ensemble counts each model "
                            f"once")
    return Members(paths, crossval[0] if len(crossval) == 1 and len(given) == 1 else None,
                   tuple(folder / CROSSVAL_FILE for folder in crossval))
