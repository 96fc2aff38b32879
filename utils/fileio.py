"""Atomic file writes: a crash never leaves a truncated file where a good one stood."""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator

import numpy as np
from PIL import Image


def _umask() -> int:
    """The process umask (read by setting it, then putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """Open a temporary file beside `path`; on success fsync it and rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file private (0600); the result should have the permissions any new file gets.
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` atomically (UTF-8)."""
    with atomic_open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write `data` as indented JSON to `path` atomically."""
    write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


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
