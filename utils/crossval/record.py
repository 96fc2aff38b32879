"""crossval.json: what a cross-validation folder holds (model, data, folds, train options), checked on every rerun."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from utils.data.dataset import read_split
from utils.errors import UserError
from utils.infer.ensemble import CROSSVAL_FILE
from utils.io.files import write_json
from utils.io.outputs import resolved

RECORD_VERSION = 1


def fold_digest(data: str | Path, fold: int) -> str:
    """A digest of fold `fold`'s train and validation stems, to notice fold files rewritten since training."""
    digest = hashlib.sha256()
    for split in (f"fold{fold}_train", f"fold{fold}_val"):
        digest.update(f"{split}\n".encode())
        for stem in read_split(data, split):
            digest.update(f"{stem}\n".encode())
    return digest.hexdigest()


def new_record(model: str, data: str | Path, run_dirs: list[Path], cv_dir: Path, train_options: dict[str, Any],
               train_args: list[str]) -> dict[str, Any]:
    """The record of a cross-validation: fold checkpoints relative to the CV folder, so the pair can move."""
    folds = []
    for index, run_dir in enumerate(run_dirs):
        relative = Path("..") / run_dir.name / "best.pt" if run_dir.parent == cv_dir.parent else run_dir / "best.pt"
        folds.append({"fold": index, "run_dir": str(relative.parent), "checkpoint": str(relative),
                      "val_split": f"fold{index}_val", "splits_digest": fold_digest(data, index)})
    return {"version": RECORD_VERSION, "model": model, "data": str(resolved(data)), "folds": folds,
            "train_options": train_options, "train_args": train_args}


def read_record(cv_dir: Path) -> dict[str, Any] | None:
    """The folder's crossval.json, or None when there is none yet."""
    path = cv_dir / CROSSVAL_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise UserError(f"{path} is not readable JSON; choose another --name or delete {cv_dir}") from None
    if not isinstance(record, dict) or record.get("version") != RECORD_VERSION or "folds" not in record:
        raise UserError(f"{path} is not a cross-validation record of this repository; choose another --name")
    return record


def check_same_run(saved: dict[str, Any], wanted: dict[str, Any], cv_dir: Path) -> None:
    """A rerun continues the same cross-validation: same model, data, folds, fold files and training options."""
    differences = []
    if saved["model"] != wanted["model"]:
        differences.append(f"model {saved['model']} (asked: {wanted['model']})")
    if Path(saved["data"]) != Path(wanted["data"]):
        differences.append(f"data {saved['data']} (asked: {wanted['data']})")
    if len(saved["folds"]) != len(wanted["folds"]):
        differences.append(f"{len(saved['folds'])} folds (asked: {len(wanted['folds'])})")
    for name in sorted(set(saved["train_options"]) | set(wanted["train_options"])):
        theirs, ours = saved["train_options"].get(name), wanted["train_options"].get(name)
        if theirs != ours:
            differences.append(f"--{name.replace('_', '-')} {theirs!r} (asked: {ours!r})")
    if differences:
        raise UserError(f"{cv_dir} holds a cross-validation with other settings: {'; '.join(differences)}. Rerun it "
                        f"with its own options, or give another --name")
    for old, new in zip(saved["folds"], wanted["folds"]):
        if old["splits_digest"] != new["splits_digest"]:
            raise UserError(f"the fold files of fold {old['fold']} ({old['val_split']}.txt) changed since {cv_dir} "
                            f"was made (png2txt.py --folds rerun?); restore them, or give another --name")


def save_record(cv_dir: Path, record: dict[str, Any]) -> None:
    """Write crossval.json (atomically)."""
    write_json(cv_dir / CROSSVAL_FILE, record)
