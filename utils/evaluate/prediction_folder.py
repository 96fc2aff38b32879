"""A prediction folder belongs to one run (checkpoint, data set, split): its record says which, and what it holds.

get_miou_prediction.py writes the record: INCOMPLETE while it works, prediction.json when done. A folder that holds
another run's predictions is refused rather than cleared: its maps may be the only ones of a checkpoint since
retrained or deleted, removing them cannot be undone, and the default folder (results/<model>-<run>/<split>) never
clashes, so only an explicit --out meets the refusal, and naming another folder costs one word.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

from utils.data.folders import INCOMPLETE_FILE
from utils.errors import UserError
from utils.io.files import write_json
from utils.io.outputs import resolved

PREDICTION_FILE = "prediction.json"
INCOMPLETE_NOTE = "get_miou_prediction.py has not finished writing this folder; run it again before scoring."
OWNER_KEYS = ("checkpoint", "data", "split")


def run_owner(checkpoint: str | os.PathLike, data: str | os.PathLike, split: str) -> dict[str, str]:
    """The run a prediction folder belongs to, with paths absolute so that any working folder compares them."""
    return {"checkpoint": str(resolved(checkpoint)), "data": str(resolved(data)), "split": split}


def read_record(path: Path) -> dict[str, Any] | None:
    """prediction.json or INCOMPLETE as a dict; None when absent or not a record (e.g. an older plain-text marker)."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        if path.name == PREDICTION_FILE:
            raise UserError(f"{path} is not a prediction record (not JSON); predict into a new folder") from None
        return None
    return record if isinstance(record, dict) else None


def _differences(record: dict[str, Any], owner: dict[str, str]) -> list[str]:
    """'split train (asked: val)' for each owner field in which `record` names another run."""
    found = []
    for key in OWNER_KEYS:
        theirs = record.get(key)
        same = theirs == owner[key] if key == "split" else theirs is not None and resolved(theirs) == Path(owner[key])
        if not same:
            found.append(f"{key} {theirs} (here: {owner[key]})")
    return found


def check_folder_owner(folder: Path, owner: dict[str, str], outputs: Iterable[Path]) -> None:
    """Refuse `folder` when it holds another run's predictions, or files no run recorded that outputs would replace."""
    record = read_record(folder / PREDICTION_FILE) or read_record(folder / INCOMPLETE_FILE)
    if record is not None:
        differences = _differences(record, owner)
        if differences:
            raise UserError(f"{folder} holds the predictions of another run ({'; '.join(differences)}); predict into "
                            f"a new --out folder, or delete {folder} first")
        return
    taken = next((path for path in outputs if path.exists()), None)
    if taken is not None:
        raise UserError(f"{folder} already holds {taken.name}, which no recorded prediction wrote; predict into a new "
                        f"--out folder, or delete {folder} first")


def mark_incomplete(folder: Path, owner: dict[str, str]) -> None:
    """Mark `folder` unfinished (and whose) until prediction.json is written, so a stopped run never looks complete."""
    write_json(folder / INCOMPLETE_FILE, {"note": INCOMPLETE_NOTE, **owner})
    (folder / PREDICTION_FILE).unlink(missing_ok=True)


def predicted_stems(folder: Path, data: str | os.PathLike, split: str, stems: list[str]) -> list[str]:
    """The stems to score: those prediction.json lists, which must be the split's; a folder without one, all of them."""
    if (folder / INCOMPLETE_FILE).exists():
        raise UserError(f"{folder} holds an unfinished prediction (get_miou_prediction.py stopped before the "
                        f"end); run get_miou_prediction.py again, then score")
    record = read_record(folder / PREDICTION_FILE)
    if record is None:  # label maps from elsewhere: nothing says which split they are
        return stems
    if record.get("split") != split:
        raise UserError(f"{folder} holds predictions of split '{record.get('split')}' (its {PREDICTION_FILE}), not "
                        f"'{split}'; score with --split {record.get('split')} or predict '{split}' into another folder")
    if record.get("data") is None or resolved(record["data"]) != resolved(data):
        raise UserError(f"{folder} holds predictions of the data set {record.get('data')} (its {PREDICTION_FILE}), "
                        f"not {data}; score against that data set or predict into another folder")
    listed = record.get("stems")
    if listed is None:  # a record written before stems were listed
        return stems
    extra, missing = sorted(set(listed) - set(stems)), sorted(set(stems) - set(listed))
    if extra or missing:
        detail = "; ".join(part for part in (
            f"{len(missing)} image(s) of the split not predicted, e.g. {', '.join(missing[:3])}" if missing else "",
            f"{len(extra)} predicted image(s) no longer in the split, e.g. {', '.join(extra[:3])}" if extra else "")
            if part)
        raise UserError(f"{folder} holds predictions of another version of split '{split}' ({detail}); run "
                        f"get_miou_prediction.py again")
    return stems
