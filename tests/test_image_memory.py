"""A large image is refused from its header, in one line, when decoding it would not fit in memory."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

import utils.io.memory as memory
from utils.errors import UserError
from utils.io.images import load_model_input, open_image, read_pages


@pytest.fixture
def big_png(tmp_path: Path) -> Path:
    path = tmp_path / "big.png"
    Image.new("RGB", (3000, 2000), (10, 20, 30)).save(path)  # 18 MB decoded, a few kB on disk
    return path


def test_an_image_too_large_for_the_memory_left_is_refused_before_decoding(big_png: Path, monkeypatch) -> None:
    monkeypatch.setattr(memory, "available_memory", lambda: 100 * 10**6)
    decoded: list[str] = []
    monkeypatch.setattr(Image.Image, "load", lambda self: decoded.append("load"))
    with pytest.raises(UserError, match=r"big\.png: 3000x2000 pixels x 3 channel\(s\) \(18\.0 MB decoded\) needs "
                                        r"about 360\.0 MB of memory to read and convert, but 100\.0 MB is available"):
        open_image(big_png)
    assert decoded == []
    with pytest.raises(UserError, match="100.0 MB is available"):
        load_model_input(big_png, 3, None)


def test_a_large_tiff_stack_is_judged_by_all_its_pages(tmp_path: Path, monkeypatch) -> None:
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((6, 1000, 1000), dtype=np.uint16), photometric="minisblack")
    monkeypatch.setattr(memory, "available_memory", lambda: 50 * 10**6)
    with pytest.raises(UserError, match=r"stack\.tif: pixels of shape 6x1000x1000 \(12\.0 MB decoded\)"):
        read_pages(tmp_path / "stack.tif")


def test_the_same_image_reads_when_memory_suffices(big_png: Path, monkeypatch) -> None:
    monkeypatch.setattr(memory, "available_memory", lambda: 500 * 10**6)
    assert open_image(big_png).size == (3000, 2000)


def test_available_memory_is_read_from_the_system() -> None:
    available = memory.available_memory()
    assert available is None or available > 0
