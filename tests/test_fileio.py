"""Atomic writes: complete files only, with the permissions any new file gets."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from utils.io.files import write_text


def test_atomic_writes_get_ordinary_permissions(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644
    assert (tmp_path / "a.txt").read_text() == "x"


def test_failed_write_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    from utils.io.files import atomic_open

    write_text(tmp_path / "a.txt", "old")
    with pytest.raises(RuntimeError):
        with atomic_open(tmp_path / "a.txt") as handle:
            handle.write("new")
            raise RuntimeError("interrupted")
    assert (tmp_path / "a.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]
