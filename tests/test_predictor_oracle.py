"""The Predictor against an oracle: a stand-in model whose label map is known, on images that are not square.

Letterboxing shrinks the longer side to the input size and pads the shorter one; the padding must be cut off
before the probabilities are resized back, or every non-square prediction comes back stretched.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from tests.stand_in_models import BRIGHT, DARK, register, write_checkpoint
from utils.infer.predictor import Predictor
from utils.runtime.forward import labels_of


def bright_box(height: int, width: int, box: tuple[slice, slice]) -> tuple[np.ndarray, np.ndarray]:
    """(H x W x 1 uint8 image, H x W expected label): a bright box on a dark ground."""
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[box] = 1
    image = np.where(mask == 1, BRIGHT, DARK).astype(np.uint8)[:, :, None]
    return image, mask


def predict_label(predictor: Predictor, image: np.ndarray) -> np.ndarray:
    """The label map (H x W) the Predictor gives one image, at the image's size."""
    return labels_of(predictor.probability_batch([image])[0])


def off_the_rim(predicted: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Wrong pixels that are not on the one-pixel rim either side of the expected boundary (resampling's due)."""
    rim = ndimage.binary_dilation(expected == 1) & ~ndimage.binary_erosion(expected == 1)
    rim |= ndimage.binary_dilation(rim)
    return (predicted != expected) & ~rim


@pytest.fixture
def predictor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Predictor:
    register(monkeypatch)
    return Predictor(write_checkpoint(tmp_path / "bright.pt", input_size=32), device="cpu")


def test_the_stand_in_model_is_an_oracle_on_a_square_image(predictor: Predictor) -> None:
    image, mask = bright_box(32, 32, (slice(5, 20), slice(9, 27)))
    np.testing.assert_array_equal(predict_label(predictor, image), mask)


@pytest.mark.parametrize("height, width, box", [
    (24, 40, (slice(12, 24), slice(4, 30))),   # wide: padded below; the box touches the bottom edge
    (40, 24, (slice(3, 30), slice(13, 24))),   # tall: padded on the right; the box touches the right edge
    (18, 40, (slice(2, 9), slice(20, 37))),    # 2.2 : 1, half the letterbox is padding
])
def test_a_non_square_prediction_is_not_stretched(predictor: Predictor, height: int, width: int,
                                                  box: tuple[slice, slice]) -> None:
    image, mask = bright_box(height, width, box)
    label = predict_label(predictor, image)
    assert label.shape == (height, width)
    wrong = off_the_rim(label, mask)
    rows = sorted(set(np.nonzero(wrong)[0].tolist()))
    assert int(wrong.sum()) == 0, f"wrong away from the box's edge in rows {rows}"
    # At most the rim may differ, and not all of it: the box is found, not a blurred version of it.
    assert (label != mask).sum() <= 2 * (mask.shape[0] + mask.shape[1])


def test_probabilities_of_a_batch_of_mixed_shapes_come_back_at_each_size(predictor: Predictor) -> None:
    wide, wide_mask = bright_box(20, 36, (slice(4, 16), slice(2, 12)))
    tall, tall_mask = bright_box(36, 20, (slice(20, 34), slice(6, 18)))
    wide_prob, tall_prob = predictor.probability_batch([wide, tall])
    assert wide_prob.shape == (2, 20, 36) and tall_prob.shape == (2, 36, 20)
    for prob, mask in ((wide_prob, wide_mask), (tall_prob, tall_mask)):
        assert int(off_the_rim(prob.argmax(0).numpy(), mask).sum()) == 0


def test_tiles_predict_at_the_image_resolution_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    register(monkeypatch)
    predictor = Predictor(write_checkpoint(tmp_path / "crop.pt", input_size=16, input_mode="crop"), device="cpu")
    assert predictor.tiles
    image, mask = bright_box(24, 40, (slice(3, 21), slice(17, 38)))
    np.testing.assert_array_equal(predict_label(predictor, image), mask)
