"""per_image.csv: a stem a spreadsheet would run as a formula is written inert; numbers stay numbers."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from utils.evaluate.score_files import write_per_image_csv


def test_formula_stems_are_quoted_and_numbers_are_not(tmp_path: Path) -> None:
    stems = ['=HYPERLINK("evil.example";"click")', "+1", "-2", "@SUM(A1)", "plain", "a=b"]
    matrix = np.array([[3, 1], [0, 2]])
    write_per_image_csv(tmp_path / "per_image.csv", stems, [matrix] * len(stems), ["background", "liver"])
    with open(tmp_path / "per_image.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))[1:]
    assert [row[0] for row in rows] == ['\'=HYPERLINK("evil.example";"click")', "'+1", "'-2", "'@SUM(A1)", "plain",
                                        "a=b"]
    assert all(not cell.startswith("'") for row in rows for cell in row[1:])
    assert rows[0][1] == "0.800000"  # foreground Dice 2*2/(2*2+1+0)
