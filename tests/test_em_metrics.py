"""Adapted Rand error and variation of information over cell segments, against hand computations, and in miou.py."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import miou
from utils.cli import run_main
from utils.errors import UserError
from utils.evaluate.em_metrics import class_index, pooled_rand_voi, rand_voi, segments
from utils.io.labels import save_label_png

CELL = 1  # ISBI 2012 as imported: 0 membrane, 1 cell
# Two cells parted by a membrane row: A (rows 0-1, 8 px) and B (row 3, 4 px).
LABEL = np.array([[1, 1, 1, 1],
                  [1, 1, 1, 1],
                  [0, 0, 0, 0],
                  [1, 1, 1, 1]], dtype=np.uint8)
# Cell A split by a predicted membrane in column 1: inside A the prediction holds segments of 2 (column 0),
# 2 (the membrane) and 4 (columns 2-3) pixels; B is found as it is.
SPLIT = np.array([[1, 0, 1, 1],
                  [1, 0, 1, 1],
                  [0, 0, 0, 0],
                  [1, 1, 1, 1]], dtype=np.uint8)
# The membrane row missed: A and B are one predicted segment.
MERGED = np.ones((4, 4), dtype=np.uint8)


def test_identical_segmentations_score_zero() -> None:
    assert rand_voi(LABEL, LABEL, CELL) == {"adapted_rand_error": 0.0, "voi_split": 0.0, "voi_merge": 0.0, "voi": 0.0}


def test_a_split_cell_costs_split_information_and_rand_error() -> None:
    scores = rand_voi(SPLIT, LABEL, CELL)
    # H(prediction | label) = p(A) H(2/8, 2/8, 4/8) + p(B) * 0 = 8/12 * 1.5 bits.
    assert scores["voi_split"] == pytest.approx(1.0)
    assert scores["voi_merge"] == 0.0 and scores["voi"] == pytest.approx(1.0)
    # Pairs within one segment, sum n(n-1): both maps 2*1 + 2*1 + 4*3 + 4*3 = 28; label alone 8*7 + 4*3 = 68.
    # F = 28 / (0.5 * 68 + 0.5 * 28) = 7/12.
    assert scores["adapted_rand_error"] == pytest.approx(1 - 28 / 48)


def test_merged_cells_cost_merge_information_and_rand_error() -> None:
    scores = rand_voi(MERGED, LABEL, CELL)
    # Scored pixels: the 12 of A and B, all in one predicted segment; H(label | prediction) = H(8/12, 4/12).
    assert scores["voi_merge"] == pytest.approx(-(8 / 12) * math.log2(8 / 12) - (4 / 12) * math.log2(4 / 12))
    assert scores["voi_split"] == 0.0
    # Both maps 68 (as the label's segments); prediction alone 12 * 11 = 132: F = 68 / 100.
    assert scores["adapted_rand_error"] == pytest.approx(0.32)


def test_segments_are_four_connected() -> None:
    diagonal = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]], dtype=bool)
    assert segments(diagonal).max() == 2  # touching at a corner only: two cells
    # Predicting the lower cell as membrane then leaves the upper cell whole and adds no split; as one 8-connected
    # cell the label would count that as a split into the found half and the membrane half.
    only_upper = np.zeros((4, 4), np.uint8)
    only_upper[:2, :2] = 1
    assert rand_voi(only_upper, diagonal.astype(np.uint8), CELL) == {
        "adapted_rand_error": 0.0, "voi_split": 0.0, "voi_merge": 0.0, "voi": 0.0}


def test_ignored_label_pixels_are_not_scored() -> None:
    label = LABEL.copy()
    label[0:2, 1] = 255  # just where the prediction put its membrane: the label's cell A is parted the same way
    assert rand_voi(SPLIT, label, CELL) == {"adapted_rand_error": 0.0, "voi_split": 0.0, "voi_merge": 0.0,
                                            "voi": 0.0}


def test_no_cell_in_the_label_is_undefined_and_left_out_of_the_mean() -> None:
    assert rand_voi(MERGED, np.zeros((4, 4), np.uint8), CELL) is None
    pooled = pooled_rand_voi({"a": rand_voi(SPLIT, LABEL, CELL), "b": rand_voi(LABEL, LABEL, CELL), "c": None},
                             "cell")
    assert pooled["adapted_rand_error"] == pytest.approx((1 - 28 / 48) / 2)
    assert pooled["voi_split"] == pytest.approx(0.5) and pooled["voi"] == pytest.approx(0.5)
    assert (pooled["images_scored"], pooled["images_undefined"]) == (2, 1)


def test_class_named_or_numbered() -> None:
    assert class_index("cell", ["membrane", "cell"]) == 1 and class_index("0", ["membrane", "cell"]) == 0
    with pytest.raises(UserError, match="not a class"):
        class_index("2", ["membrane", "cell"])


@pytest.fixture
def membranes(tmp_path: Path) -> dict[str, Path]:
    """An ISBI-like data set (membrane, cell) of three 4x4 slices with hand-made predictions."""
    data, pred = tmp_path / "data", tmp_path / "pred"
    for folder in ("Images", "Labels", "ImageSets/Segmentation"):
        (data / folder).mkdir(parents=True)
    cases = {"slice_0": (LABEL, SPLIT), "slice_1": (LABEL, LABEL), "slice_2": (np.zeros((4, 4), np.uint8), MERGED)}
    for stem, (label, prediction) in cases.items():
        Image.fromarray((label * 200 + 20).astype(np.uint8)).save(data / "Images" / f"{stem}.png")
        Image.fromarray(label).save(data / "Labels" / f"{stem}.png")
        save_label_png(pred / f"{stem}.png", prediction, 2)
    (data / "ImageSets/Segmentation/val.txt").write_text("".join(f"{s}\n" for s in cases))
    (data / "classes.txt").write_text("membrane\ncell\n")
    return {"data": data, "pred": pred}


def test_miou_reports_rand_and_voi_per_image_and_pooled(membranes: dict[str, Path], capsys) -> None:
    assert run_main(miou.main, ["--pred", str(membranes["pred"]), "--data", str(membranes["data"]),
                                "--rand-voi", "cell", "--report"]) == 0
    out = capsys.readouterr().out
    assert "segments of 'cell' (mean over 2 images, 1 without a 'cell' segment left out): adapted Rand error " \
           "0.2083, VOI split 0.5000, merge 0.0000, total 0.5000 bits" in out
    pooled = json.loads((membranes["pred"] / "miou.json").read_text())["rand_voi"]
    assert pooled["class"] == "cell" and pooled["adapted_rand_error"] == pytest.approx(5 / 24)
    assert pooled["per_image"]["slice_2"] is None and pooled["per_image"]["slice_0"]["voi_split"] == pytest.approx(1)
    with open(membranes["pred"] / "per_image.csv", newline="", encoding="utf-8") as handle:
        rows = {row["stem"]: row for row in csv.DictReader(handle)}
    assert (rows["slice_0"]["adapted_rand_error"], rows["slice_0"]["voi_split"], rows["slice_0"]["voi"]) == \
        ("0.416667", "1.000000", "1.000000")
    assert rows["slice_2"]["adapted_rand_error"] == "" and rows["slice_1"]["voi_merge"] == "0.000000"
    assert "adapted Rand error" in (membranes["pred"] / "report.html").read_text(encoding="utf-8")


def test_miou_without_rand_voi_adds_no_columns(membranes: dict[str, Path]) -> None:
    assert run_main(miou.main, ["--pred", str(membranes["pred"]), "--data", str(membranes["data"])]) == 0
    with open(membranes["pred"] / "per_image.csv", newline="", encoding="utf-8") as handle:
        assert "voi" not in next(csv.reader(handle))
    assert "rand_voi" not in json.loads((membranes["pred"] / "miou.json").read_text())


def test_an_unknown_rand_voi_class_is_one_line(membranes: dict[str, Path], capsys) -> None:
    assert run_main(miou.main, ["--pred", str(membranes["pred"]), "--data", str(membranes["data"]),
                                "--rand-voi", "nucleus"]) == 2
    err = capsys.readouterr().err
    assert "--rand-voi nucleus: not a class; give one of membrane, cell" in err and len(err.strip().splitlines()) == 1
