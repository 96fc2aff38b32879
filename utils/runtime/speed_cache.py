"""The speed probe's cache file: one entry per set-up, read with every entry's types checked, written atomically."""
from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from utils.errors import UserError
from utils.io.files import write_json

CACHE_ENV = "UNET_SEGMENTATION_CACHE"
CACHE_FILE = "speed_probe.json"
CACHE_VERSION = 1
MAX_ENTRIES = 200  # set-ups remembered; the oldest go first


def cache_path() -> Path:
    """The cache file: in $UNET_SEGMENTATION_CACHE, else $XDG_CACHE_HOME/unet-segmentation, else ~/.cache/..."""
    folder = os.environ.get(CACHE_ENV)
    if not folder:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        folder = str(Path(base) / "unet-segmentation")
    return Path(folder) / CACHE_FILE


def note(message: str) -> None:
    """One note line on stderr."""
    print(f"note: {message}", file=sys.stderr, flush=True)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def entry_problem(entry: Any) -> str | None:
    """What is wrong with one cache entry's fields and value types, or None."""
    if not isinstance(entry, dict):
        return f"an entry is {type(entry).__name__}, not an object"
    if not isinstance(entry.get("key"), dict) or not isinstance(entry.get("choice"), str):
        return "an entry has no key object or no choice name"
    seconds = entry.get("seconds")
    if not isinstance(seconds, dict) or not all(isinstance(name, str) and (value is None or _number(value))
                                                for name, value in seconds.items()):
        return f"entry {entry['choice']!r} has seconds {seconds!r:.80} (expected name: seconds or null)"
    if not (entry.get("probe_seconds") is None or _number(entry["probe_seconds"])) \
            or not isinstance(entry.get("noisy", False), bool):
        return f"entry {entry['choice']!r} has a probe_seconds or noisy value of the wrong type"
    return None


def read_cache(path: Path) -> list[dict[str, Any]]:
    """The cache's entries; a missing file is empty, an unreadable or malformed one is ignored and entries of the
    wrong types are dropped, each with a note."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        entries = data["entries"]
        if data["version"] != CACHE_VERSION or not isinstance(entries, list):
            raise ValueError("not a speed-probe cache of this version")
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:  # truncated, foreign, unreadable
        note(f"ignoring the speed-probe cache {path} ({type(exc).__name__}: {exc}); the next cached probe "
              f"replaces it")
        return []
    problems = [entry_problem(entry) for entry in entries]
    bad = [problem for problem in problems if problem]
    if bad:
        note(f"dropping {len(bad)} malformed entr{'y' if len(bad) == 1 else 'ies'} of the speed-probe "
             f"cache {path} ({bad[0]}); the next cached probe rewrites it")
    return [entry for entry, problem in zip(entries, problems) if problem is None]


def write_cache(path: Path, entries: list[dict[str, Any]]) -> None:
    """Write the entries atomically; a cache that cannot be written only costs a probe next time."""
    try:
        write_json(path, {"version": CACHE_VERSION, "entries": entries[-MAX_ENTRIES:]})
    except (OSError, UserError) as exc:
        note(f"could not write the speed-probe cache {path} ({exc}); the probe runs again next time")
