"""Uncertainty arithmetic against values worked out by hand: entropy, disagreement, the per-case number, files."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from utils.errors import UserError
from utils.infer.uncertainty import (
    CaseUncertainty,
    case_uncertainty,
    mutual_information,
    normalised_entropy,
    read_uncertainty_csv,
    save_uncertainty_png,
    write_uncertainty_csv,
)

H_075 = 0.8112781  # -(0.75 log2 0.75 + 0.25 log2 0.25)
H_0625 = 0.9544340  # -(0.625 log2 0.625 + 0.375 log2 0.375)


def pixels(*distributions: list[float]) -> np.ndarray:
    """(K, 1, N) probabilities: one pixel per distribution."""
    return np.array(distributions, dtype=np.float32).T[:, None, :]


def test_entropy_is_normalised_by_log_k() -> None:
    entropy = normalised_entropy(pixels([0.5, 0.5], [1.0, 0.0], [0.75, 0.25], [0.0, 1.0]))
    assert entropy.shape == (1, 4) and entropy.dtype == np.float32
    np.testing.assert_allclose(entropy[0], [1.0, 0.0, H_075, 0.0], atol=1e-6)
    three = normalised_entropy(pixels([1 / 3, 1 / 3, 1 / 3], [0.5, 0.5, 0.0]))
    np.testing.assert_allclose(three[0], [1.0, 0.6309298], atol=1e-6)  # log 2 / log 3
    with pytest.raises(UserError, match="entropy needs probabilities"):
        normalised_entropy(np.ones((1, 3, 3)))


def test_disagreement_is_the_mutual_information() -> None:
    opposite = mutual_information([pixels([1.0, 0.0]), pixels([0.0, 1.0])])  # mean [0.5, 0.5]: H 1, members 0
    np.testing.assert_allclose(opposite, [[1.0]], atol=1e-6)
    same = mutual_information([pixels([0.75, 0.25])] * 3)
    np.testing.assert_allclose(same, [[0.0]], atol=1e-7)
    mixed = mutual_information([pixels([0.25, 0.75]), pixels([0.5, 0.5])])  # H(0.625) - (H(0.75) + 1) / 2
    np.testing.assert_allclose(mixed, [[H_0625 - (H_075 + 1) / 2]], atol=1e-6)
    assert mixed[0, 0] == pytest.approx(0.0487950, abs=1e-6)


def test_case_uncertainty() -> None:
    entropy = np.array([[1.0, 0.5], [0.0, 0.0]], dtype=np.float32)
    labels = np.array([[1, 2], [0, 0]], dtype=np.uint8)
    assert case_uncertainty(entropy, labels) == pytest.approx(1.5 / (1.5 + 2 * 2))
    assert case_uncertainty(np.zeros((2, 2)), np.zeros((2, 2), dtype=np.uint8)) == 0.0
    assert case_uncertainty(np.zeros((2, 2)), labels) == 0.0  # certain, with foreground: expected Dice 1
    case = CaseUncertainty.of("x", labels, entropy, np.full((2, 2), 0.25))
    assert (case.uncertainty, case.mean_entropy, case.mean_disagreement) == pytest.approx((1.5 / 5.5, 0.375, 0.25))
    assert CaseUncertainty.of("x", labels, entropy).mean_disagreement is None


def test_maps_are_16_bit_pngs(tmp_path: Path) -> None:
    save_uncertainty_png(tmp_path / "u.png", np.array([[0.0, 0.5], [1.0, 1.0000001]], dtype=np.float32))
    image = Image.open(tmp_path / "u.png")
    assert image.mode == "I;16"
    assert np.asarray(image).tolist() == [[0, 32768], [65535, 65535]]  # round(0.5 * 65535) = 32768 (to even)


def test_uncertainty_csv_round_trip(tmp_path: Path) -> None:
    cases = [CaseUncertainty("img_1", 0.25, 0.125), CaseUncertainty("=cmd", 0.5, 0.75, 0.0625)]
    write_uncertainty_csv(tmp_path / "uncertainty.csv", cases)
    with open(tmp_path / "uncertainty.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows == [["stem", "uncertainty", "mean_entropy", "mean_disagreement"],
                    ["img_1", "0.250000", "0.125000", ""], ["'=cmd", "0.500000", "0.750000", "0.062500"]]
    assert read_uncertainty_csv(tmp_path / "uncertainty.csv") == {"img_1": 0.25, "=cmd": 0.5}
    (tmp_path / "bad.csv").write_text("name,score\nx,1\n")
    with pytest.raises(UserError, match="not an uncertainty file"):
        read_uncertainty_csv(tmp_path / "bad.csv")
