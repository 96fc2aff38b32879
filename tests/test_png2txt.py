"""png2txt.py: seeded 9:1 split, grouped split, unlabelled images reported."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import png2txt
from tests.conftest import write_pair
from utils.cli import run_main
from utils.data.splits import split_stems
from utils.errors import UserError


def make(root: Path, stems: list[str]) -> None:
    for stem in stems:
        write_pair(root, stem, np.zeros((4, 4), dtype=np.uint8), np.zeros((4, 4), dtype=np.uint8))


def read(root: Path, name: str) -> list[str]:
    return (root / "ImageSets" / "Segmentation" / f"{name}.txt").read_text().split()


def test_default_split_is_nine_to_one_and_seeded(tmp_path: Path) -> None:
    make(tmp_path, [f"{i:03d}" for i in range(40)])
    assert png2txt.main(["--data", str(tmp_path)]) == 0
    train, val = read(tmp_path, "train"), read(tmp_path, "val")
    assert (len(train), len(val)) == (36, 4)
    assert sorted(train + val) == sorted(read(tmp_path, "trainval")) and not set(train) & set(val)
    png2txt.main(["--data", str(tmp_path)])
    assert read(tmp_path, "val") == val
    png2txt.main(["--data", str(tmp_path), "--seed", "1", "--val-ratio", "0.25"])
    assert len(read(tmp_path, "val")) == 10 and read(tmp_path, "val") != val


def test_group_keeps_patients_on_one_side(tmp_path: Path) -> None:
    stems = [f"patient{p}_{s}" for p in range(10) for s in range(4)]
    make(tmp_path, stems)
    png2txt.main(["--data", str(tmp_path), "--group", r"^(patient\d+)_", "--val-ratio", "0.2"])
    patients = lambda names: {n.split("_")[0] for n in names}
    train, val = read(tmp_path, "train"), read(tmp_path, "val")
    assert len(val) == 8 and not patients(train) & patients(val)


def test_unmatched_group_and_bad_regex_are_errors(tmp_path: Path) -> None:
    make(tmp_path, ["a_1", "b"])
    with pytest.raises(UserError, match="matches no group in 1 file"):
        split_stems(["a_1", "b"], 0.5, 0, r"^(\w)_\d")
    assert run_main(png2txt.main, ["--data", str(tmp_path), "--group", "("]) == 2


def test_images_without_labels_are_reported(tmp_path: Path, capsys) -> None:
    make(tmp_path, ["1", "2", "10"])
    (tmp_path / "Labels" / "2.png").unlink()
    png2txt.main(["--data", str(tmp_path), "--val-ratio", "0"])
    assert "image without label, left out" in capsys.readouterr().err
    assert read(tmp_path, "trainval") == ["1", "10"] and read(tmp_path, "val") == []
