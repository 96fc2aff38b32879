"""Atomic file writes: a crash never leaves a truncated file where a good one stood."""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import socket
import tempfile
import time
from pathlib import Path
from typing import IO, Any, Iterator

import numpy as np
from PIL import Image

from utils.errors import UserError

# A temporary untouched this long belongs to a killed write: a live writer (a PNG, a checkpoint, an exported
# model) writes its bytes in one go, seconds after making the file, so ten minutes leaves a wide margin. A
# temporary whose writer (named in it: this machine's tag and the process id) has exited goes at once.
STALE_TEMPORARY_SECONDS = 600
RANDOM_CHARACTERS = 8  # what tempfile.mkstemp puts between the prefix and the suffix
DEFAULT_NAME_MAX = 255  # bytes in one file name on every common file system
_TEMPORARY = re.compile(r"\..+?\.(?:([0-9a-f]{6})-(\d+)\.)?[a-z0-9_]{%d}\.tmp(\.[^.]+)*" % RANDOM_CHARACTERS)
_swept: set[Path] = set()  # folders already cleared of stale temporaries by this process


def _umask() -> int:
    """The process umask (read by setting it, then putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _machine_tag() -> str:
    """Six hex digits naming this machine, so a process id in a temporary's name is only judged where it ran."""
    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]


def _writer_exited(match: re.Match) -> bool:
    """True when the temporary names a process of this machine that no longer runs."""
    tag, pid = match.group(1), match.group(2)
    if tag != _machine_tag() or pid is None:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):
        return False
    return False


def remove_stale_temporaries(folder: Path, max_age: float = STALE_TEMPORARY_SECONDS) -> list[Path]:
    """Delete the temporaries of killed atomic writes in `folder` (writer gone, or unchanged for `max_age` s)."""
    removed, now = [], time.time()
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            match = _TEMPORARY.fullmatch(entry.name)
            if not match:
                continue
            with contextlib.suppress(OSError):
                if entry.is_file(follow_symlinks=False) and (
                        _writer_exited(match) or now - entry.stat(follow_symlinks=False).st_mtime > max_age):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
    return removed


def _temporary_prefix(path: Path, suffix: str) -> str:
    """'.<name>.<machine>-<pid>.', the name shortened (with a hash of it) when the temporary's would be too long."""
    try:
        name_max = os.pathconf(path.parent, "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = DEFAULT_NAME_MAX
    writer = f"{_machine_tag()}-{os.getpid()}."
    prefix = f".{path.name}.{writer}"
    room = name_max - RANDOM_CHARACTERS - len(suffix.encode())
    if len(prefix.encode()) <= room:
        return prefix
    digest = hashlib.sha1(path.name.encode()).hexdigest()[:8]
    head = path.name.encode()[:max(room - len(digest) - len(writer) - 3, 1)].decode(errors="ignore")
    return f".{head}~{digest}.{writer}"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary file name beside `path`; on success the file is fsynced and renamed over `path`.

    For writers that take a file name (nibabel picks its compression by the name's `suffix`).
    """
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a folder; give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UserError(f"cannot write {path}: a file stands where a folder is needed "
                        f"({next(p for p in path.parents if p.exists())})") from None
    if path.parent.resolve() not in _swept:
        remove_stale_temporaries(path.parent)
        _swept.add(path.parent.resolve())
    fd, tmp = tempfile.mkstemp(prefix=_temporary_prefix(path, suffix), suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        # mkstemp makes the file private (0600); the result should have the permissions any new file gets.
        os.chmod(tmp, 0o666 & ~_umask())
        yield Path(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """Open a temporary file beside `path`; on success fsync it and rename it over `path`."""
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as handle:
        yield handle


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` atomically (UTF-8)."""
    with atomic_open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def strict_json(data: Any) -> Any:
    """`data` with NaN and infinities replaced by None, so it is valid JSON (which has no such numbers)."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {key: strict_json(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [strict_json(value) for value in data]
    return data


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write `data` as indented, strict JSON to `path` atomically (non-finite numbers become null)."""
    write_text(path, json.dumps(strict_json(data), indent=2, sort_keys=False, allow_nan=False) + "\n")


def save_image(path: str | os.PathLike, image: np.ndarray | Image.Image, format: str = "PNG") -> None:
    """Save an image (array or PIL) to `path` atomically; the format is explicit, not guessed."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    with atomic_open(path, "wb") as handle:
        image.save(handle, format=format)


def read_lines(path: str | os.PathLike) -> list[str]:
    """Non-empty, stripped lines of a text file."""
    with open(path, encoding="utf-8") as handle:
        return [line.strip() for line in handle if line.strip()]
